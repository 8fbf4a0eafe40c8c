"""Request trailers are dropped, never forwarded: a trailer section could carry what cordon
controls in the head (the route's credential header, `Proxy-Authorization` with the proxy token,
`Host`) past the checks made on the head. The chunked body itself arrives intact."""

from __future__ import annotations

import pytest

from tests.proxy_harness import PLACEHOLDER, SECRET, TOKEN
from tests.security.wire import HOST, Scene, proxy_auth_line

TRAILERS = (b"Authorization: Bearer " + PLACEHOLDER.encode() + b"\r\n" + proxy_auth_line()
            + b"Host: evil.example\r\nx-api-key: " + PLACEHOLDER.encode() + b"\r\nx-checksum: abc\r\n")


@pytest.mark.parametrize("path", [b"/v1/upload", b"/elsewhere"])
def test_request_trailers_never_reach_the_upstream(sc: Scene, path: bytes) -> None:
    r = sc.send(sc.tunnel(), b"POST " + path + b" HTTP/1.1\r\nHost: " + HOST.encode()
                + b"\r\nAuthorization: Bearer " + PLACEHOLDER.encode()
                + b"\r\nTrailer: Authorization, Host\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"5\r\nhello\r\n6\r\n world\r\n0\r\n" + TRAILERS + b"\r\n")
    assert r is not None and r.status == 200, r
    rec = sc.up.requests[-1]
    assert rec.body == b"hello world"
    assert rec.trailers == []
    assert rec.header_all("authorization") == [f"Bearer {SECRET}"]
    assert rec.header("trailer") is None
    assert TOKEN not in rec.raw() and PLACEHOLDER not in rec.raw()
