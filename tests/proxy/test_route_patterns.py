"""The real proxy with a route naming several hosts and a `*.suffix` pattern, and a key that
belongs in the query string: curl through it, a loopback upstream behind it."""

from __future__ import annotations

import logging
import shutil
import subprocess

import pytest

from cordon.core.model import Auth, Route, SecretSpec, UpstreamSpec
from tests.mock_agents import MockProvider
from tests.proxy_harness import PLACEHOLDER, SECRET, running_proxy

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")

HOSTS = ["api.github.com", "api.individual.githubcopilot.com", "x.y.githubcopilot.com"]


def github_route(mock: MockProvider, **auth: object) -> Route:
    return Route(name="github", host="api.github.com", more_hosts=("*.githubcopilot.com",),
                 auth=Auth(type="header", header_name="Authorization", scheme="Bearer",
                           secret=SecretSpec(source="env", var="CORDON_TEST_SECRET"), **auth),  # type: ignore[arg-type]
                 upstream=UpstreamSpec(address=mock.address, ca_file=mock.ca_file))


def curl(px: object, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = px.env()  # type: ignore[attr-defined]
    return subprocess.run(["curl", "-sS", "--max-time", "20", *args, url], env=env, capture_output=True,
                          text=True, timeout=60)


def test_every_host_of_the_route_is_intercepted_with_its_own_leaf() -> None:
    with MockProvider("github", HOSTS, expected_key=SECRET) as mock, running_proxy([github_route(mock)]) as px:
        for host in HOSTS:
            r = curl(px, f"https://{host}/models", "-H", f"Authorization: Bearer {PLACEHOLDER}",
                     "-w", "%{http_code}", "-o", "/dev/null")
            assert r.stdout == "200", (host, r.stderr)
        mock.check()
        assert [q.header("host") for q in mock.requests] == HOSTS
        # the suffix itself, and names merely ending in it, are not the route's: tunnelled, not intercepted
        r = curl(px, "https://githubcopilot.com/models", "-w", "%{http_code}")
        assert r.stdout != "200" and len(mock.requests) == len(HOSTS)


def test_the_key_goes_where_the_client_put_its_own_and_the_log_has_no_query(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="cordon")
    with MockProvider("github", HOSTS, expected_key=SECRET) as mock, \
            running_proxy([github_route(mock, query_param="key")]) as px:
        r = curl(px, f"https://x.y.githubcopilot.com/models?alt=1&key={PLACEHOLDER}&%6Bey=other")
        assert r.returncode == 0, r.stderr
        r = curl(px, "https://api.github.com/models", "-H", f"Authorization: Bearer {PLACEHOLDER}")
        assert r.returncode == 0, r.stderr
        mock.check()
        first, second = mock.requests
        assert first.path == f"/models?alt=1&key={SECRET}" and first.header("authorization") is None
        assert second.path == "/models" and second.header("authorization") == f"Bearer {SECRET}"
    assert "x.y.githubcopilot.com" in caplog.text          # the request was logged ...
    assert "key=" not in caplog.text and "alt=1" not in caplog.text and SECRET not in caplog.text  # ... no query
