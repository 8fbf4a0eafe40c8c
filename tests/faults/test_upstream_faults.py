"""Upstream faults: each ends in 502 or 504, or — once a response has started — in a body the
client can tell is incomplete (the connection closes short of Content-Length, or a chunked body
without its last chunk). Never a silent pass: a truncated answer never looks complete.

The faulty upstream is a real TLS server on loopback (tests/faults/faulty.py).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import httpx
import pytest

from cordon.proxy.forward import Timeouts
from tests.faults.faulty import MB, FaultyUpstream
from tests.ports import refused_port
from tests.proxy_harness import SECRET, TOKEN, RunningProxy, running_proxy
from tests.security.wire import proxy_auth_line, recv_response

QUICK = Timeouts(connect=2.0, handshake=2.0, head=2.0, idle=10.0, response=2.0, read=2.0)


@pytest.fixture
def faulty() -> Iterator[FaultyUpstream]:
    with FaultyUpstream() as f:
        yield f


@pytest.fixture
def px(faulty: FaultyUpstream) -> Iterator[RunningProxy]:
    with running_proxy([faulty.route()], timeouts=QUICK) as p:
        yield p


def client(px: RunningProxy) -> httpx.Client:
    return httpx.Client(proxy=px.url, verify=ssl.create_default_context(cafile=str(px.ca_file)), timeout=30)


def no_leak(r: httpx.Response) -> None:
    assert SECRET not in r.text and TOKEN not in r.text
    assert r.text.startswith("cordon: ") and r.text.count("\n") == 1, r.text


@pytest.mark.parametrize(("path", "status", "words"), [
    ("/reset-before-head", 502, "without answering"),
    ("/reset-small", 502, "mid-body"),
    ("/stall-head", 504, "did not answer"),
    ("/switch", 502, "switched protocols"),
    ("/bad-length", 502, "Content-Length"),
])
def test_failure_before_the_response_is_an_answer(px: RunningProxy, path: str, status: int, words: str) -> None:
    with client(px) as c:
        r = c.get(f"https://api.openai.com{path}")
        assert r.status_code == status, r.text
        assert words in r.text
        no_leak(r)
        assert c.get("https://api.openai.com/ok").status_code == 200   # the client connection survives 5xx


@pytest.mark.parametrize("path", ["/reset-mid-body", "/stall-mid-body", "/reset-mid-chunked", "/stall-mid-chunked"])
def test_failure_mid_body_is_never_a_complete_looking_response(px: RunningProxy, path: str) -> None:
    with client(px) as c, pytest.raises(httpx.RemoteProtocolError), \
            c.stream("GET", f"https://api.openai.com{path}") as r:
        assert r.status_code == 200
        got = b"".join(r.iter_bytes())
        pytest.fail(f"the client saw a complete {len(got)}-byte body for a broken upstream (< {MB})")
    with client(px) as c:
        assert c.get("https://api.openai.com/ok").status_code == 200


def test_failure_mid_body_on_the_wire(px: RunningProxy) -> None:
    """What a raw client sees: a chunked body with no terminating 0-chunk, then the connection closes."""
    s = socket.create_connection(("127.0.0.1", px.port), timeout=15)
    s.sendall(b"CONNECT api.openai.com:443 HTTP/1.1\r\n" + proxy_auth_line() + b"\r\n")
    assert recv_response(s) is not None
    t = ssl.create_default_context(cafile=str(px.ca_file)).wrap_socket(s, server_hostname="api.openai.com")
    t.sendall(b"GET /reset-mid-chunked HTTP/1.1\r\nHost: api.openai.com\r\n\r\n")
    data = b""
    try:
        while chunk := t.recv(65536):
            data += chunk
    except (ssl.SSLError, OSError):
        pass
    t.close()
    assert data.startswith(b"HTTP/1.1 200") and b"first" in data
    assert not data.endswith(b"0\r\n\r\n"), "the last-chunk marker must not be sent for a broken body"


@pytest.mark.parametrize(("cert", "status", "words"), [
    ("expired", 502, "expired"),
    ("other-name", 502, "api.openai.com"),
    ("self-signed", 502, "certificate"),
    ("no-tls", 504, "timed out"),
])
def test_bad_upstream_tls_is_never_passed(cert: str, status: int, words: str) -> None:
    with FaultyUpstream(cert=cert) as f, running_proxy([f.route()], timeouts=QUICK) as px, client(px) as c:
        r = c.get("https://api.openai.com/ok")
        assert r.status_code == status, r.text
        assert words in r.text
        no_leak(r)
        assert f.requests == [], "no request may be sent over an unverified connection"


def test_upstream_refusing_is_502_for_routes_and_tunnels() -> None:
    from dataclasses import replace

    from cordon.core.model import Policy
    with FaultyUpstream() as f, refused_port() as port, \
            running_proxy([replace(f.route(), upstream=replace(f.route().upstream, address=f"127.0.0.1:{port}"))],
                          timeouts=QUICK, policy=Policy(allow_private=("127.0.0.1/32",))) as px, \
            client(px) as c:
        r = c.get("https://api.openai.com/ok")
        assert r.status_code == 502 and "refused" in r.text
        raw = socket.create_connection(("127.0.0.1", px.port), timeout=10)
        raw.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n".encode() + proxy_auth_line() + b"\r\n")
        resp = recv_response(raw)
        raw.close()
        assert resp is not None and resp.status == 502
