"""The on-disk CA, leaves verified by the stdlib `ssl` module in real loopback handshakes, the bundle."""

from __future__ import annotations

import datetime as dt
import os
import socket
import ssl
import stat
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cordon.core.certs import CA, LeafCache, create_ca, issue_leaf, split_pem_certs
from cordon.core.errors import ConfigError, CordonError
from cordon.store.castore import build_bundle, ca_paths, load_or_create_ca, system_roots, write_bundle
from tests.conftest import REPO


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """umask 0: anything private must be private by construction, not by the caller's umask."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


# --- the persistent CA -------------------------------------------------------------------------

def test_create_modes(tmp_path: Path, loose_umask: None) -> None:
    state = tmp_path / "cordon" / "projects" / "p-12345678"
    cert, key = ca_paths(state)
    ca = load_or_create_ca(cert, key)
    assert mode(key) == 0o600
    assert mode(cert) == 0o644
    assert mode(state) == 0o700 and mode(state / "certs") == 0o700
    assert mode(tmp_path / "cordon") == 0o700
    assert isinstance(ca.key, ec.EllipticCurvePrivateKey) and isinstance(ca.key.curve, ec.SECP256R1)
    bc = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    # nothing else (no temp file) is left beside the pair
    assert sorted(p.name for p in (state / "certs").iterdir() if not p.name.startswith(".ca.lock")) == \
        ["ca-cert.pem", "ca-key.pem"]


def test_existing_directories_are_not_changed(tmp_path: Path) -> None:
    d = tmp_path / "mine"
    d.mkdir(mode=0o755)
    d.chmod(0o755)
    load_or_create_ca(d / "ca.pem", d / "ca-key.pem")
    assert mode(d) == 0o755
    assert mode(d / "ca-key.pem") == 0o600


def test_load_returns_the_same_ca(tmp_path: Path) -> None:
    cert, key = ca_paths(tmp_path)
    a = load_or_create_ca(cert, key)
    before = cert.read_bytes(), key.read_bytes()
    b = load_or_create_ca(cert, key)
    assert a.cert == b.cert
    assert (cert.read_bytes(), key.read_bytes()) == before


def test_concurrent_creation_yields_one_matching_pair(tmp_path: Path) -> None:
    cert, key = ca_paths(tmp_path / "state")
    code = ("import sys; from pathlib import Path; from cordon.store.castore import load_or_create_ca; "
            "ca = load_or_create_ca(Path(sys.argv[1]), Path(sys.argv[2])); "
            "print(ca.cert.serial_number)")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(cert), str(key)], stdout=subprocess.PIPE,
                              text=True, env=env) for _ in range(4)]
    serials = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(serials) == 1
    ca = load_or_create_ca(cert, key)  # the loader checks that key and cert belong together
    assert str(ca.cert.serial_number) in serials


def test_cert_without_key_is_an_error(tmp_path: Path) -> None:
    cert, key = ca_paths(tmp_path)
    load_or_create_ca(cert, key)
    key.unlink()
    with pytest.raises(ConfigError, match=r"key .* does not"):
        load_or_create_ca(cert, key)


def test_mismatched_pair_is_an_error(tmp_path: Path) -> None:
    cert, key = ca_paths(tmp_path / "a")
    load_or_create_ca(cert, key)
    cert2, key2 = ca_paths(tmp_path / "b")
    load_or_create_ca(cert2, key2)
    with pytest.raises(ConfigError, match="does not belong"):
        load_or_create_ca(cert, key2)


def test_readable_key_is_refused(tmp_path: Path) -> None:
    cert, key = ca_paths(tmp_path)
    load_or_create_ca(cert, key)
    key.chmod(0o644)
    with pytest.raises(ConfigError) as e:
        load_or_create_ca(cert, key)
    assert "group or others" in e.value.message and e.value.hint == f"run `chmod 600 {key}`"


def test_garbage_pem_is_an_error(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("not a cert")
    key.write_text("not a key")
    key.chmod(0o600)
    with pytest.raises(ConfigError, match="not valid PEM"):
        load_or_create_ca(cert, key)


# --- leaves in real handshakes -----------------------------------------------------------------

def strict_client(cafile: Path | None = None, cadata: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None, cadata=cadata)
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    if hasattr(ssl, "VERIFY_X509_PARTIAL_CHAIN"):
        ctx.verify_flags &= ~ssl.VERIFY_X509_PARTIAL_CHAIN
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    return ctx


def handshake(ca: CA, leaf_host: str, client: ssl.SSLContext, server_hostname: str, tmp_path: Path) -> str:
    """Serve a leaf for `leaf_host` on 127.0.0.1 and connect with `client`; returns the ALPN/version."""
    leaf = issue_leaf(ca, leaf_host)
    chain = tmp_path / f"chain-{leaf_host}.pem"
    keyf = tmp_path / f"key-{leaf_host}.pem"
    chain.write_bytes(leaf.chain_pem)
    keyf.write_bytes(leaf.key_pem)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(chain, keyf)
    with socket.create_server(("127.0.0.1", 0)) as lsock:
        port = lsock.getsockname()[1]

        def serve() -> None:
            conn, _ = lsock.accept()
            conn.settimeout(10)
            try:
                with server.wrap_socket(conn, server_side=True) as s:
                    s.sendall(b"hi")
            except (ssl.SSLError, OSError):
                pass  # the client refused the certificate

        with ThreadPoolExecutor(1) as pool:
            fut = pool.submit(serve)
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                        client.wrap_socket(raw, server_hostname=server_hostname) as tls:
                    assert tls.recv(2) == b"hi"
                    return str(tls.version())
            finally:
                fut.result(timeout=10)


def test_leaf_from_the_disk_ca_verifies_under_a_strict_context(tmp_path: Path) -> None:
    ca = load_or_create_ca(*ca_paths(tmp_path / "state"))
    bundle = write_bundle(tmp_path / "bundle.pem", ca.cert_pem, {})
    assert handshake(ca, "api.openai.com", strict_client(bundle), "api.openai.com", tmp_path).startswith("TLS")


def test_leaf_for_an_ip_address(tmp_path: Path) -> None:
    ca = create_ca()
    ctx = strict_client(cadata=ca.cert_pem.decode())
    assert handshake(ca, "127.0.0.1", ctx, "127.0.0.1", tmp_path)


def test_leaf_for_another_name_fails_hostname_check(tmp_path: Path) -> None:
    ca = create_ca()
    with pytest.raises(ssl.SSLCertVerificationError, match=r"Hostname mismatch|doesn't match"):
        handshake(ca, "api.openai.com", strict_client(cadata=ca.cert_pem.decode()), "evil.example", tmp_path)


def test_a_ca_not_in_the_bundle_is_rejected(tmp_path: Path) -> None:
    ca, other = create_ca(), create_ca()
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        handshake(ca, "api.openai.com", strict_client(cadata=other.cert_pem.decode()), "api.openai.com", tmp_path)


def test_name_constrained_ca(tmp_path: Path) -> None:
    ca = create_ca(permitted_hosts=["api.openai.com", "api.anthropic.com"])
    ctx = strict_client(cadata=ca.cert_pem.decode())
    assert handshake(ca, "api.openai.com", ctx, "api.openai.com", tmp_path)
    with pytest.raises(ssl.SSLCertVerificationError, match="permitted subtree violation"):
        handshake(ca, "www.google.com", ctx, "www.google.com", tmp_path)


def test_name_constrained_ca_with_no_hosts_permits_nothing(tmp_path: Path) -> None:
    ca = create_ca(permitted_hosts=[])
    with pytest.raises(ssl.SSLCertVerificationError, match="permitted subtree violation"):
        handshake(ca, "api.openai.com", strict_client(cadata=ca.cert_pem.decode()), "api.openai.com", tmp_path)


def test_leaf_extensions() -> None:
    ca = create_ca()
    now = dt.datetime.now(dt.UTC)
    cert = x509.load_pem_x509_certificate(issue_leaf(ca, "api.openai.com", now=now).cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["api.openai.com"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert dt.timedelta(0) < now - cert.not_valid_before_utc <= dt.timedelta(days=3)
    assert dt.timedelta(days=190) <= cert.not_valid_after_utc - now <= dt.timedelta(days=210)
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_leaf_cache_reuses_and_renews() -> None:
    ca = create_ca()
    now = [dt.datetime.now(dt.UTC)]
    cache = LeafCache(ca, max_size=2, clock=lambda: now[0])
    a = cache.get("api.openai.com")
    assert cache.get("API.OpenAI.com.") is a
    now[0] += dt.timedelta(days=199, hours=12)   # within a day of expiry: renewed
    b = cache.get("api.openai.com")
    assert b is not a
    cache.get("x.example")
    cache.get("y.example")                       # evicts the least recently used
    assert len(cache) == 2
    assert cache.get("api.openai.com") is not b


# --- system roots and the bundle -----------------------------------------------------------------

def test_system_roots_found_here() -> None:
    roots = system_roots()
    assert len(roots) > 10
    assert all(r.startswith(b"-----BEGIN CERTIFICATE-----") for r in roots)


def test_system_roots_from_candidates(tmp_path: Path) -> None:
    assert system_roots([]) == []
    assert system_roots([str(tmp_path / "missing.pem")]) == []
    empty = tmp_path / "empty.pem"
    empty.write_text("nothing here\n")
    f = tmp_path / "roots.pem"
    f.write_bytes(create_ca("r1").cert_pem + create_ca("r2").cert_pem)
    assert len(system_roots([str(empty), str(f)])) == 2


def pem_subjects(bundle: bytes) -> list[str]:
    return ["CN=" + str(x509.load_pem_x509_certificate(b).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
            for b in split_pem_certs(bundle)]


def test_bundle_order_and_dedup(tmp_path: Path) -> None:
    inherited_ca, sys1, sys2, cordon_ca = (create_ca(n) for n in ("inherited", "sys1", "sys2", "cordon"))
    inherited = tmp_path / "inherited.pem"
    # the inherited file repeats a system root and (re-wrapped) the cordon CA from an outer session
    rewrapped = cordon_ca.cert_pem.replace(b"\n", b"\r\n")
    inherited.write_bytes(inherited_ca.cert_pem + sys2.cert_pem + rewrapped)
    bundle = build_bundle([cordon_ca.cert_pem, cordon_ca.cert_pem], {"SSL_CERT_FILE": str(inherited)},
                          system=[sys1.cert_pem + sys2.cert_pem])
    subjects = pem_subjects(bundle)
    assert subjects == ["CN=inherited", "CN=sys2", "CN=cordon", "CN=sys1"]


def test_bundle_without_inherited_file(tmp_path: Path) -> None:
    sys1, cordon_ca = create_ca("sys1"), create_ca("cordon")
    for env in ({}, {"SSL_CERT_FILE": str(tmp_path / "gone.pem")}):
        bundle = build_bundle([cordon_ca.cert_pem], env, system=[sys1.cert_pem])
        assert pem_subjects(bundle) == ["CN=sys1", "CN=cordon"]


def test_bundle_with_real_system_roots_ends_with_the_cordon_ca() -> None:
    ca = create_ca("cordon")
    certs = split_pem_certs(build_bundle([ca.cert_pem], {}))
    assert certs[-1] == split_pem_certs(ca.cert_pem)[0]
    assert len(certs) == len(system_roots()) + 1


def test_bundle_refused_without_system_roots(tmp_path: Path) -> None:
    ca = create_ca()
    inherited = tmp_path / "inherited.pem"
    inherited.write_bytes(create_ca("x").cert_pem)
    with pytest.raises(CordonError) as e:
        build_bundle([ca.cert_pem], {"SSL_CERT_FILE": str(inherited)}, system=system_roots([]))
    assert "no system root certificates" in e.value.message and "ca-certificates" in (e.value.hint or "")
    with pytest.raises(CordonError):
        write_bundle(tmp_path / "b.pem", ca.cert_pem, {}, system=[])
    assert not (tmp_path / "b.pem").exists()


def test_write_bundle_replaces_atomically(tmp_path: Path, loose_umask: None) -> None:
    ca = create_ca()
    out = tmp_path / "sess" / "bundle.pem"
    write_bundle(out, ca.cert_pem, {}, system=[create_ca("s").cert_pem])
    first = out.read_bytes()
    write_bundle(out, ca.cert_pem, {}, system=[create_ca("t").cert_pem])
    assert out.read_bytes() != first
    assert mode(out) == 0o644 and mode(out.parent) == 0o700
    assert [p.name for p in out.parent.iterdir()] == ["bundle.pem"]
