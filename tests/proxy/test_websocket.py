"""WebSocket through the proxy: injected handshake, frames both ways, clean close, 426 on failure."""

from __future__ import annotations

import socket
import ssl

import pytest
import websockets.sync.client as ws_client
from websockets.exceptions import InvalidStatus

from tests.proxy_harness import PLACEHOLDER, SECRET, RunningProxy, running_proxy
from tests.upstream import UpstreamServer


def ctx(px: RunningProxy) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(px.ca_file))


def test_websocket_echo_with_injected_handshake(px: RunningProxy, up: UpstreamServer) -> None:
    with ws_client.connect("wss://api.openai.com/ws", proxy=px.url, ssl=ctx(px),
                           additional_headers={"Authorization": f"Bearer {PLACEHOLDER}"}) as ws:
        ws.send("hello")
        assert ws.recv(timeout=10) == "hello"
        ws.send(b"\x00\x01binary" * 1000)
        assert ws.recv(timeout=10) == b"\x00\x01binary" * 1000
        ws.ping().wait(10)
    hs = up.requests[-1]
    assert hs.path == "/ws"
    assert hs.header("authorization") == f"Bearer {SECRET}"
    assert PLACEHOLDER not in hs.raw()
    assert hs.header("upgrade") == "websocket"
    # the client's close was echoed by the upstream and the proxy ended both legs cleanly
    assert ws.close_code == 1000


def test_websocket_upgrade_that_cannot_be_served_gets_426(up: UpstreamServer) -> None:
    route = up.route()
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()  # nothing listens here: the upstream connection is refused
    from dataclasses import replace

    broken = replace(route, upstream=replace(route.upstream, address=f"127.0.0.1:{port}"))
    with running_proxy([broken]) as px, pytest.raises(InvalidStatus) as ei:
        ws_client.connect("wss://api.openai.com/ws", proxy=px.url, ssl=ctx(px), open_timeout=10)
    assert ei.value.response.status_code == 426
    assert b"refused" in ei.value.response.body


def test_malformed_upgrade_request_gets_426_not_400(px: RunningProxy) -> None:
    """Codex exits on 400; a broken upgrade must be answered 426 at once."""
    raw = _tls_through_proxy(px)
    raw.sendall(b"GET /ws HTTP/1.1\r\nHost: api.openai.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert raw.recv(65536).startswith(b"HTTP/1.1 426 ")
    raw.close()


def _tls_through_proxy(px: RunningProxy) -> ssl.SSLSocket:
    import base64

    s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
    cred = base64.b64encode(f"cordon:{px.token}".encode()).decode()
    s.sendall(f"CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n"
              f"Proxy-Authorization: Basic {cred}\r\n\r\n".encode())
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    return ctx(px).wrap_socket(s, server_hostname="api.openai.com")
