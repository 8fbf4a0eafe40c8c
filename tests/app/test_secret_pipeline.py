"""Each secret is resolved once per session: preflight, log redaction and the leak scan share it.

A `command` secret here is a real script that appends a line to a file every time it runs,
so the file counts how often cordon ran it.
"""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from tests import configs
from tests.conftest import write
from tests.upstream import UpstreamServer

SECRET = "sk-counted-5e2b7a1c9d"


def counting_route(tmp_path: Path, ttl: int) -> tuple[str, Path]:
    count = tmp_path / "runs"
    script = write(tmp_path / "secret-cmd", f'#!/bin/sh\necho run >> "{count}"\nprintf %s {SECRET}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    toml = configs.render(configs.openai(name="counted", secret={"source": "command", "command": [str(script)],
                                                                  "ttl": ttl}))
    return toml, count


def runs(count: Path) -> int:
    return len(count.read_text().splitlines()) if count.exists() else 0


@pytest.mark.parametrize("ttl", [0, 300])
def test_exec_runs_a_command_secret_once(project: Path, tmp_path: Path, cordon_proc, ttl: int) -> None:  # type: ignore[no-untyped-def]
    toml, count = counting_route(tmp_path, ttl)
    write(project / "cordon.toml", toml)
    # a variable holding the secret makes the leak scan look at it too
    r = cordon_proc("exec", "--log-level", "debug", "--", sys.executable, "-c", "pass",
                    env={"SOME_VAR": f"x{SECRET}x"})
    assert r.returncode == 0, r.stderr
    assert "not passing SOME_VAR" in r.stderr
    assert runs(count) == 1


def test_start_preflight_runs_a_command_secret_once(project: Path, tmp_path: Path, cordon) -> None:  # type: ignore[no-untyped-def]
    import os

    from cordon.app.start import ProxyRun
    from cordon.store.paths import Paths
    from cordon.store.scope import load_scope

    toml, count = counting_route(tmp_path, 0)
    write(project / "cordon.toml", "listen = 0\n" + toml)
    run = ProxyRun(load_scope(Paths.from_env(os.environ, project), None, None), dict(os.environ))
    run.preflight(lambda e: None)
    assert SECRET in run.sensitive_values()
    assert runs(count) == 1


# the child: two HTTPS requests through the session's proxy (HTTPS_PROXY and SSL_CERT_FILE come from cordon)
TWO_REQUESTS = """
import os, ssl, urllib.request
ctx = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx),
                                     urllib.request.ProxyHandler({"https": os.environ["HTTPS_PROXY"]}))
for _ in range(2):
    with opener.open("https://api.openai.com/v1/models", timeout=30) as r:
        assert r.status == 200
"""


@pytest.mark.parametrize(("ttl", "expected_runs"), [(300, 1), (0, 3)])
def test_the_value_read_at_preflight_serves_the_requests_for_its_ttl(
        project: Path, tmp_path: Path, cordon_proc, ttl: int, expected_runs: int) -> None:  # type: ignore[no-untyped-def]
    """ttl = 300: one run for the whole session, requests included; ttl = 0: one at start-up,
    then one per request, as documented."""
    count = tmp_path / "runs"
    script = write(tmp_path / "secret-cmd", f'#!/bin/sh\necho run >> "{count}"\nprintf %s {SECRET}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    with UpstreamServer("api.openai.com") as up:
        configs.write(project / "cordon.toml", configs.openai(
            secret={"source": "command", "command": [str(script)], "ttl": ttl}, upstream=up))
        r = cordon_proc("exec", "--", sys.executable, "-c", TWO_REQUESTS)
        assert r.returncode == 0, r.stderr
        assert [q.header("authorization") for q in up.requests] == [f"Bearer {SECRET}"] * 2
    assert runs(count) == expected_runs
