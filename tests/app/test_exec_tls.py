"""The session CA's name constraints, checked by real TLS clients over loopback.

Leaves for the route hosts are accepted by Python `ssl`, curl (OpenSSL) and Node;
a leaf for any other name signed by the same CA is rejected. (The Codex CLI, on
rustls, is covered by the end-to-end test, which runs through a session CA.)
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import anyio.abc
import pytest
from cryptography import x509

from cordon.app.exec import session_ca
from cordon.core import certs
from tests.upstream import LoopbackServer

ROUTE_HOSTS = ["api.openai.com", "api.anthropic.com"]


class OneLineHTTPS(LoopbackServer):
    """Answers every request with `200 ok` and closes."""

    async def serve_connection(self, stream: anyio.abc.ByteStream, sock: anyio.abc.SocketStream,
                               conn_id: int) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive()
        await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


@contextmanager
def tls_server(ca: certs.CA, host: str, tmp: Path) -> Iterator[int]:
    """A one-line HTTPS responder on 127.0.0.1 presenting a leaf for `host` signed by `ca`."""
    with OneLineHTTPS(host, ca=ca) as srv:
        yield srv.port


@pytest.fixture
def ca_file(tmp_path: Path) -> tuple[certs.CA, Path]:
    ca = session_ca(ROUTE_HOSTS)
    p = tmp_path / "session-ca.pem"
    p.write_bytes(ca.cert_pem)
    return ca, p


def test_session_ca_is_ec_and_constrained() -> None:
    ca = session_ca(ROUTE_HOSTS)
    nc = ca.cert.extensions.get_extension_for_class(x509.NameConstraints)
    assert nc.critical
    assert {n.value for n in nc.value.permitted_subtrees or []} == set(ROUTE_HOSTS)
    assert ca.key.curve.name == "secp256r1"
    none = session_ca([]).cert.extensions.get_extension_for_class(x509.NameConstraints)
    assert [n.value for n in none.value.permitted_subtrees or []] == ["no-routes.invalid"]


def _py_connect(port: int, host: str, cafile: Path) -> None:
    ctx = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=host) as s:
        s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert s.recv(100).startswith(b"HTTP/1.1 200")


def test_python_ssl_accepts_route_hosts_and_rejects_others(ca_file: tuple[certs.CA, Path], tmp_path: Path) -> None:
    ca, pem = ca_file
    for host in ROUTE_HOSTS:
        with tls_server(ca, host, tmp_path) as port:
            _py_connect(port, host, pem)
    with tls_server(ca, "evil.example.com", tmp_path) as port:
        with pytest.raises(ssl.SSLCertVerificationError, match="permitted subtree violation"):
            _py_connect(port, "evil.example.com", pem)
    # a look-alike suffix is not inside the permitted subtree either
    with tls_server(ca, "api.openai.com.evil.example", tmp_path) as port:
        with pytest.raises(ssl.SSLCertVerificationError):
            _py_connect(port, "api.openai.com.evil.example", pem)


def test_curl_accepts_route_hosts_and_rejects_others(ca_file: tuple[certs.CA, Path], tmp_path: Path) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed (scripts/test installs it)")
    ca, pem = ca_file

    def run(host: str, port: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run([curl, "-sS", "--noproxy", "*", "--cacert", str(pem), "--resolve",
                               f"{host}:{port}:127.0.0.1", f"https://{host}:{port}/"],
                              capture_output=True, text=True, timeout=30)

    with tls_server(ca, "api.openai.com", tmp_path) as port:
        r = run("api.openai.com", port)
        assert r.returncode == 0 and r.stdout == "ok", r.stderr
    with tls_server(ca, "evil.example.com", tmp_path) as port:
        r = run("evil.example.com", port)
        assert r.returncode == 60 and "permitted subtree" in r.stderr


NODE_GET = """
const https = require('https'); const fs = require('fs');
const [port, host, ca] = process.argv.slice(1);
https.get({host: '127.0.0.1', port: +port, servername: host, headers: {host}, ca: fs.readFileSync(ca)}, res => {
  let b = ''; res.on('data', d => b += d); res.on('end', () => { console.log('OK ' + b); });
}).on('error', e => { console.log('ERR ' + (e.code || e.message)); });
"""


def test_node_accepts_route_hosts_and_rejects_others(ca_file: tuple[certs.CA, Path], tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (scripts/test installs it)")
    ca, pem = ca_file
    with tls_server(ca, "api.anthropic.com", tmp_path) as port:
        r = subprocess.run([node, "-e", NODE_GET, str(port), "api.anthropic.com", str(pem)],
                           capture_output=True, text=True, timeout=30)
        assert r.stdout.strip() == "OK ok", r.stderr
    with tls_server(ca, "evil.example.com", tmp_path) as port:
        r = subprocess.run([node, "-e", NODE_GET, str(port), "evil.example.com", str(pem)],
                           capture_output=True, text=True, timeout=30)
        assert r.stdout.startswith("ERR "), r.stdout + r.stderr
