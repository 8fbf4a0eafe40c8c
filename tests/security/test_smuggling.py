"""Request smuggling: ambiguous framing is refused before anything reaches the upstream.

Each request goes through both ways a route host is reached: inside the CONNECT
tunnel (TLS terminated by cordon) and as an absolute-form `http://` request to
the proxy. Refused requests get their status and a closed connection, the
upstream sees nothing, and (fixture) other clients are still served.
Accepted-but-odd framing (repeated identical Content-Length, bare LF, pipelining)
must reach the upstream as exactly the requests the client meant, re-framed by
cordon with a single framing header each.
"""

from __future__ import annotations

import socket

import pytest

from tests.security.wire import HOST, Response, Scene, proxy_auth_line, recv_response
from tests.upstream import Recorded

WAYS = ("tunnel", "absolute")


def request(sc: Scene, way: str, head: bytes, body: bytes = b"", *, path: bytes = b"/v1/x",
            method: bytes = b"POST", version: bytes = b"HTTP/1.1", eol: bytes = b"\r\n") -> Response | None:
    """Send `method path version` + Host + `head` lines (already terminated) + blank line + body."""
    s: socket.socket
    if way == "tunnel":
        s = sc.tunnel()
        line = method + b" " + path + b" " + version + eol + b"Host: " + HOST.encode() + eol
    else:
        s = sc.raw()
        line = (method + b" http://" + HOST.encode() + path + b" " + version + eol
                + b"Host: " + HOST.encode() + eol + proxy_auth_line().replace(b"\r\n", eol))
    return sc.send(s, line + head + eol + body)


def refused(sc: Scene, r: Response | None, status: int) -> None:
    """`status` and a closed connection; the upstream saw nothing (refused from the head, or mid-body
    before the request was complete: the upstream records only whole requests)."""
    assert r is not None, "the proxy closed the connection without an answer"
    assert r.status == status, r.head
    assert r.closed, "a refused request must close the connection (the rest of the bytes are untrusted)"
    assert sc.up.requests == []


def accepted_as_one(sc: Scene, way: str, head: bytes, body: bytes, **kw: bytes) -> Recorded:
    """`request(...)` is answered 200 and reaches the upstream as exactly one request: that one."""
    r = request(sc, way, head, body, **kw)
    assert r is not None and r.status == 200
    (rec,) = sc.up.requests
    return rec


REFUSED = [
    pytest.param(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\nGET /smuggled HTTP/1.1\r\n",
                 400, id="CL+TE"),
    pytest.param(b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n", 400, id="TE+CL"),
    pytest.param(b"Content-Length: 4\r\nContent-Length: 5\r\n", b"abcde", 400, id="conflicting-CL"),
    pytest.param(b"Content-Length: 4, 5\r\n", b"abcde", 400, id="CL-list-conflict"),
    pytest.param(b"Content-Length: +4\r\n", b"abcd", 400, id="CL-plus-sign"),
    pytest.param(b"Content-Length: -1\r\n", b"", 400, id="CL-negative"),
    pytest.param(b"Content-Length: 0x4\r\n", b"abcd", 400, id="CL-hex"),
    pytest.param(b"Content-Length: 4 4\r\n", b"abcd", 400, id="CL-two-numbers"),
    pytest.param(b"Content-Length: 99999999999999999999999\r\n", b"", 400, id="CL-overflow"),
    pytest.param(b"Content-Length : 4\r\n", b"abcd", 400, id="space-before-colon"),
    pytest.param(b"Transfer-Encoding\t: chunked\r\n", b"0\r\n\r\n", 400, id="tab-before-colon"),
    pytest.param(b"Transfer-Encoding: identity\r\n", b"abcd", 400, id="TE-identity"),
    pytest.param(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", b"0\r\n\r\n", 400,
                 id="TE-chunked-then-identity"),
    pytest.param(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n", 501, id="TE-gzip-chunked"),
    pytest.param(b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n", 501, id="TE-chunked-twice"),
    pytest.param(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n", 400, id="TE-xchunked"),
    pytest.param(b"Transfer-Encoding: \x0bchunked\r\n", b"0\r\n\r\n", 400, id="TE-vertical-tab"),
    pytest.param(b"X-Pad: 1\r\n Transfer-Encoding: chunked\r\n", b"0\r\n\r\n", 400, id="obs-fold-space"),
    pytest.param(b"X-Pad: 1\r\n\tContent-Length: 4\r\n", b"abcd", 400, id="obs-fold-tab"),
    pytest.param(b"X-Pad: a\rContent-Length: 4\r\n", b"abcd", 400, id="bare-CR-in-value"),
    pytest.param(b"Transfer-Encoding: chunked\r\n", b"fffffffffffffffff\r\nabc\r\n0\r\n\r\n", 400,
                 id="chunk-size-overflow"),
    pytest.param(b"Transfer-Encoding: chunked\r\n", b"-5\r\nabcde\r\n0\r\n\r\n", 400, id="chunk-size-negative"),
    pytest.param(b"Transfer-Encoding: chunked\r\n", b"0x5\r\nabcde\r\n0\r\n\r\n", 400, id="chunk-size-0x"),
    pytest.param(b"Transfer-Encoding: chunked\r\n", b"3\r\nabcdef\r\n0\r\n\r\n", 400, id="chunk-longer-than-size"),
    pytest.param(b"Transfer-Encoding: chunked\r\n", b"5\r\nabcde\r\n0\r\nX-Bad\r\n\r\n", 400,
                 id="malformed-trailer"),
]


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize(("head", "body", "status"), REFUSED)
def test_ambiguous_framing_is_refused(sc: Scene, way: str, head: bytes, body: bytes, status: int) -> None:
    refused(sc, request(sc, way, head, body), status)


def test_transfer_encoding_in_http10_is_refused(sc: Scene) -> None:
    refused(sc, request(sc, "tunnel", b"Transfer-Encoding: chunked\r\n", b"0\r\n\r\n", version=b"HTTP/1.0"), 400)


@pytest.mark.parametrize("way", WAYS)
def test_repeated_identical_content_length_is_one_request(sc: Scene, way: str) -> None:
    rec = accepted_as_one(sc, way, b"Content-Length: 4\r\nContent-Length: 4\r\nConnection: close\r\n", b"abcd")
    assert rec.body == b"abcd"
    assert rec.header_all("content-length") == ["4"], "cordon re-frames: one Content-Length upstream"


@pytest.mark.parametrize("way", WAYS)
def test_bare_lf_head_is_reframed_with_crlf(sc: Scene, way: str) -> None:
    rec = accepted_as_one(sc, way, b"Content-Length: 3\nX-Note: lf-only\nConnection: close\n", b"xyz", eol=b"\n")
    assert rec.body == b"xyz" and rec.header("x-note") == "lf-only"


@pytest.mark.parametrize("way", WAYS)
def test_chunked_body_is_decoded_and_reencoded(sc: Scene, way: str) -> None:
    body = b"5;ext=1\r\nhello\r\n6 \r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    rec = accepted_as_one(sc, way, b"Transfer-Encoding: Chunked\r\nConnection: close\r\n", body)
    assert rec.body == b"hello world"
    assert rec.header_all("transfer-encoding") == ["chunked"] and rec.header("content-length") is None


def test_pipelined_requests_arrive_as_exactly_those_requests(sc: Scene) -> None:
    """A body that looks like a request is a body; the next request is checked and injected on its own."""
    s = sc.tunnel()
    inner = b"GET /smuggled HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n\r\n"
    first = (b"POST /v1/one HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(inner)
             + inner)
    second = b"GET /v1/two HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\nConnection: close\r\n\r\n"
    s.sendall(first + second)
    r1, r2 = recv_response(s), recv_response(s)
    assert r1 is not None and r2 is not None and (r1.status, r2.status) == (200, 200)
    assert [q.path for q in sc.up.requests] == ["/v1/one", "/v1/two"]
    assert sc.up.requests[0].body == inner
    assert all(q.header_all("authorization") == [q.header("authorization")] for q in sc.up.requests)


def test_pipelined_request_for_another_host_is_misdirected(sc: Scene) -> None:
    """A second request on a route connection naming another host is 421, never forwarded."""
    s = sc.tunnel()
    s.sendall(b"GET /v1/a HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n\r\n"
              b"GET /v1/b HTTP/1.1\r\nHost: evil.example\r\n\r\n")
    r1, r2 = recv_response(s), recv_response(s)
    assert r1 is not None and r1.status == 200
    assert r2 is not None and r2.status == 421
    assert [q.path for q in sc.up.requests] == ["/v1/a"]
