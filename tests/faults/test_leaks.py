"""Clients that vanish mid-stream leave nothing behind, and running out of descriptors does not
kill the proxy.

The proxy's asyncio tasks (counted in its own loop) and this process's open file descriptors
(/proc/self/fd) are counted before any traffic; clients then disconnect at every awkward moment
— mid-download, mid-SSE, mid-upload, while the upstream is still thinking, inside a tunnel,
inside a WebSocket, during the TLS handshake — and the counts must come back down. (Waiting for
them is polling a condition, not a timing assertion.)
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import ssl
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable

import pytest

from cordon.model import Policy
from tests.proxy_harness import RunningProxy, running_proxy
from tests.security.wire import proxy_auth_line, recv_response
from tests.upstream import UpstreamServer

HOST = "api.openai.com"


def proxy_tasks(px: RunningProxy) -> int:
    return int(px.portal.call(lambda: len(asyncio.all_tasks())))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def settle(px: RunningProxy, tasks: int, fds: int, timeout: float = 30.0) -> tuple[int, int]:
    deadline = time.monotonic() + timeout
    while True:
        now = (proxy_tasks(px), open_fds())
        if (now[0] <= tasks and now[1] <= fds) or time.monotonic() > deadline:
            return now
        time.sleep(0.1)


def abort(s: socket.socket) -> None:
    """Close with a TCP reset (what a killed client looks like)."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()


def connect(px: RunningProxy, target: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
    s.sendall(f"CONNECT {target} HTTP/1.1\r\n".encode() + proxy_auth_line() + b"\r\n")
    r = recv_response(s)
    assert r is not None and r.status == 200
    return s


def mitm(px: RunningProxy) -> tuple[socket.socket, ssl.SSLSocket]:
    s = connect(px, f"{HOST}:443")
    t = ssl.create_default_context(cafile=str(px.ca_file)).wrap_socket(s, server_hostname=HOST)
    return s, t


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()


def mid_download(px: RunningProxy, up: UpstreamServer, plain: UpstreamServer) -> None:
    s, t = mitm(px)
    t.sendall(get("/bytes?n=50000000"))
    t.recv(65536)
    abort(s)


def mid_sse(px: RunningProxy, up: UpstreamServer, plain: UpstreamServer) -> None:
    s, t = mitm(px)
    t.sendall(get("/sse?n=100000&delay=0.005"))
    t.recv(65536)
    t.close()


def mid_upload(px: RunningProxy, up: UpstreamServer, plain: UpstreamServer) -> None:
    s, t = mitm(px)
    t.sendall(f"POST /v1/upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 5000000\r\n\r\n".encode()
              + b"u" * 300_000)
    abort(s)


def while_upstream_thinks(px: RunningProxy, up: UpstreamServer, plain: UpstreamServer) -> None:
    s, t = mitm(px)
    t.sendall(get("/slow?delay=1"))
    abort(s)


def in_tunnel(px: RunningProxy, up: UpstreamServer, plain: UpstreamServer) -> None:
    s = connect(px, f"127.0.0.1:{plain.port}")
    s.sendall(b"GET /bytes?n=50000000 HTTP/1.1\r\nHost: x\r\n\r\n")
    s.recv(65536)
    abort(s)


def in_websocket(px: RunningProxy, up: UpstreamServer, plain: UpstreamServer) -> None:
    s, t = mitm(px)
    key = base64.b64encode(os.urandom(16)).decode()
    t.sendall(f"GET /ws HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n".encode())
    assert recv_response(t) is not None
    t.sendall(b"\x81\x82\x00\x00\x00\x00hi")
    abort(s)


def in_handshake(px: RunningProxy, up: UpstreamServer, plain: UpstreamServer) -> None:
    s = connect(px, f"{HOST}:443")
    s.sendall(b"\x16\x03\x01\x00\xc8\x01\x00")
    abort(s)


def mid_plain(px: RunningProxy, up: UpstreamServer, plain: UpstreamServer) -> None:
    s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
    s.sendall(f"GET http://127.0.0.1:{plain.port}/chunked?n=100000&size=1000 HTTP/1.1\r\n".encode()
              + proxy_auth_line() + b"\r\n")
    s.recv(65536)
    abort(s)


WAYS: list[Callable[[RunningProxy, UpstreamServer, UpstreamServer], None]] = [
    mid_download, mid_sse, mid_upload, while_upstream_thinks, in_tunnel, in_websocket, in_handshake, mid_plain]


def test_vanishing_clients_leak_no_tasks_or_descriptors() -> None:
    with UpstreamServer(HOST) as up, UpstreamServer("127.0.0.1", tls=False) as plain, \
            running_proxy([up.route()], policy=Policy(allow_private=("127.0.0.1/32",))) as px:
        tasks0, fds0 = settle(px, 10**6, 10**6, timeout=0)
        for _ in range(5):
            for way in WAYS:
                way(px, up, plain)
        tasks1, fds1 = settle(px, tasks0, fds0)
        assert tasks1 <= tasks0, f"proxy tasks: {tasks0} before, {tasks1} after"
        assert fds1 <= fds0, f"open descriptors: {fds0} before, {fds1} after"
        # and the proxy still works
        s, t = mitm(px)
        t.sendall(get("/json"))
        r = recv_response(t)
        assert r is not None and r.status == 200
        t.close()


EXHAUST = textwrap.dedent("""
    import resource, socket, sys, time
    from tests.proxy_harness import running_proxy
    from tests.upstream import UpstreamServer
    from tests.security.wire import proxy_auth_line, recv_response

    with UpstreamServer("api.openai.com") as up, running_proxy([up.route()]) as px:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        import os
        used = len(os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (used + 60, hard))
        hogs = []
        for _ in range(200):           # more connections than the proxy can accept
            try:
                hogs.append(socket.create_connection(("127.0.0.1", px.port), timeout=5))
            except OSError:
                break
        time.sleep(1.0)
        for h in hogs:
            h.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        time.sleep(0.5)
        s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
        s.sendall(b"GET /health HTTP/1.1\\r\\n\\r\\n")
        r = recv_response(s, timeout=10)
        print("HEALTH", r.status if r else None, flush=True)
""")


def test_running_out_of_descriptors_does_not_kill_the_proxy() -> None:
    """accept() failing with EMFILE must not end the listener: once descriptors are free again,
    the proxy answers."""
    from tests.conftest import REPO, subprocess_env
    out = subprocess.run([sys.executable, "-c", EXHAUST], capture_output=True, text=True, timeout=90,
                         cwd=REPO, env=subprocess_env())
    assert "HEALTH 200" in out.stdout, out.stdout + out.stderr[-3000:]


@pytest.mark.parametrize("n", [300])
def test_many_simultaneous_connections_are_all_served(n: int) -> None:
    with UpstreamServer(HOST) as up, running_proxy([up.route()]) as px:
        socks = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", px.port), timeout=20)
            s.sendall(b"GET /health HTTP/1.1\r\n\r\n")
            socks.append(s)
        for s in socks:
            r = recv_response(s)
            assert r is not None and r.status == 200
            s.close()
