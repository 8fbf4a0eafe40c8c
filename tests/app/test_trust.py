"""`cordon trust` / `cordon untrust` against the real Debian trust store (as root), and the store logic."""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cordon.app.trust import AnchorDirStore, MacKeychainStore, detect_store, fingerprint
from cordon.core import certs
from cordon.store import castore
from cordon.store.paths import Paths
from tests.conftest import REPO

ANCHORS = Path("/usr/local/share/ca-certificates")
SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CERTS_DIR = Path("/etc/ssl/certs")
LOCK = Path("/tmp/cordon-test-system-trust.lock")

TLS_SERVER = """
import socket, ssl, sys
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(sys.argv[1])
srv = socket.create_server(("127.0.0.1", 0))
print(srv.getsockname()[1], flush=True)
while True:
    conn, _ = srv.accept()
    try:
        tls = ctx.wrap_socket(conn, server_side=True)
        tls.recv(65536)
        tls.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 9\\r\\nConnection: close\\r\\n\\r\\ntrusted!\\n")
        tls.close()
    except (ssl.SSLError, OSError):
        conn.close()
"""


@pytest.fixture
def system_trust_store() -> Iterator[None]:
    """The real Debian store; whatever a test adds is taken out again, even when it fails."""
    if os.geteuid() != 0 or not shutil.which("update-ca-certificates") or not ANCHORS.is_dir():
        pytest.skip("needs root and Debian's update-ca-certificates")
    if not shutil.which("curl"):
        pytest.skip("needs curl")
    # one test at a time on this machine changes the system store (other checkouts run this suite too)
    with open(LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        files_before = set(ANCHORS.iterdir())
        bundle_before = SYSTEM_BUNDLE.read_bytes()
        try:
            yield
        finally:
            added = set(ANCHORS.iterdir()) - files_before
            for p in added:
                p.unlink()
            if added or SYSTEM_BUNDLE.read_bytes() != bundle_before or cordon_links():
                subprocess.run(["update-ca-certificates", "--fresh"], capture_output=True, check=False)
            assert SYSTEM_BUNDLE.read_bytes() == bundle_before, "the system bundle was not restored"
            assert not cordon_links(), "links to a cordon CA were left in /etc/ssl/certs"


def cordon_links() -> list[Path]:
    return [p for p in CERTS_DIR.iterdir() if p.is_symlink() and "cordon-" in os.readlink(p)]


def curl_env() -> dict[str, str]:
    """An environment with no CA and no proxy variable: curl uses the system roots only."""
    drop = {"SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "HTTPS_PROXY",
            "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def curl(port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--max-time", "20", "--resolve", f"api.openai.com:{port}:127.0.0.1",
                           f"https://api.openai.com:{port}/"], capture_output=True, text=True,
                          env=curl_env(), timeout=60)


@pytest.fixture
def mitm_leaf_server(project: Path, tmp_path: Path) -> Iterator[int]:
    """A local TLS server for api.openai.com whose leaf is signed by the project scope's CA."""
    state = Paths.from_env(os.environ, project).state_dir("project", project)
    ca = castore.load_or_create_ca(*castore.ca_paths(state))
    leaf = certs.issue_leaf(ca, "api.openai.com")
    chain = tmp_path / "leaf.pem"
    chain.write_bytes(leaf.chain_pem + leaf.key_pem)
    script = tmp_path / "tls_server.py"
    script.write_text(TLS_SERVER)
    proc = subprocess.Popen([sys.executable, str(script), str(chain)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.slow
def test_trust_makes_curl_accept_a_leaf_from_the_scope_ca_and_untrust_undoes_it(
        cordon, project: Path, system_trust_store: None, mitm_leaf_server: int) -> None:
    before = curl(mitm_leaf_server)
    assert before.returncode == 60, before.stderr   # certificate problem: unknown issuer

    r = cordon("trust")
    assert r.status == 0, r.stderr
    state = Paths.from_env(os.environ, project).state_dir("project", project)
    anchor = ANCHORS / f"cordon-{state.name}.crt"
    ca_pem = castore.ca_paths(state)[0].read_bytes()
    assert anchor.read_bytes() == ca_pem
    assert stat.S_IMODE(anchor.stat().st_mode) == 0o644
    assert fingerprint(ca_pem) in r.stdout
    assert "cordon untrust" in r.stdout

    after = curl(mitm_leaf_server)
    assert after.returncode == 0, after.stderr
    assert after.stdout == "trusted!\n"
    assert "already" in cordon("trust").stdout

    links = [p for p in CERTS_DIR.iterdir() if p.is_symlink() and anchor.stem in os.readlink(p)]
    assert links, "update-ca-certificates linked the CA into /etc/ssl/certs"
    r = cordon("untrust")
    assert r.status == 0, r.stderr
    assert not anchor.exists()
    assert not [p for p in links if p.is_symlink()], "no link to the removed CA is left behind"
    assert curl(mitm_leaf_server).returncode == 60
    assert "nothing to remove" in cordon("untrust").stdout


def test_trust_user_scope_uses_its_own_anchor_name(cordon, project: Path, system_trust_store: None) -> None:
    assert cordon("trust", "--scope", "user").status == 0
    assert (ANCHORS / "cordon-user.crt").is_file()
    assert cordon("untrust", "--scope", "user").status == 0
    assert not (ANCHORS / "cordon-user.crt").exists()


def ca_pem() -> bytes:
    return certs.create_ca("cordon test").cert_pem


def test_without_privileges_the_error_names_the_commands_to_run(tmp_path: Path) -> None:
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("drops root's capabilities with setpriv")
    anchors = tmp_path / "anchors"
    anchors.mkdir(mode=0o555)
    cert = tmp_path / "ca.pem"
    cert.write_bytes(ca_pem())
    code = ("from pathlib import Path\nfrom cordon.app.trust import AnchorDirStore\n"
            "from cordon.core.errors import CordonError\n"
            f"s = AnchorDirStore('store', Path({str(anchors)!r}), ('update-ca-certificates',))\n"
            f"try:\n    s.add('proj-1', Path({str(cert)!r}).read_bytes(), Path({str(cert)!r}))\n"
            f"except CordonError as e:\n    print(e.message)\n    print(e.hint)\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run(["setpriv", "--inh-caps=-all", "--bounding-set=-all", sys.executable, "-c", code],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    message, hint = out.stdout.splitlines()[:2]
    assert "needs root" in message
    assert f"install -m 644 {cert} {anchors}/cordon-proj-1.crt && update-ca-certificates" in hint
    assert list(anchors.iterdir()) == []


def test_anchor_store_rolls_back_when_the_rebuild_fails(tmp_path: Path) -> None:
    pem = ca_pem()
    store = AnchorDirStore("store", tmp_path / "anchors", ("false",))
    with pytest.raises(Exception, match="failed"):
        store.add("p", pem, tmp_path / "ca.pem")
    assert not store.path_for("p").exists(), "no anchor left when the bundle was not rebuilt"
    ok = AnchorDirStore("store", tmp_path / "anchors", ("true",))
    assert ok.add("p", pem, tmp_path / "ca.pem").action == "added"
    assert ok.add("p", pem, tmp_path / "ca.pem").action == "already"
    assert ok.contains("p", pem)
    assert ok.remove("p", pem, tmp_path / "ca.pem").action == "removed"
    assert ok.remove("p", pem, tmp_path / "ca.pem").action == "absent"


FAKE_SECURITY = """#!/bin/sh
# a stand-in for macOS `security`: one keychain as a file of SHA-1 hashes; every call logged
echo "$*" >> "$FAKE_KEYCHAIN.log"
case "$1" in
  find-certificate) sed 's/^/SHA-1 hash: /' "$FAKE_KEYCHAIN" 2>/dev/null; exit 0 ;;
  add-trusted-cert) for a; do f="$a"; done
                    openssl x509 -noout -fingerprint -sha1 -in "$f" | sed 's/.*=//; s/://g' >> "$FAKE_KEYCHAIN" ;;
  remove-trusted-cert) exit 0 ;;
  delete-certificate) grep -v "$3" "$FAKE_KEYCHAIN" > "$FAKE_KEYCHAIN.new"; mv "$FAKE_KEYCHAIN.new" "$FAKE_KEYCHAIN" ;;
  *) exit 2 ;;
esac
"""


def test_macos_keychain_store_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not shutil.which("openssl"):
        pytest.skip("needs openssl")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "security").write_text(FAKE_SECURITY)
    (bindir / "security").chmod(0o755)
    keychain = tmp_path / "keychain"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_KEYCHAIN", str(keychain))
    pem = ca_pem()
    cert = tmp_path / "ca-cert.pem"
    cert.write_bytes(pem)
    store = detect_store(tmp_path / "home", system="Darwin")
    assert isinstance(store, MacKeychainStore)
    assert store.add("user", pem, cert).action == "added"
    assert store.contains("user", pem)
    assert store.add("user", pem, cert).action == "already"
    assert store.remove("user", pem, cert).action == "removed"
    assert not store.contains("user", pem)
    log = Path(f"{keychain}.log").read_text()
    login = tmp_path / "home" / "Library" / "Keychains" / "login.keychain-db"
    assert f"add-trusted-cert -r trustRoot -k {login} {cert}" in log
    assert f"remove-trusted-cert {cert}" in log


def test_an_unknown_system_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="does not know how to change the trust store on Plan9"):
        detect_store(tmp_path, system="Plan9")
