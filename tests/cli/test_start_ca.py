"""`cordon start` and its CA: checked before "ready", used after it.

A CA that cannot serve is still a one-line error before the ready line; the route
hosts' leaves are signed right after ready by a child process (the proxy itself
never loads cryptography for them), and intercepted requests that arrive meanwhile
wait for them instead of failing.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from cordon.store.castore import ca_paths, load_or_create_ca
from cordon.store.paths import Paths
from cordon.store.tokens import TokenStore
from tests import configs
from tests.cli.test_start import SECRET, health, state_dir, write_config
from tests.conftest import subprocess_env
from tests.startproc import StartProc, started
from tests.upstream import UpstreamServer


def _ca_in_state_dir(project: Path) -> tuple[Path, Path]:
    cert, key = ca_paths(state_dir(project))
    load_or_create_ca(cert, key)
    return cert, key


def _garbage(cert: Path, key: Path) -> str:
    cert.write_text("not a certificate\n")
    return "is not valid PEM"


def _mismatched(cert: Path, key: Path) -> str:
    other_cert, other_key = ca_paths(cert.parent.parent / "other")
    load_or_create_ca(other_cert, other_key)
    key.write_bytes(other_key.read_bytes())
    return "does not belong to certificate"


def _readable_key(cert: Path, key: Path) -> str:
    key.chmod(0o644)
    return "readable by group or others"


@pytest.mark.parametrize("spoil", [_garbage, _mismatched, _readable_key])
def test_a_ca_that_cannot_serve_is_refused_before_ready(project: Path, up: UpstreamServer, spoil) -> None:  # type: ignore[no-untyped-def]
    write_config(project, up)
    cert, key = _ca_in_state_dir(project)
    expected = spoil(cert, key)
    sp = StartProc(env={"REAL_KEY": SECRET}, cwd=project)
    try:
        assert sp.wait_exit() == 1
    finally:
        sp.close()
    errors = [line for line in sp.lines() if line.startswith("cordon: error:")]
    assert len(errors) == 1 and expected in errors[0], sp.stderr
    assert any(line.startswith("hint:") for line in sp.lines())
    assert "ready on" not in sp.stderr and "Traceback" not in sp.stderr
    assert not (state_dir(project) / "proxy.json").exists()


def test_a_tls_section_pair_that_cannot_serve_is_refused_before_ready(project: Path, up: UpstreamServer) -> None:
    cert, key = project / "ca.pem", project / "ca-key.pem"
    cert.write_text("not a certificate\n")
    key.write_text("not a key\n")
    key.chmod(0o600)
    configs.write(project / "cordon.toml", configs.openai(env="REAL_KEY", upstream=up), listen=0,
                  tls={"ca_cert_path": str(cert), "ca_key_path": str(key)})
    sp = StartProc(env={"REAL_KEY": SECRET}, cwd=project)
    try:
        assert sp.wait_exit() == 1
    finally:
        sp.close()
    assert f"cordon: error: the CA certificate {cert} or key {key} is not valid PEM" in sp.stderr
    assert "ready on" not in sp.stderr and "Traceback" not in sp.stderr


def test_requests_right_after_ready_wait_for_the_ca_and_succeed(project: Path, up: UpstreamServer) -> None:
    write_config(project, up)
    sd = state_dir(project)
    _ca_in_state_dir(project)          # an existing CA: the one that is loaded after ready
    token = TokenStore.for_state_dir(sd).ensure_default()
    # the client is set up before the proxy starts, so its requests go out the moment it is ready
    ctx = ssl.create_default_context(cafile=str(sd / "certs" / "ca-cert.pem"))

    with started(env={"REAL_KEY": SECRET}, cwd=project) as sp:
        port = sp.wait_ready()
        with httpx.Client(proxy=f"http://cordon:{token}@127.0.0.1:{port}", verify=ctx, timeout=20,
                          trust_env=False) as c:
            def get(_: int) -> int:
                return c.get("https://api.openai.com/v1/models",
                             headers={"Authorization": "Bearer sk-placeholder"}).status_code

            with ThreadPoolExecutor(6) as pool:
                assert list(pool.map(get, range(6))) == [200] * 6
        assert up.requests[-1].header("authorization") == f"Bearer {SECRET}"
        # the route host's leaf was signed by a child process: the proxy never loaded cryptography
        maps = Path(f"/proc/{sp.proc.pid}/maps").read_text()
        assert "cryptography" not in maps
    assert "Traceback" not in sp.stderr and "could not be loaded" not in sp.stderr
    assert "signing them here" not in sp.stderr


def test_preflight_loads_no_cryptography(project: Path, up: UpstreamServer) -> None:
    """Everything `cordon start` does before binding (secrets, CA check, bundle, tokens) runs
    without importing cryptography: it is the largest import of the proxy's start-up."""
    write_config(project, up)
    _ca_in_state_dir(project)
    code = ("import os, sys; from pathlib import Path; from cordon.app.start import ProxyRun; "
            "from cordon.store.paths import Paths; "
            "from cordon.store.scope import load_scope; "
            "run = ProxyRun(load_scope(Paths.from_env(os.environ, Path.cwd()), None, None), dict(os.environ)); "
            "run.preflight(print); print(sorted(m for m in sys.modules if m.split('.')[0] == 'cryptography'))")
    env = subprocess_env({"REAL_KEY": SECRET})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                      env.get("PYTHONPATH")]))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=project,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"
    assert (Paths.from_env(env, project).state_dir("project", project) / "certs" / "combined-ca.pem").exists()


def test_a_proxy_without_routes_never_loads_cryptography(project: Path) -> None:
    """Tunnels only: nothing is ever signed, so the CA is checked at start and never loaded."""
    write_config(project)
    _ca_in_state_dir(project)
    with started(cwd=project) as sp:
        port = sp.wait_ready()
        assert health(port)[0] == 200
        sp.pump(1.5)   # past the warm-up after ready
        assert "cryptography" not in Path(f"/proc/{sp.proc.pid}/maps").read_text()
