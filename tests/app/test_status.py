"""`cordon status`: running or not, counts, CA expiry, secrets (never their values), --json, --quiet.

A stand-in proxy process (the real one is exercised in the end-to-end test
below) answers /health and a token-protected /status, so the run-record, pid
and health logic is tested against a real process and a real socket.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cordon.store.castore import ca_paths, load_or_create_ca
from cordon.store.paths import Paths
from cordon.store.runrecord import read_run_record, run_record_path
from cordon.store.tokens import TokenStore
from tests import configs
from tests.conftest import write

SECRET_VALUE = "sk-live-STATUS-TEST-0123456789"


def config(port: int) -> str:
    return configs.render(configs.openai(env="STATUS_TEST_OPENAI"), configs.anthropic(env="STATUS_TEST_ANTHROPIC"),
                          listen=port)


STANDIN = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
token = sys.argv[1]
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def _send(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path == "/health":
            return self._send(200, {"status": "ok", "version": "9.9.9", "uptime_s": 3725})
        if self.path == "/status":
            if self.headers.get("Authorization") != f"Bearer {token}":
                return self._send(407, {"error": "token required"})
            return self._send(200, {"routes": {"openai": {"requests": 12, "errors": 1}}})
        self._send(404, {})
srv = HTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"""


def _state_dir(project: Path, home: Path) -> Path:
    return Paths.from_env({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")},
                          cwd=project).state_dir("project", project)


@pytest.fixture
def standin(project: Path, home: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    state = _state_dir(project, home)
    token = TokenStore.for_state_dir(state).ensure("default")
    p = subprocess.Popen([sys.executable, "-c", STANDIN, token], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    port = int(p.stdout.readline())
    write(project / "cordon.toml", config(port=port))
    record = {"pid": p.pid, "port": port, "started_at": "2025-01-01T00:00:00+00:00", "version": "9.9.9",
              "config_path": str(project / "cordon.toml")}
    write(run_record_path(state), json.dumps(record))
    try:
        yield p, port
    finally:
        p.kill()
        p.wait()
        p.stdout.close()


def test_running_proxy_with_counts_and_secrets(standin, cordon, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    _, port = standin
    monkeypatch.setenv("STATUS_TEST_OPENAI", SECRET_VALUE)
    r = cordon("status")
    assert r.status == 0, r.stderr
    assert f"running, pid {standin[0].pid}, port {port}, up 1h02m, cordon 9.9.9" in r.stdout
    lines = r.stdout.splitlines()
    openai = next(ln for ln in lines if ln.strip().startswith("openai"))
    assert "secret ok (environment variable STATUS_TEST_OPENAI)" in openai
    assert "12 requests, 1 error" in openai and "1 errors" not in openai
    anth = next(ln for ln in lines if ln.strip().startswith("anthropic"))
    assert "secret FAILS: environment variable STATUS_TEST_ANTHROPIC is not set" in anth
    assert "0 requests, 0 errors" in anth
    assert "fix: export STATUS_TEST_ANTHROPIC" in r.stdout
    assert SECRET_VALUE not in r.stdout + r.stderr


def test_json_shape(standin, cordon, monkeypatch: pytest.MonkeyPatch, project: Path) -> None:  # type: ignore[no-untyped-def]
    proc, port = standin
    monkeypatch.setenv("STATUS_TEST_OPENAI", SECRET_VALUE)
    r = cordon("status", "--json")
    assert r.status == 0
    assert SECRET_VALUE not in r.stdout
    data = json.loads(r.stdout)
    assert data["running"] is True
    s = data["scopes"][0]
    assert set(s) == {"scope", "config", "config_error", "state_dir", "running", "pid", "port", "started_at",
                      "uptime_s", "version", "notes", "routes", "ca", "service"}
    assert (s["scope"], s["config"], s["pid"], s["port"], s["uptime_s"], s["version"]) == \
        ("project", str(project / "cordon.toml"), proc.pid, port, 3725, "9.9.9")
    assert s["routes"][0] == {"name": "openai", "host": "api.openai.com",
                              "secret_source": "environment variable STATUS_TEST_OPENAI", "secret_ok": True,
                              "secret_error": None, "secret_fix": None, "requests": 12, "errors": 1}
    assert s["routes"][1]["secret_ok"] is False and s["routes"][1]["secret_fix"]
    assert set(s["ca"]) == {"cert_path", "exists", "not_after", "days_left", "problem"}
    assert set(s["service"]) == {"name", "manager", "installed", "active", "state", "pid", "note"}


def test_quiet_prints_nothing_and_tells_by_status(standin, cordon) -> None:  # type: ignore[no-untyped-def]
    r = cordon("status", "--quiet")
    assert (r.status, r.stdout, r.stderr) == (0, "", "")
    standin[0].kill()
    standin[0].wait()
    r = cordon("status", "--quiet")
    assert (r.status, r.stdout, r.stderr) == (1, "", "")


def test_quiet_as_a_real_process(standin, cordon_proc) -> None:  # type: ignore[no-untyped-def]
    r = cordon_proc("status", "-q")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


def test_not_running_without_a_record(project: Path, cordon) -> None:  # type: ignore[no-untyped-def]
    write(project / "cordon.toml", config(port=1))
    r = cordon("status")
    assert r.status == 1
    assert "proxy:   not running (listen = 1; start it with `cordon start`)" in r.stdout
    # counts are only shown for a running proxy
    assert "requests" not in r.stdout


def test_stale_record_is_reported(project: Path, home: Path, cordon) -> None:  # type: ignore[no-untyped-def]
    write(project / "cordon.toml", config(port=1))
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    write(run_record_path(_state_dir(project, home)), json.dumps({"pid": p.pid, "port": 1}))
    r = cordon("status", "--json")
    assert r.status == 1
    s = json.loads(r.stdout)["scopes"][0]
    assert s["running"] is False and s["pid"] is None
    assert any("stale run record" in n for n in s["notes"])


def test_alive_process_that_does_not_answer(project: Path, home: Path, cordon) -> None:  # type: ignore[no-untyped-def]
    write(project / "cordon.toml", config(port=1))
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write(run_record_path(_state_dir(project, home)), json.dumps({"pid": p.pid, "port": 1}))
        r = cordon("status")
        assert r.status == 1
        assert f"process {p.pid} is alive but /health on port 1 does not answer" in r.stdout
    finally:
        p.kill()
        p.wait()


def test_wrong_token_means_no_counts(standin, project: Path, home: Path, cordon) -> None:  # type: ignore[no-untyped-def]
    TokenStore.for_state_dir(_state_dir(project, home)).rotate("default")
    r = cordon("status")
    assert r.status == 0   # still running
    assert "per-route counts unavailable: /status answered 407" in r.stdout
    assert "requests" not in r.stdout.split("routes:")[1]


def test_ca_expiry_is_shown(project: Path, home: Path, cordon) -> None:  # type: ignore[no-untyped-def]
    write(project / "cordon.toml", config(port=1))
    r = cordon("status", "--json")
    assert json.loads(r.stdout)["scopes"][0]["ca"]["exists"] is False
    ca = load_or_create_ca(*ca_paths(_state_dir(project, home)))
    r = cordon("status", "--json")
    c = json.loads(r.stdout)["scopes"][0]["ca"]
    assert c["exists"] is True and c["not_after"] == ca.not_after.isoformat()
    assert 3640 < c["days_left"] <= 3650
    r = cordon("status")
    assert f"expires {ca.not_after:%Y-%m-%d}" in r.stdout


def test_user_scope_is_listed_too(project: Path, home: Path, cordon) -> None:  # type: ignore[no-untyped-def]
    write(project / "cordon.toml", config(port=1))
    write(home / ".config" / "cordon" / "cordon.toml", config(port=2))
    r = cordon("status", "--json")
    scopes = json.loads(r.stdout)["scopes"]
    assert [s["scope"] for s in scopes] == ["project", "user"]
    r = cordon("status", "--scope", "user", "--json")
    assert [s["scope"] for s in json.loads(r.stdout)["scopes"]] == ["user"]


def test_broken_config_is_reported_not_raised(project: Path, cordon) -> None:  # type: ignore[no-untyped-def]
    write(project / "cordon.toml", "listen = [\n")
    r = cordon("status")
    assert r.status == 1
    assert "invalid TOML" in r.stdout
    r = cordon("status", "--json")
    assert "invalid TOML" in json.loads(r.stdout)["scopes"][0]["config_error"]


def test_no_config_anywhere(project: Path, cordon) -> None:  # type: ignore[no-untyped-def]
    r = cordon("status")
    assert r.status == 1 and "no such file" in r.stdout


def test_run_record_parsing(tmp_path: Path) -> None:
    write(tmp_path / "proxy.json", json.dumps({"pid": 5, "port": 6, "started_at": 0, "version": "1"}))
    rec = read_run_record(tmp_path)
    assert rec is not None and rec.started_at is not None and rec.started_at.year == 1970
    write(tmp_path / "proxy.json", json.dumps({"pid": "5", "port": 6}))
    assert read_run_record(tmp_path) is None
    write(tmp_path / "proxy.json", "{")
    assert read_run_record(tmp_path) is None


def _wait_for(pred, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_signal_stops_standin(standin) -> None:  # type: ignore[no-untyped-def]
    # guards the fixture itself: a stand-in that ignored kill would make the quiet test meaningless
    os.kill(standin[0].pid, signal.SIGTERM)
    _wait_for(lambda: standin[0].poll() is not None)


# ---------------------------------------------------------------- against the real `cordon start`

def test_status_of_a_real_cordon_start(project: Path, home: Path, cordon_proc) -> None:  # type: ignore[no-untyped-def]
    import ssl

    import httpx

    from tests.ports import reserved_port
    from tests.startproc import started
    from tests.upstream import UpstreamServer

    with UpstreamServer("api.openai.com") as up, reserved_port() as listen:
        configs.write(project / "cordon.toml", configs.openai(env="REAL_KEY", upstream=up), listen=listen)
        state = _state_dir(project, home)
        env = {"REAL_KEY": SECRET_VALUE}
        with started(env=env, cwd=project) as sp:
            port = sp.wait_ready()
            assert port == listen
            token = TokenStore.for_state_dir(state).get("default")
            ctx = ssl.create_default_context(cafile=str(state / "certs" / "combined-ca.pem"))
            with httpx.Client(proxy=f"http://cordon:{token}@127.0.0.1:{port}", verify=ctx) as client:
                for _ in range(3):
                    assert client.get("https://api.openai.com/v1/models").status_code == 200
                # a Host that does not name the CONNECT host: cordon answers 421 itself
                assert client.get("https://api.openai.com/v1/models",
                                  headers={"Host": "elsewhere.example"}).status_code == 421
            r = cordon_proc("status", "--json", env=env, cwd=project)
            assert r.returncode == 0, r.stderr
            s = json.loads(r.stdout)["scopes"][0]
            assert (s["running"], s["pid"], s["port"]) == (True, sp.proc.pid, port)
            assert s["version"] and s["uptime_s"] is not None and s["started_at"]
            route = s["routes"][0]
            assert (route["name"], route["secret_ok"]) == ("openai", True)
            assert (route["requests"], route["errors"]) == (4, 1), route
            assert SECRET_VALUE not in r.stdout and str(token) not in r.stdout
            assert cordon_proc("status", "-q", cwd=project).returncode == 0
            d = cordon_proc("doctor", "--json", "--no-probes", env=env, cwd=project)
            port_check = next(c for c in json.loads(d.stdout)["checks"] if c["id"] == "port")
            assert port_check["status"] == "ok" and f"pid {sp.proc.pid}" in port_check["message"]
        r = cordon_proc("status", "-q", cwd=project)
        assert (r.returncode, r.stdout) == (1, "")
