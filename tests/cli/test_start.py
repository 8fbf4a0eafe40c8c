"""`cordon start` as a real subprocess: order of start-up, ready line, run record, signals, logs."""

from __future__ import annotations

import base64
import http.client
import json
import signal
import socket
import ssl
import stat
import subprocess
from pathlib import Path

import httpx
import pytest

from cordon.store.paths import Paths
from cordon.store.tokens import TokenStore
from tests import configs
from tests.conftest import cordon_argv, subprocess_env
from tests.startproc import StartProc, started
from tests.upstream import UpstreamServer

SECRET = "sk-real-SECRET-value-4711"


def state_dir(project: Path) -> Path:
    return Paths.from_env(cwd=project).state_dir("project", project)


def health(port: int) -> tuple[int, dict[str, object]]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", "/health")
        r = c.getresponse()
        return r.status, json.loads(r.read())
    finally:
        c.close()


def connect_status(port: int, token: str | None, target: str = "api.openai.com:443") -> int:
    """The status line of a CONNECT through the proxy (nothing is sent after it)."""
    req = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
    if token is not None:
        req += "Proxy-Authorization: Basic " + base64.b64encode(f"cordon:{token}".encode()).decode() + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall((req + "\r\n").encode())
        return int(s.recv(128).split(b" ", 2)[1])


def write_config(project: Path, up: UpstreamServer | None = None, listen: int = 0,
                 extra: tuple[configs.RouteSpec, ...] = ()) -> Path:
    routes = (configs.openai(env="REAL_KEY", upstream=up),) if up is not None else ()
    return configs.write(project / "cordon.toml", *routes, *extra, listen=listen)


def test_ready_health_record_and_clean_stop(project: Path, up: UpstreamServer) -> None:
    write_config(project, up)
    sd = state_dir(project)
    with started(env={"REAL_KEY": SECRET}, cwd=project) as sp:
        port = sp.wait_ready()
        status, body = health(port)
        assert status == 200 and body["status"] == "ok"
        rec_path = sd / "proxy.json"
        assert stat.S_IMODE(rec_path.stat().st_mode) == 0o600
        rec = json.loads(rec_path.read_text())
        assert rec["pid"] == sp.proc.pid and rec["port"] == port
        assert rec["version"] and rec["started_at"].endswith("+00:00")
        assert rec["config_path"] == str((project / "cordon.toml").resolve())
        assert rec["scope"] == "project" and rec["state_dir"] == str(sd)
        assert sp.stop(signal.SIGTERM) == 0
    assert not (sd / "proxy.json").exists()
    ready = [line for line in sp.lines() if "ready on" in line]
    assert len(ready) == 1 and f"127.0.0.1:{port}" in ready[0]
    assert stat.S_IMODE((sd / "tokens.toml").stat().st_mode) == 0o600
    assert (sd / "certs" / "ca-cert.pem").exists() and (sd / "certs" / "combined-ca.pem").exists()



@pytest.mark.parametrize(("setting", "loop"), [(None, "uvloop"), ("asyncio", "asyncio"), ("uvloop", "uvloop")])
def test_the_proxy_runs_on_uvloop_unless_told_otherwise(project: Path, up: UpstreamServer,
                                                        setting: str | None, loop: str) -> None:
    pytest.importorskip("uvloop")
    write_config(project, up)
    env = {"REAL_KEY": SECRET} | ({"CORDON_EVENT_LOOP": setting} if setting else {})
    with started(env=env, cwd=project) as sp:
        port = sp.wait_ready()
        status, body = health(port)
        assert status == 200 and body["loop"] == loop
        # and it relays on that loop: a MITM request gets the real key upstream
        env_vars = _env_json(project, {"REAL_KEY": SECRET})
        with _client(env_vars) as c:
            r = c.get("https://api.openai.com/v1/models", headers={"Authorization": "Bearer sk-placeholder"})
        assert r.status_code == 200
        assert up.requests[-1].header("authorization") == f"Bearer {SECRET}"

def _keyring_route(up: UpstreamServer) -> configs.RouteSpec:
    return configs.openai(keyring="openai", upstream=up)


def test_secret_changes_reach_the_running_proxy(project: Path, up: UpstreamServer,  # type: ignore[no-untyped-def]
                                                cordon_proc) -> None:
    from cordon.core.model import SecretSpec
    from cordon.store.secrets import set_keyring_secret
    spec = SecretSpec(source="keyring", account="openai")
    set_keyring_secret(spec, "sk-first-value")
    configs.write(project / "cordon.toml", _keyring_route(up), listen=0)
    with started(cwd=project) as sp:
        with _client(_env_json(project)) as c:
            def seen() -> str | None:
                assert c.get("https://api.openai.com/json").status_code == 200
                return up.requests[-1].header("authorization")
            assert seen() == "Bearer sk-first-value"
            set_keyring_secret(spec, "sk-second-value")      # behind cordon's back: still cached
            assert seen() == "Bearer sk-first-value"
            sp.proc.send_signal(signal.SIGHUP)                # drops the cache, keeps serving
            for _ in range(200):
                if "SIGHUP" in sp.stderr:
                    break
                assert sp.pump(0.1) and sp.proc.poll() is None
            assert "SIGHUP" in sp.stderr
            assert seen() == "Bearer sk-second-value"
            p = cordon_proc("secret", "set", "openai", input="sk-third-value\n", cwd=project)
            assert p.returncode == 0, p.stderr
            assert seen() == "Bearer sk-third-value"          # `secret set` needs no signal
        assert sp.stop() == 0
    for v in ("sk-first-value", "sk-second-value", "sk-third-value"):
        assert v not in sp.stderr


def test_sigint_exits_130_and_removes_record(project: Path) -> None:
    write_config(project)
    sp = StartProc(cwd=project)
    try:
        sp.wait_ready()
        assert (state_dir(project) / "proxy.json").exists()
        assert sp.stop(signal.SIGINT) == 130
    finally:
        sp.close()
    assert not (state_dir(project) / "proxy.json").exists()
    assert "Traceback" not in sp.stderr


def test_busy_port_is_one_line_error(project: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        write_config(project, listen=port)
        sp = StartProc(cwd=project)
        try:
            assert sp.wait_exit() == 1
        finally:
            sp.close()
    errors = [line for line in sp.lines() if line.startswith("cordon: error:")]
    assert errors == [f"cordon: error: 127.0.0.1:{port} is already in use"], sp.stderr
    assert any(line.startswith("hint:") and "listen" in line for line in sp.lines())
    assert "ready on" not in sp.stderr and "Traceback" not in sp.stderr
    assert not (state_dir(project) / "proxy.json").exists()


def test_missing_secrets_reported_together_before_ca(project: Path, up: UpstreamServer) -> None:
    write_config(project, up, extra=(configs.openai(name="two", host="api.two.example", env="TWO_KEY"),
                                     configs.openai(name="three", host="api.three.example", env="THREE_KEY")))
    sp = StartProc(env={"REAL_KEY": SECRET}, cwd=project)
    try:
        assert sp.wait_exit() == 1
    finally:
        sp.close()
    err = sp.stderr
    assert "route 'two'" in err and "TWO_KEY" in err
    assert "route 'three'" in err and "THREE_KEY" in err
    assert "2 of 3 route secrets could not be resolved" in err
    assert "route 'openai'" not in err and SECRET not in err
    assert "ready on" not in err
    sd = state_dir(project)
    assert not (sd / "certs").exists(), "the CA comes after the secret check"
    assert not (sd / "proxy.json").exists()


def test_a_keyring_secret_is_checked_before_ready_and_then_injected(project: Path, up: UpstreamServer) -> None:
    """A route whose keyring entry holds nothing stops the start with its route and fix; one that
    holds a value serves the requests with it."""
    from cordon.core.model import SecretSpec
    from cordon.store.secrets import set_keyring_secret
    set_keyring_secret(SecretSpec(source="keyring", account="openai"), "sk-from-the-keyring")
    configs.write(project / "cordon.toml", _keyring_route(up),
                  configs.openai(name="four", host="api.four.example", keyring="four"), listen=0)
    sp = StartProc(cwd=project)
    try:
        assert sp.wait_exit() == 1
    finally:
        sp.close()
    assert "cordon: error: route 'four': no secret stored in keyring cordon/four" in sp.stderr
    assert "hint: run `cordon secret set four`" in sp.stderr
    assert "1 of 2 route secrets could not be resolved" in sp.stderr
    assert "sk-from-the-keyring" not in sp.stderr and "ready on" not in sp.stderr
    configs.write(project / "cordon.toml", _keyring_route(up), listen=0)
    with started(cwd=project) as ok, _client(_env_json(project)) as c:
        assert c.get("https://api.openai.com/json").status_code == 200
        assert up.requests[-1].header("authorization") == "Bearer sk-from-the-keyring"
        assert ok.stop() == 0


def test_second_start_for_the_scope_is_refused(project: Path) -> None:
    write_config(project)
    with started(cwd=project) as first:
        second = StartProc(cwd=project)
        try:
            assert second.wait_exit() == 1
        finally:
            second.close()
        assert f"already running for this scope (pid {first.proc.pid}" in second.stderr
        assert health(first.wait_ready())[0] == 200


def test_unknown_config_is_an_error(project: Path, cordon_proc) -> None:  # type: ignore[no-untyped-def]
    p = cordon_proc("start", cwd=project)
    assert p.returncode == 1
    assert "no cordon.toml" in p.stderr and "hint:" in p.stderr


def _client(env_vars: dict[str, str]) -> httpx.Client:
    ctx = ssl.create_default_context(cafile=env_vars["SSL_CERT_FILE"])
    return httpx.Client(proxy=env_vars["HTTPS_PROXY"], verify=ctx, timeout=20, trust_env=False)


def _env_json(project: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    p = subprocess.run(cordon_argv("env", "--format", "json"), capture_output=True, text=True,
                       env=subprocess_env(extra), cwd=project, timeout=60)
    assert p.returncode == 0, p.stderr
    return dict(json.loads(p.stdout))


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secret_and_token_never_in_logs(project: Path, up: UpstreamServer, fmt: str) -> None:
    write_config(project, up)
    with started("--log-level", "trace", "--log-format", fmt, env={"REAL_KEY": SECRET}, cwd=project) as sp:
        env = _env_json(project)
        token = TokenStore.for_state_dir(state_dir(project)).load()["default"]
        assert token in env["HTTPS_PROXY"]
        with _client(env) as c:
            r = c.get("https://api.openai.com/echo", headers={"Authorization": "Bearer dummy-replaced-by-cordon"})
            assert r.status_code == 200
        assert up.requests[-1].header("authorization") == f"Bearer {SECRET}"   # injected for real
        assert connect_status(sp.wait_ready(), "wrong-" + token) == 407
        assert connect_status(sp.wait_ready(), None) == 407
        assert sp.stop() == 0
    log = sp.stderr
    assert "api.openai.com" in log                 # the request was logged...
    assert SECRET not in log and token not in log  # ...without its credentials
    assert base64.b64encode(f"cordon:{token}".encode()).decode() not in log
    if fmt == "json":
        objs = [json.loads(line) for line in sp.lines()]
        ready = [o for o in objs if o.get("event") == "ready"]
        assert len(ready) == 1 and ready[0]["port"] == sp.port
        assert all({"ts", "level", "logger", "msg"} <= set(o) for o in objs)


def test_log_level_error_is_quiet_but_ready_line_stays(project: Path, up: UpstreamServer) -> None:
    write_config(project, up)
    with started("--log-level", "error", env={"REAL_KEY": SECRET}, cwd=project) as sp:
        env = _env_json(project)
        with _client(env) as c:
            assert c.get("https://api.openai.com/json").status_code == 200
        sp.stop()
    assert [line for line in sp.lines() if line.strip()] == [line for line in sp.lines() if "ready on" in line]


def test_token_rotation_and_revocation_reach_the_running_proxy(  # type: ignore[no-untyped-def]
        project: Path, up: UpstreamServer, cordon_proc) -> None:
    write_config(project, up)
    store = TokenStore.for_state_dir(state_dir(project))
    with started(env={"REAL_KEY": SECRET}, cwd=project) as sp:
        port = sp.wait_ready()
        old = store.load()["default"]
        assert connect_status(port, old) == 200
        assert cordon_proc("token", "rotate", cwd=project).returncode == 0
        new = store.load()["default"]
        assert connect_status(port, old) == 407
        assert connect_status(port, new) == 200
        codex = store.ensure("codex")
        assert connect_status(port, codex) == 200
        assert cordon_proc("token", "revoke", "codex", cwd=project).returncode == 0
        assert connect_status(port, codex) == 407
        assert connect_status(port, new) == 200


def test_start_refreshes_a_stale_bundle_but_not_from_itself(project: Path) -> None:
    write_config(project)
    certs_dir = state_dir(project) / "certs"
    with started(cwd=project):
        pass
    bundle = certs_dir / "combined-ca.pem"
    good = bundle.read_bytes()
    assert (certs_dir / "ca-cert.pem").read_bytes().strip() in good
    # a shell that ran `eval "$(cordon env)"` has SSL_CERT_FILE = the bundle: nothing is added
    with started(env={"SSL_CERT_FILE": str(bundle)}, cwd=project):
        pass
    assert bundle.read_bytes() == good
    bundle.write_bytes(b"stale\n")
    with started(cwd=project):
        pass
    assert bundle.read_bytes() == good


def test_sigterm_the_instant_ready_appears_stops_cleanly(project: Path) -> None:
    """A supervisor that stops the proxy as soon as it reports ready (a test harness, a
    service manager's quick restart) gets exit 0 and no stale proxy.json, every time."""
    write_config(project)
    record = state_dir(project) / "proxy.json"
    for _ in range(10):
        sp = StartProc(cwd=project)
        try:
            while "ready" not in sp.stderr:
                assert sp.pump(10) and sp.proc.poll() is None, sp.stderr
            sp.proc.send_signal(signal.SIGTERM)
            assert sp.wait_exit() == 0, sp.stderr
        finally:
            sp.close()
        assert not record.exists()
        assert "Traceback" not in sp.stderr
