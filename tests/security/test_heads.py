"""Hostile request heads: oversized, too many fields, control characters in the target or values.

Checked on the proxy's own port (CONNECT and absolute-form heads) and inside an
intercepted connection. Each gets its status (400/431/505), nothing is
forwarded, and no error message echoes the offending bytes (a header value may
hold a credential).
"""

from __future__ import annotations

import pytest

from tests.proxy_harness import read_to_eof
from tests.security.wire import HOST, Scene, proxy_auth_line, recv_response

AUTH = proxy_auth_line()


def test_oversized_head_is_431_everywhere(sc: Scene) -> None:
    big = b"X-Big: " + b"a" * 70_000 + b"\r\n"
    for s, head in ((sc.raw(), b"CONNECT " + HOST.encode() + b":443 HTTP/1.1\r\n" + AUTH + big),
                    (sc.raw(), b"GET http://" + HOST.encode() + b"/ HTTP/1.1\r\n" + AUTH + big),
                    (sc.tunnel(), b"GET /v1/x HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n" + big)):
        r = sc.send(s, head + b"\r\n")
        assert r is not None and r.status == 431 and r.closed
    assert sc.up.requests == []


def test_endless_head_without_blank_line_is_431_not_memory(sc: Scene) -> None:
    """A head that never ends is cut off at 64 KiB (the proxy does not buffer without bound)."""
    s = sc.tunnel()
    s.sendall(b"GET /v1/x HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n")
    sent = 0
    try:
        while sent < 4 * 1024 * 1024:
            s.sendall(b"X: " + b"y" * 1000 + b"\r\n")
            sent += 1005
    except OSError:
        pass   # the proxy answered and closed while we were still sending
    r = recv_response(s)
    assert r is not None and r.status == 431
    assert sent < 4 * 1024 * 1024 or r.closed


@pytest.mark.parametrize("n", [20_000, 100_000])
def test_too_many_header_fields_is_431(sc: Scene, n: int) -> None:
    s = sc.tunnel()
    r = sc.send(s, b"GET /v1/x HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n" + b"a:b\r\n" * n + b"\r\n")
    assert r is not None and r.status == 431
    assert sc.up.requests == []


def test_many_small_fields_under_the_limit_are_forwarded_intact(sc: Scene) -> None:
    s = sc.tunnel()
    fields = b"".join(b"X-F%d: %d\r\n" % (i, i) for i in range(3000))
    r = sc.send(s, b"GET /v1/x HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\nConnection: close\r\n" + fields + b"\r\n")
    assert r is not None and r.status == 200
    (rec,) = sc.up.requests
    assert len([k for k, _ in rec.headers if k.lower().startswith("x-f")]) == 3000


BAD_LINES = [
    pytest.param(b"GET /v1/x\x00y HTTP/1.1", 400, id="NUL-in-target"),
    pytest.param(b"GET /v1/x\ry HTTP/1.1", 400, id="CR-in-target"),
    pytest.param(b"GET /v1/x\x7f HTTP/1.1", 400, id="DEL-in-target"),
    pytest.param(b"GET /v1/\xff HTTP/1.1", 400, id="8bit-in-target"),
    pytest.param(b"GET /v1/x y HTTP/1.1", 400, id="space-in-target"),
    pytest.param(b"GET  /v1/x HTTP/1.1", 400, id="double-space"),
    pytest.param(b"GET /v1/x HTTP/1.1 extra", 400, id="four-parts"),
    pytest.param(b"G\x00T /v1/x HTTP/1.1", 400, id="NUL-in-method"),
    pytest.param(b"GET /v1/x HTTP/1.2", 400, id="HTTP/1.2"),
    pytest.param(b"GET /v1/x HTTP/2.0", 505, id="HTTP/2"),
    pytest.param(b"GET /v1/x http/1.1", 400, id="lowercase-version"),
]


@pytest.mark.parametrize(("line", "status"), BAD_LINES)
def test_bad_request_line_inside_the_tunnel(sc: Scene, line: bytes, status: int) -> None:
    r = sc.send(sc.tunnel(), line + b"\r\nHost: " + HOST.encode() + b"\r\n\r\n")
    assert r is not None and r.status == status and r.closed
    assert sc.up.requests == []


BAD_FIELDS = [
    pytest.param(b"X-A: v\x00w", id="NUL-in-value"),
    pytest.param(b"X-A: v\rX-Injected: 1", id="CR-in-value"),
    pytest.param(b"X-A: v\x01w", id="CTL-in-value"),
    pytest.param(b"X-A: v\x7fw", id="DEL-in-value"),
    pytest.param(b"X\x00A: v", id="NUL-in-name"),
    pytest.param(b"X A: v", id="space-in-name"),
    pytest.param(b": v", id="empty-name"),
    pytest.param(b"no-colon-at-all", id="no-colon"),
    pytest.param(b"Authorization: Bearer a\x00b", id="NUL-in-credential"),
]


@pytest.mark.parametrize("field", BAD_FIELDS)
def test_control_characters_in_fields_are_400_without_echo(sc: Scene, field: bytes) -> None:
    for s, line in ((sc.tunnel(), b"GET /v1/x HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n"),
                    (sc.raw(), b"GET http://" + HOST.encode() + b"/v1/x HTTP/1.1\r\n" + AUTH),
                    (sc.raw(), b"CONNECT " + HOST.encode() + b":443 HTTP/1.1\r\n" + AUTH)):
        r = sc.send(s, line + field + b"\r\n\r\n")
        assert r is not None and r.status == 400 and r.closed, (line, r)
        value = field.partition(b":")[2].strip()
        if len(value) > 2:
            assert value not in r.body, "the error message must not echo header content"
    assert sc.up.requests == []


def test_percent_encoded_crlf_in_target_stays_encoded(sc: Scene) -> None:
    """%0d%0a is data, not a line break: the upstream gets the same target and no extra header."""
    s = sc.tunnel()
    r = sc.send(s, b"GET /v1/x%0d%0aX-Injected:%201 HTTP/1.1\r\nHost: " + HOST.encode()
                + b"\r\nConnection: close\r\n\r\n")
    assert r is not None and r.status == 200
    (rec,) = sc.up.requests
    assert rec.target == "/v1/x%0d%0aX-Injected:%201"
    assert rec.header("x-injected") is None


def test_crlf_through_the_connect_target_is_refused(sc: Scene) -> None:
    s = sc.raw()
    s.sendall(b"CONNECT " + HOST.encode() + b"\r:443 HTTP/1.1\r\n" + AUTH + b"\r\n")
    r = recv_response(s)
    assert r is not None and r.status == 400
    s = sc.raw()
    s.sendall(b"CONNECT " + HOST.encode() + b"%0d%0a:443 HTTP/1.1\r\n" + AUTH + b"\r\n")
    r = recv_response(s)
    assert r is not None and r.status in (400, 403, 502)   # a strange name: never a route, never a crash
    assert sc.up.requests == []


def test_garbage_bytes_on_the_proxy_port(sc: Scene) -> None:
    for junk in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS ClientHello
                 b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",                              # the HTTP/2 preface
                 bytes(range(256)) * 4,
                 b"\r\n" * 5000):
        s = sc.raw()
        s.sendall(junk + b"\r\n\r\n")
        out = read_to_eof(s, timeout=5)
        assert out == b"" or out.split(b" ", 2)[1] in (b"400", b"408", b"431", b"505"), out[:80]
