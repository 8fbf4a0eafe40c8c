"""WebSocket upgrades that must not carry a credential or hang: to non-route hosts (private:
refused at once; allowed: relayed with the client's own headers, nothing injected), to a route
connection naming another host (421), and upgrades to other protocols (not offered upstream)."""

from __future__ import annotations

import base64
import os

import pytest

from cordon.core.model import Policy
from tests.proxy_harness import PLACEHOLDER, SECRET
from tests.security.wire import HOST, Scene, proxy_auth_line, recv_response, scene
from tests.upstream import UpstreamServer


def ws_head(target: bytes, host: bytes, extra: bytes = b"") -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n" + extra + b"\r\n")


def test_upgrade_to_a_private_non_route_host_is_refused_at_once(sc: Scene) -> None:
    for target in (b"http://127.0.0.1:9/ws", b"http://169.254.169.254/ws", b"http://[::1]:9/ws"):
        r = sc.send(sc.raw(), ws_head(target, target.split(b"/")[2], proxy_auth_line()))
        assert r is not None and r.status == 403 and r.closed, target


def test_upgrade_to_an_allowed_non_route_host_gets_no_credential(caplog: pytest.LogCaptureFixture) -> None:
    with UpstreamServer("127.0.0.1", tls=False) as plain, \
            scene(caplog, policy=Policy(allow_private=("127.0.0.1/32",))) as sc:
        authority = b"127.0.0.1:%d" % plain.port
        s = sc.raw()
        r = sc.send(s, ws_head(b"http://" + authority + b"/ws", authority,
                               proxy_auth_line() + b"Authorization: Bearer " + PLACEHOLDER.encode() + b"\r\n"))
        assert r is not None and r.status == 101
        (rec,) = plain.requests
        assert rec.header_all("authorization") == [f"Bearer {PLACEHOLDER}"]
        assert SECRET not in rec.raw() and rec.header("proxy-authorization") is None
        s.sendall(b"\x81\x85" + b"\x00\x00\x00\x00" + b"hello")    # a masked text frame, mask 0
        assert s.recv(100) == b"\x81\x05hello"
        sc.assert_nothing_leaked()


def test_upgrade_on_a_route_connection_naming_another_host_is_421(sc: Scene) -> None:
    r = sc.send(sc.tunnel(), ws_head(b"/ws", b"evil.example"))
    assert r is not None and r.status == 421
    r = sc.send(sc.tunnel(sni="evil.example"), ws_head(b"/ws", HOST.encode()))
    assert r is not None and r.status == 421
    assert sc.up.requests == []


def test_upgrade_to_another_protocol_is_not_offered_upstream(sc: Scene) -> None:
    s = sc.tunnel()
    r = sc.send(s, b"GET /v1/models HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\nUpgrade: h2c\r\n"
                b"Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
    assert r is not None and r.status == 200
    rec = sc.up.requests[-1]
    assert rec.header("upgrade") is None and rec.header("http2-settings") is None
    assert rec.header_all("authorization") == [f"Bearer {SECRET}"]


def test_upgrade_through_an_opaque_tunnel_is_the_clients_own_business(caplog: pytest.LogCaptureFixture) -> None:
    """CONNECT to a non-route host is never decrypted: what the upstream sees is exactly what the
    client sent inside TLS (its placeholder, no secret)."""
    import ssl

    with UpstreamServer("127.0.0.1") as other, scene(caplog, policy=Policy(allow_private=("127.0.0.1/32",))) as sc:
        s = sc.raw()
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\n" % other.port + proxy_auth_line() + b"\r\n")
        r = recv_response(s)
        assert r is not None and r.status == 200
        ctx = ssl.create_default_context(cafile=str(other.ca_file))   # the upstream's own CA: not cordon's
        t = ctx.wrap_socket(s, server_hostname="127.0.0.1")
        t.sendall(ws_head(b"/ws", b"127.0.0.1", b"Authorization: Bearer " + PLACEHOLDER.encode() + b"\r\n"))
        r = recv_response(t)
        assert r is not None and r.status == 101
        (rec,) = other.requests
        assert rec.header_all("authorization") == [f"Bearer {PLACEHOLDER}"]
        t.close()
