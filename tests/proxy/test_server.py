"""The listener itself: /health, /status, 400 for other requests to the proxy, port reporting,
secret caching and invalidation, and clients other than Python (Node fetch via undici)."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
from pathlib import Path

import anyio
import httpx
import pytest

from cordon import __version__
from cordon.core import certs
from cordon.core.model import Route, Secret
from cordon.proxy.secretcache import SecretCache
from cordon.proxy.server import ProxySettings, serve
from cordon.proxy.tls import LeafIssuer
from cordon.store.generation import bump_generation
from tests import configs
from tests.conftest import REPO
from tests.proxy_harness import PLACEHOLDER, SECRET, TOKEN, DictResolver, RunningProxy, running_proxy
from tests.upstream import UpstreamServer

NODE_DIR = REPO / "tests" / "node"


def test_health_needs_no_token_and_tells_nothing_secret(px: RunningProxy) -> None:
    r = httpx.get(f"{px.bare_url}/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["version"] == __version__ and body["routes"] == 1
    assert isinstance(body["uptime"], float)
    assert SECRET not in r.text and TOKEN not in r.text


def test_status_requires_the_token(px: RunningProxy) -> None:
    with httpx.Client(proxy=None) as c:
        assert c.get(f"{px.bare_url}/status").status_code == 401
        assert c.get(f"{px.bare_url}/status", headers={"Authorization": "Bearer wrong"}).status_code == 401
        c.get(f"{px.bare_url}/health")
        r = c.get(f"{px.bare_url}/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200
    st = r.json()
    assert st["port"] == px.port and st["version"] == __version__ and st["pid"] > 0
    assert st["routes"] == {"openai": {"requests": 0, "errors": 0, "bytes_up": 0, "bytes_down": 0}}
    assert TOKEN not in r.text


def test_status_counts_requests_and_errors(px: RunningProxy) -> None:
    ctx = ssl.create_default_context(cafile=str(px.ca_file))
    with httpx.Client(proxy=px.url, verify=ctx) as c:
        c.get("https://api.openai.com/json")
        c.get("https://api.openai.com/close")      # 502
    r = httpx.get(f"{px.bare_url}/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.json()["routes"]["openai"]["requests"] == 2
    assert r.json()["routes"]["openai"]["errors"] == 1


def test_other_requests_to_the_proxy_are_400(px: RunningProxy) -> None:
    for path in ("/", "/v1/models", "/health/x"):
        r = httpx.get(f"{px.bare_url}{path}")
        assert r.status_code == 400
        assert "CONNECT" in r.text


def test_serve_reports_the_bound_port_and_stops_on_cancel(up: UpstreamServer) -> None:
    async def main() -> None:
        settings = ProxySettings(routes=(up.route(),), issuer=LeafIssuer(certs.create_ca()),
                                 resolver=DictResolver({"CORDON_TEST_SECRET": SECRET}))
        async with anyio.create_task_group() as tg:
            port = await tg.start(serve, settings)
            assert port > 0 and settings.stats.port == port
            stream = await anyio.connect_tcp("127.0.0.1", port)
            await stream.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await stream.receive()).startswith(b"HTTP/1.1 200 ")
            await stream.aclose()
            tg.cancel_scope.cancel()
        with pytest.raises(OSError):
            await anyio.connect_tcp("127.0.0.1", port)

    anyio.run(main)


class CountingResolver(DictResolver):
    pass


def test_secret_is_cached_then_reresolved_after_bump(up: UpstreamServer, tmp_path: Path) -> None:
    gen = tmp_path / "secrets.gen"
    res = CountingResolver({"CORDON_TEST_SECRET": "first-secret-value"})
    with running_proxy([up.route()], resolver=res, secrets_gen_file=gen) as px:
        ctx = ssl.create_default_context(cafile=str(px.ca_file))
        with httpx.Client(proxy=px.url, verify=ctx) as c:
            for _ in range(3):
                c.get("https://api.openai.com/json")
            assert res.calls == 1, "a cached secret must not be resolved again per request"
            res.values["CORDON_TEST_SECRET"] = "second-secret-value"   # `cordon secret set` ...
            bump_generation(gen)                                        # ... touches the generation file
            c.get("https://api.openai.com/json")
    assert res.calls == 2
    seen = [r.header("authorization") for r in up.requests]
    assert seen == ["Bearer first-secret-value"] * 3 + ["Bearer second-secret-value"]


def test_secret_cache_file_source_and_command_ttl(tmp_path: Path) -> None:
    from cordon.core.model import Auth, SecretSpec

    f = tmp_path / "key"
    f.write_text("v1")

    class FileResolver:
        calls = 0

        def resolve(self, route: Route) -> Secret:
            FileResolver.calls += 1
            assert route.auth.secret.path is not None
            return Secret(route.auth.secret.path.read_text())

    route = Route(name="r", host="h", auth=Auth(type="header", secret=SecretSpec(source="file", path=f)))
    cache = SecretCache(FileResolver())

    async def main() -> None:
        assert (await cache.get(route)).reveal() == "v1"
        assert (await cache.get(route)).reveal() == "v1"
        assert FileResolver.calls == 1
        f.write_text("v2-longer")   # a changed file is noticed by its own stat signature
        assert (await cache.get(route)).reveal() == "v2-longer"
        cache.invalidate("r")
        await cache.get(route)
        assert FileResolver.calls == 3

    anyio.run(main)


@pytest.mark.network_tools
def test_node_fetch_with_undici_env_proxy_agent(px: RunningProxy, up: UpstreamServer) -> None:
    if shutil.which("node") is None or not (NODE_DIR / "node_modules" / "undici").is_dir():
        pytest.skip("node or tests/node/node_modules/undici missing (scripts/test installs them)")
    env = px.env()
    env["TEST_AUTHORIZATION"] = f"Bearer {PLACEHOLDER}"
    out = subprocess.run(["node", str(NODE_DIR / "fetch_via_proxy.mjs"), "https://api.openai.com/v1/models"],
                         env=env, capture_output=True, text=True, timeout=60, cwd=NODE_DIR)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["status"] == 200
    rec = up.requests[-1]
    assert rec.header("authorization") == f"Bearer {SECRET}"
    assert PLACEHOLDER not in rec.raw()


@pytest.mark.network_tools
def test_node_fetch_tunnel_sees_upstream_certificate() -> None:
    from cordon.core.model import Policy

    if shutil.which("node") is None or not (NODE_DIR / "node_modules" / "undici").is_dir():
        pytest.skip("node or tests/node/node_modules/undici missing (scripts/test installs them)")
    with UpstreamServer("127.0.0.1") as plain, \
            running_proxy([], policy=Policy(allow_private=("127.0.0.1/32",))) as px:
        env = px.env(ca_file=plain.ca_file)   # node trusts only the upstream's own CA
        out = subprocess.run(["node", str(NODE_DIR / "fetch_via_proxy.mjs"), f"https://127.0.0.1:{plain.port}/json"],
                             env=env, capture_output=True, text=True, timeout=60, cwd=NODE_DIR)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["status"] == 200
        assert px.stats.tunnels == 1


def test_cordon_secret_set_bumps_the_generation_file(project: Path, home: Path, cordon) -> None:  # type: ignore[no-untyped-def]
    from cordon.proxy.secretcache import _sig
    from cordon.store.generation import generation_file

    configs.write(project / "cordon.toml", configs.openai(keyring="openai"))
    gen = generation_file(home / ".config" / "cordon")
    r = cordon("secret", "set", "openai", stdin="sk-first-value\n")
    assert r.status == 0, r.stderr
    first = _sig(gen)
    assert first is not None
    r = cordon("secret", "set", "openai", stdin="sk-second-value\n")
    assert r.status == 0, r.stderr
    assert _sig(gen) != first, "a running proxy would not notice the new secret"
