"""`cordon doctor`: every check passing and failing, the --json shape, exit status.

Static checks run against real files, real sockets and real processes; the
external `op` and `systemctl` are stand-in scripts on PATH. The live runtime
probes are in test_doctor_probes.py (they need the real proxy).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cordon.app.doctor.checks import (
    IntegrationFile,
    bundle_file,
    check_bundle,
    check_ca,
    check_config,
    check_integration,
    check_op,
    check_port,
    check_secrets,
    check_service,
    check_tokens,
    integration_files,
)
from cordon.app.service import Systemd
from cordon.core import certs
from cordon.core.envvars import contract_vars
from cordon.store import castore, dotenvfile
from cordon.store.config import parse_config
from cordon.store.paths import Paths
from cordon.store.runrecord import run_record_path
from cordon.store.tokens import TokenStore
from tests import configs
from tests.conftest import write
from tests.ports import reserved_port

SECRET_VALUE = "sk-live-DOCTOR-TEST-abcdef0123"
NOW = dt.datetime.now(dt.UTC)

OPENAI = configs.openai(env="DOCTOR_TEST_OPENAI", placeholder_env=["OPENAI_API_KEY"])


def config(port: int) -> str:
    return configs.render(OPENAI, listen=port)


OP_ROUTE = configs.RouteSpec(name="vaulted", host="api.vaulted.example", header_name="x-api-key", scheme=None,
                             secret={"source": "1password", "vault": "dev", "item": "vaulted"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(tmp_path: Path, text: str | None = None, port: int | None = None):  # type: ignore[no-untyped-def]
    path = write(tmp_path / "proj" / "cordon.toml", text or config(port=port or _free_port()))
    return parse_config(path.read_text(), path, "project")


def _state(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    d.mkdir(exist_ok=True)
    return d


def _write_ca(state: Path, ca: certs.CA) -> tuple[Path, Path]:
    cert, key = castore.ca_paths(state)
    write(cert, ca.cert_pem.decode())
    key.write_bytes(ca.key_pem())
    key.chmod(0o600)
    return cert, key


def by_id(checks, cid: str):  # type: ignore[no-untyped-def]
    found = [c for c in checks if c.id == cid]
    assert len(found) == 1, [c.id for c in checks]
    return found[0]


# ---------------------------------------------------------------- config

def test_config_ok_missing_broken_and_empty(tmp_path: Path) -> None:
    good = write(tmp_path / "a" / "cordon.toml", config(port=6790))
    [c], cfg = check_config(good, "project")
    assert (c.status, cfg is not None) == ("ok", True) and "parses: 1 route" in c.message
    [c], cfg = check_config(tmp_path / "none" / "cordon.toml", "project")
    assert c.status == "warn" and cfg is None and "cordon setup" in (c.fix or "")
    bad = write(tmp_path / "b" / "cordon.toml", "listen = 6790\n[[routes]]\nname = 1\n")
    [c], cfg = check_config(bad, "project")
    assert c.status == "fail" and cfg is None and str(bad) in c.message and c.fix
    empty = write(tmp_path / "c" / "cordon.toml", "listen = 6790\n")
    [c], cfg = check_config(empty, "project")
    assert c.status == "warn" and "no routes" in c.message and "route add" in (c.fix or "")


# ---------------------------------------------------------------- port

STANDIN = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        body = json.dumps({"status": "ok"}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
srv = HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
print("ready", flush=True)
srv.serve_forever()
"""


@pytest.fixture
def cordon_standin() -> Iterator[tuple[subprocess.Popen[str], int]]:
    with reserved_port() as port:    # http.server listens with SO_REUSEADDR
        p = subprocess.Popen([sys.executable, "-c", STANDIN, str(port)], stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        try:
            yield p, port
        finally:
            p.kill()
            p.wait()
            p.stdout.close()


def test_port_free(tmp_path: Path) -> None:
    c = check_port(_config(tmp_path), _state(tmp_path))
    assert c.status == "ok" and "is free" in c.message


def test_port_taken_by_another_program(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        c = check_port(_config(tmp_path, port=port), _state(tmp_path))
    assert c.status == "fail" and f"port {port} is in use by another program" in c.message
    assert "set listen = " in (c.fix or "") and "ss -ltnp" in (c.fix or "")


def test_port_is_ours(tmp_path: Path, cordon_standin) -> None:  # type: ignore[no-untyped-def]
    proc, port = cordon_standin
    state = _state(tmp_path)
    write(run_record_path(state), json.dumps({"pid": proc.pid, "port": port}))
    c = check_port(_config(tmp_path, port=port), state)
    assert c.status == "ok" and f"this scope's proxy (pid {proc.pid})" in c.message


def test_port_taken_by_another_cordon(tmp_path: Path, cordon_standin) -> None:  # type: ignore[no-untyped-def]
    _, port = cordon_standin
    c = check_port(_config(tmp_path, port=port), _state(tmp_path))
    assert c.status == "fail" and "another cordon proxy" in c.message


# ---------------------------------------------------------------- CA

def test_ca_all_good(tmp_path: Path) -> None:
    state = _state(tmp_path)
    _write_ca(state, certs.create_ca())
    checks = check_ca(None, state, NOW)
    assert [(c.id, c.status) for c in checks] == [("ca.files", "ok"), ("ca.key_mode", "ok"), ("ca.expiry", "ok")]


def test_ca_not_created_yet(tmp_path: Path) -> None:
    [c] = check_ca(None, _state(tmp_path), NOW)
    assert (c.id, c.status) == ("ca.files", "warn") and "creates it" in (c.fix or "")


def test_ca_incomplete(tmp_path: Path) -> None:
    state = _state(tmp_path)
    _, key = _write_ca(state, certs.create_ca())
    key.unlink()
    [c] = check_ca(None, state, NOW)
    assert (c.id, c.status) == ("ca.files", "fail") and str(key) in c.message


def test_ca_key_readable_by_others(tmp_path: Path) -> None:
    state = _state(tmp_path)
    _, key = _write_ca(state, certs.create_ca())
    key.chmod(0o644)
    c = by_id(check_ca(None, state, NOW), "ca.key_mode")
    assert c.status == "fail" and "0644" in c.message and c.fix == f"run `chmod 600 {key}`"


def test_ca_expiring_soon_and_expired(tmp_path: Path) -> None:
    state = _state(tmp_path)
    _write_ca(state, certs.create_ca(validity=dt.timedelta(days=20)))
    c = by_id(check_ca(None, state, NOW), "ca.expiry")
    assert c.status == "warn" and re.search(r"expires in (19|20) days", c.message) and "cordon setup" in (c.fix or "")
    _write_ca(state, certs.create_ca(validity=dt.timedelta(days=1), now=NOW - dt.timedelta(days=10)))
    c = by_id(check_ca(None, state, NOW), "ca.expiry")
    assert c.status == "fail" and "expired" in c.message


def test_ca_key_of_another_certificate(tmp_path: Path) -> None:
    state = _state(tmp_path)
    cert, _ = _write_ca(state, certs.create_ca())
    cert.write_bytes(certs.create_ca().cert_pem)
    c = by_id(check_ca(None, state, NOW), "ca.files")
    assert c.status == "fail" and "does not belong" in c.message


def test_ca_disabled(tmp_path: Path) -> None:
    cfg = _config(tmp_path, configs.render(OPENAI, listen=6790, tls={"enabled": False}))
    [c] = check_ca(cfg, _state(tmp_path), NOW)
    assert c.status == "warn" and "enabled = false" in c.message


# ---------------------------------------------------------------- bundle

def test_bundle_good_missing_stale_and_rootless(tmp_path: Path) -> None:
    state = _state(tmp_path)
    cert, _ = _write_ca(state, certs.create_ca())
    roots = castore.system_roots()
    bundle = bundle_file(state)
    c = check_bundle(bundle, cert, roots)
    assert c.status == "warn" and "no merged CA bundle" in c.message
    castore.write_bundle(bundle, cert.read_bytes(), {})
    c = check_bundle(bundle, cert, roots)
    assert c.status == "ok" and f"holds the CA and {len(roots)} system roots" in c.message
    # built for an older CA
    castore.write_bundle(bundle, certs.create_ca().cert_pem, {})
    c = check_bundle(bundle, cert, roots)
    assert c.status == "fail" and "does not hold this scope's CA" in c.message and c.fix
    # only the CA: tunnelled connections would fail
    bundle.write_bytes(cert.read_bytes())
    c = check_bundle(bundle, cert, roots)
    assert c.status == "fail" and "no system roots" in c.message


# ---------------------------------------------------------------- secrets and op

def test_secrets_resolve_or_not(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    [c] = check_secrets(cfg, {"DOCTOR_TEST_OPENAI": SECRET_VALUE})
    assert c.id == "secret.openai" and c.status == "ok" and SECRET_VALUE not in c.message
    [c] = check_secrets(cfg, {})
    assert c.status == "fail" and c.fix == "export DOCTOR_TEST_OPENAI before starting cordon"


def _fake_op(bindir: Path, whoami_rc: int) -> Path:
    bindir.mkdir(exist_ok=True)
    op = bindir / "op"
    op.write_text(f"#!/bin/sh\n[ \"$1\" = whoami ] || exit 9\n"
                  f"[ {whoami_rc} = 0 ] && {{ echo 'URL: my.1password.com'; exit 0; }}\n"
                  "echo '[ERROR] 2025/01/01 account is not signed in' >&2; exit 1\n")
    op.chmod(op.stat().st_mode | stat.S_IXUSR)
    return op


def test_op_needed_only_when_a_route_uses_it(tmp_path: Path) -> None:
    assert check_op(_config(tmp_path), {"PATH": ""}) == []


def test_op_missing_signed_in_and_not(tmp_path: Path) -> None:
    cfg = _config(tmp_path, configs.render(OPENAI, OP_ROUTE, listen=6790))
    [c] = check_op(cfg, {"PATH": str(tmp_path / "nothing")})
    assert c.status == "fail" and "not installed" in c.message and "vaulted" in c.message
    bindir = tmp_path / "bin"
    _fake_op(bindir, 0)
    [c] = check_op(cfg, {"PATH": str(bindir)})
    assert c.status == "ok" and "signed in" in c.message
    _fake_op(bindir, 1)
    [c] = check_op(cfg, {"PATH": str(bindir)})
    assert c.status == "fail" and "not signed in" in c.message and "op signin" in (c.fix or "")


# ---------------------------------------------------------------- tokens

def test_tokens_missing_private_and_open(tmp_path: Path) -> None:
    state = _state(tmp_path)
    c = check_tokens(state)
    assert c.status == "warn" and "no tokens.toml" in c.message
    store = TokenStore.for_state_dir(state)
    token = store.ensure("default")
    c = check_tokens(state)
    assert c.status == "ok" and "default" in c.message and token not in c.message
    store.path.chmod(0o644)
    c = check_tokens(state)
    assert c.status == "fail" and "chmod 600" in (c.fix or "")


# ---------------------------------------------------------------- integrations

def _codex_env(project: Path, port: int, token: str, bundle: Path, ca: Path) -> Path:
    vars_ = contract_vars(port=port, token=token, bundle_path=bundle, ca_path=ca, routes=[])
    vars_ = {k: v for k, v in vars_.items() if not k.startswith("CODEX_")}
    return write(project / ".codex" / ".env", "MY_OWN=1\n" + dotenvfile.render_block(vars_))


def test_integrations_found_and_checked(tmp_path: Path) -> None:
    cfg = _config(tmp_path, port=6790)
    project = cfg.path.parent
    state = _state(tmp_path)
    cert, _ = _write_ca(state, certs.create_ca())
    bundle = castore.write_bundle(bundle_file(state), cert.read_bytes(), {})
    token = TokenStore.for_state_dir(state).ensure("codex")
    _codex_env(project, 6790, token, bundle, cert)
    claude_env = contract_vars(port=6790, token=token, bundle_path=bundle, ca_path=cert, routes=[])
    write(project / ".claude" / "settings.local.json", json.dumps({"model": "x", "env": claude_env}))
    files = integration_files(cfg.path, "project", tmp_path / "home", {})
    assert [f.name for f in files] == ["codex", "claude-code"]
    for f in files:
        c = check_integration(f, 6790, [token], bundle, cert)
        assert c.status == "ok", c.message
        assert token not in c.message


def test_integration_wrong_port_token_and_bundle(tmp_path: Path) -> None:
    state = _state(tmp_path)
    cert, _ = _write_ca(state, certs.create_ca())
    bundle = castore.write_bundle(bundle_file(state), cert.read_bytes(), {})
    token = "t0ken-value-not-in-any-message"
    vars_ = contract_vars(port=7000, token=token, bundle_path=tmp_path / "old.pem", ca_path=cert, routes=[])
    f = IntegrationFile("codex", tmp_path / ".env", vars_)
    c = check_integration(f, 6790, ["another-token"], bundle, cert)
    assert c.status == "fail" and c.fix == "run `cordon setup codex` again"
    assert "127.0.0.1:7000, but cordon.toml listens on 127.0.0.1:6790" in c.message
    assert "not in tokens.toml" in c.message
    assert f"SSL_CERT_FILE is {tmp_path / 'old.pem'}" in c.message
    assert token not in c.message


def test_files_without_cordon_entries_are_not_integrations(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    write(cfg.path.parent / ".codex" / ".env", "OPENAI_API_KEY=mine\n")
    write(cfg.path.parent / ".claude" / "settings.local.json", json.dumps({"env": {"FOO": "1"}}))
    assert integration_files(cfg.path, "project", tmp_path, {}) == []


# ---------------------------------------------------------------- service

FAKE_SYSTEMCTL = """#!/bin/sh
case "$2" in
  show-environment) exit 0 ;;
  show) echo "ActiveState=$FAKE_ACTIVE"; echo "MainPID=0"; echo "UnitFileState=enabled" ;;
esac
exit 0
"""


def test_service_states(tmp_path: Path) -> None:
    paths = Paths.from_env({"HOME": str(tmp_path)}, cwd=tmp_path)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "systemctl"
    exe.write_text(FAKE_SYSTEMCTL)
    exe.chmod(0o755)
    env = {"PATH": str(bindir), "FAKE_ACTIVE": "active"}
    mgr = Systemd(paths, env)
    assert check_service(None, "x").status == "skip"
    assert check_service(Systemd(paths, {"PATH": str(tmp_path / "none")}), "x").status == "skip"
    c = check_service(mgr, "x")
    assert c.status == "skip" and "no service installed" in c.message
    write(mgr.path_for("x"), "[Service]\n")
    assert check_service(mgr, "x").status == "ok"
    for state, want in (("failed", "fail"), ("inactive", "warn")):
        env["FAKE_ACTIVE"] = state
        c = check_service(Systemd(paths, env), "x")
        assert c.status == want and "journalctl --user -u cordon-x.service" in (c.fix or "")


# ---------------------------------------------------------------- the command

def test_cli_text_and_exit_status(project: Path, cordon, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    write(project / "cordon.toml", config(port=_free_port()))
    r = cordon("doctor", "--no-probes")
    assert r.status == 1
    assert "fail  secret.openai" in r.stdout and "fix: export DOCTOR_TEST_OPENAI" in r.stdout
    assert r.stdout.splitlines()[-1].endswith("1 failed, 1 skipped")
    monkeypatch.setenv("DOCTOR_TEST_OPENAI", SECRET_VALUE)
    r = cordon("doctor", "--no-probes")
    assert r.status == 0, r.stdout
    assert SECRET_VALUE not in r.stdout + r.stderr
    assert "ok    secret.openai" in r.stdout


def test_cli_json_shape(project: Path, cordon, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    write(project / "cordon.toml", config(port=_free_port()))
    monkeypatch.setenv("DOCTOR_TEST_OPENAI", SECRET_VALUE)
    r = cordon("doctor", "--json", "--no-probes")
    assert r.status == 0
    data = json.loads(r.stdout)
    assert set(data) == {"ok", "scope", "config", "state_dir", "summary", "checks"}
    assert data["ok"] is True and data["scope"] == "project" and data["config"] == str(project / "cordon.toml")
    assert set(data["summary"]) == {"ok", "warn", "fail", "skip"}
    assert sum(data["summary"].values()) == len(data["checks"])
    ids = [c["id"] for c in data["checks"]]
    assert ids[:2] == ["config", "port"] and "secret.openai" in ids and "tokens" in ids and "service" in ids
    for c in data["checks"]:
        assert set(c) == {"id", "status", "message", "fix", "details"}
        assert c["status"] in ("ok", "warn", "fail", "skip")
        assert (c["fix"] is not None) == (c["status"] in ("warn", "fail"))
    monkeypatch.delenv("DOCTOR_TEST_OPENAI")
    r = cordon("doctor", "--json", "--no-probes")
    assert r.status == 1 and json.loads(r.stdout)["ok"] is False


def test_cli_as_a_process_without_config(project: Path, cordon_proc) -> None:  # type: ignore[no-untyped-def]
    r = cordon_proc("doctor", "--no-probes")
    assert r.returncode == 0, r.stdout + r.stderr   # nothing failed: there is just nothing set up yet
    assert "warn  config" in r.stdout and "Traceback" not in r.stderr


def test_key_mode_failure_through_the_cli(project: Path, home: Path, cordon, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    write(project / "cordon.toml", config(port=_free_port()))
    monkeypatch.setenv("DOCTOR_TEST_OPENAI", SECRET_VALUE)
    state = Paths.from_env(dict(os.environ), cwd=project).state_dir("project", project)
    _, key = _write_ca(state, certs.create_ca())
    key.chmod(0o640)
    r = cordon("doctor", "--no-probes")
    assert r.status == 1 and "fail  ca.key_mode" in r.stdout and f"chmod 600 {key}" in r.stdout


# ---------------------------------------------------------------- against the real `cordon setup`

def test_doctor_checks_what_setup_wrote(project: Path, cordon) -> None:  # type: ignore[no-untyped-def]
    assert cordon("setup", "codex", "--yes").status == 0
    assert cordon("setup", "claude-code", "--yes").status == 0
    assert cordon("secret", "set", "openai", stdin="sk-test-openai\n").status == 0
    assert cordon("secret", "set", "anthropic", stdin="sk-test-anthropic\n").status == 0
    r = cordon("doctor", "--json", "--no-probes")
    checks = {c["id"]: c for c in json.loads(r.stdout)["checks"]}
    ours = {k: c["status"] for k, c in checks.items() if k.startswith("integration.")}
    assert ours == {"integration.codex": "ok", "integration.codex-config": "ok", "integration.claude-code": "ok"}
    for cid in ("ca.files", "ca.key_mode", "ca.expiry", "bundle", "tokens", "secret.openai", "secret.anthropic"):
        assert checks[cid]["status"] == "ok", checks[cid]
    assert r.status == 0, r.stdout
    assert "sk-test" not in r.stdout

    # the port moves: every file setup wrote now points at the wrong one
    cfg = project / "cordon.toml"
    cfg.write_text(cfg.read_text().replace("listen = 6790", "listen = 6799"))
    r = cordon("doctor", "--no-probes")
    assert r.status == 1
    lines = r.stdout.splitlines()
    for name, setup in (("codex", "codex"), ("codex-config", "codex"), ("claude-code", "claude-code")):
        i = next(i for i, ln in enumerate(lines) if ln.startswith(f"fail  integration.{name} "))
        assert "but cordon.toml listens on 127.0.0.1:6799" in lines[i]
        assert lines[i + 1].strip() == f"fix: run `cordon setup {setup}` again"
    assert cordon("setup", "codex", "--yes").status == 0
    assert cordon("setup", "claude-code", "--yes").status == 0
    assert cordon("doctor", "--no-probes").status == 0


def test_codex_mcp_server_environments_are_checked(tmp_path: Path) -> None:
    cfg = _config(tmp_path, port=6790)
    good = "http://codex:tok@127.0.0.1:6790"
    write(cfg.path.parent / ".codex" / "config.toml",
          f'model = "x"\n[mcp_servers.docs]\ncommand = "docs-mcp"\n[mcp_servers.docs.env]\nHTTPS_PROXY = "{good}"\n'
          '[mcp_servers.other]\ncommand = "o"\n[mcp_servers.other.env]\nHTTPS_PROXY = "http://c:tok@127.0.0.1:1"\n'
          '[mcp_servers.theirs]\ncommand = "t"\n[mcp_servers.theirs.env]\nFOO = "1"\n')
    files = {f.name: f for f in integration_files(cfg.path, "project", tmp_path, {})}
    assert set(files) == {"codex-mcp.docs", "codex-mcp.other"}
    assert check_integration(files["codex-mcp.docs"], 6790, ["tok"], tmp_path / "b", tmp_path / "c").status == "ok"
    c = check_integration(files["codex-mcp.other"], 6790, ["tok"], tmp_path / "b", tmp_path / "c")
    assert c.status == "fail" and c.id == "integration.codex-mcp.other" and c.fix == "run `cordon setup codex` again"


def test_sandbox_check_says_whether_exec_confines(home: Path, tmp_path: Path) -> None:
    from cordon.app.doctor.checks import check_sandbox
    paths = Paths.from_env(dict(os.environ), tmp_path)
    if sys.platform.startswith("linux") and shutil.which("bwrap"):
        assert check_sandbox(None, dict(os.environ), paths).status == "ok"
    nobwrap = tmp_path / "bin"
    nobwrap.mkdir()
    (nobwrap / "env").symlink_to(shutil.which("env") or "/usr/bin/env")
    env = {**os.environ, "PATH": str(nobwrap)}
    c = check_sandbox(None, env, paths)
    assert c.status == "warn" and "unconfined" in c.message and c.fix
    cfg = parse_config('[exec]\nsandbox = "required"\n', tmp_path / "cordon.toml")
    assert check_sandbox(cfg, env, paths).status == "fail"
    cfg = parse_config('[exec]\nsandbox = "off"\n', tmp_path / "cordon.toml")
    assert check_sandbox(cfg, env, paths).status == "skip"
