"""Slowloris and idle connections: a head must be complete soon after its first byte, a silent
keep-alive connection is closed, a stalled TLS handshake or body is given up — and while any of
that is going on, other clients are served.

Timeouts here are the short ones of `wire.FAST` (head 1 s, handshake 2 s, idle/read 2 s); the
tests only check what happens, never how long it took.
"""

from __future__ import annotations

import select
import socket
import ssl
import time

from tests.security.wire import HOST, Scene, proxy_auth_line, recv_response


def wait_closed(s: socket.socket, timeout: float = 15.0) -> bool:
    """True when the peer closes (EOF or reset) within `timeout`; False if it is still open."""
    s.settimeout(timeout)
    try:
        while True:
            if not s.recv(65536):
                return True
    except TimeoutError:
        return False
    except OSError:
        return True


def trickle(s: socket.socket, data: bytes, gap: float = 0.1) -> int:
    """Send one byte at a time until the peer answers (or all is sent); returns bytes sent."""
    for i, b in enumerate(data):
        r, _, _ = select.select([s], [], [], 0)
        if r:
            return i
        try:
            s.sendall(bytes([b]))
        except OSError:
            return i
        time.sleep(gap)
    return len(data)


def test_trickled_connect_head_is_cut_off_with_408(sc: Scene) -> None:
    s = sc.raw()
    head = b"CONNECT " + HOST.encode() + b":443 HTTP/1.1\r\n" + proxy_auth_line() + b"X-Pad: " + b"p" * 300
    sent = trickle(s, head)
    assert sent < len(head), "the proxy waited for a head trickled over 30 s"
    r = recv_response(s)
    assert r is not None and r.status == 408 and r.closed


def test_trickled_head_inside_the_tunnel_is_cut_off_with_408(sc: Scene) -> None:
    s = sc.tunnel()
    # let TLS 1.3 session tickets arrive and be consumed first: trickle() stops at the first readable byte
    s.settimeout(0.3)
    try:
        s.recv(1)
    except (TimeoutError, ssl.SSLError):
        pass
    head = b"GET /v1/models HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\nX-Pad: " + b"p" * 300
    sent = trickle(s, head)
    assert sent < len(head)
    r = recv_response(s)
    assert r is not None and r.status == 408
    assert sc.up.requests == []


def test_silent_connection_to_the_proxy_is_closed(sc: Scene) -> None:
    assert wait_closed(sc.raw())


def test_idle_keep_alive_inside_the_tunnel_is_closed(sc: Scene) -> None:
    s = sc.tunnel()
    r = sc.send(s, b"GET /v1/models HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n\r\n")
    assert r is not None and r.status == 200 and not r.closed
    assert wait_closed(s)


def test_stalled_tls_handshake_is_given_up(sc: Scene) -> None:
    s = sc.raw()
    s.sendall(b"CONNECT " + HOST.encode() + b":443 HTTP/1.1\r\n" + proxy_auth_line() + b"\r\n")
    r = recv_response(s)
    assert r is not None and r.status == 200
    s.sendall(b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03")   # the start of a ClientHello, then nothing
    assert wait_closed(s)


def test_stalled_request_body_is_408(sc: Scene) -> None:
    s = sc.tunnel()
    s.sendall(b"POST /v1/x HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\nContent-Length: 100\r\n\r\n0123456789")
    r = recv_response(s)
    assert r is not None and r.status == 408 and r.closed
    assert sc.up.requests == []


def test_stalled_large_streamed_body_ends_the_exchange(sc: Scene) -> None:
    """A body too big to prefetch is streamed; stalling it must still end the exchange."""
    s = sc.tunnel()
    s.sendall(b"POST /v1/x HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\nContent-Length: 1000000\r\n\r\n"
              + b"x" * 100_000)
    r = recv_response(s)
    assert r is None or r.status in (408, 400, 502, 504)
    assert wait_closed(s)
    assert sc.up.requests == []


def test_many_slow_clients_do_not_starve_a_good_one(sc: Scene) -> None:
    slow = [sc.raw() for _ in range(100)]
    for i, s in enumerate(slow):
        s.sendall(b"CONNECT " + HOST.encode() + b":443 HTTP/1.1\r\n" if i % 2 else b"G")
    tunnels = [sc.tunnel() for _ in range(10)]     # stalled after the handshake, before a request
    sc.healthy()
    sc.healthy()
    for s in slow:
        r = recv_response(s)
        assert r is not None and r.status == 408
    del tunnels
