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
import gc
import os
import socket
import ssl
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cordon.core.model import Policy
from cordon.proxy.server import Proxy
from tests.proxy_harness import RunningProxy, running_proxy
from tests.security.wire import proxy_auth_line, recv_response
from tests.upstream import UpstreamServer

HOST = "api.openai.com"


def proxy_tasks(px: RunningProxy) -> int:
    return int(px.portal.call(lambda: len(asyncio.all_tasks())))


def _tcp_table() -> dict[str, tuple[int, int, str]]:
    """inode -> (local port, remote port, state) for every TCP socket on the machine."""
    out = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            p = line.split()
            out[p[9]] = (int(p[1].rsplit(":", 1)[1], 16), int(p[2].rsplit(":", 1)[1], 16), p[3])
    return out


def _describe(fd: int) -> str:
    try:
        s = socket.socket(fileno=os.dup(fd))
    except OSError:
        return ""
    try:
        try:
            peer = s.getpeername()
        except OSError:
            peer = None
        return f" {s.family.name} {s.type.name} {s.getsockname()} -> {peer}"
    finally:
        s.close()


@dataclass
class Fds:
    """This process's descriptors: the proxy's client connections, its upstream connections, the rest."""

    client_conns: int
    upstream_conns: int
    other: int
    names: list[str] = field(default_factory=list, repr=False)


def open_fds(proxy_port: int, upstream_ports: set[int]) -> Fds:
    table = _tcp_table()
    fds = Fds(0, 0, 0)
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        entry = table.get(link[8:-1]) if link.startswith("socket:[") else None
        if entry is None:
            fds.other += 1
            fds.names.append(link + _describe(int(fd)) if link.startswith("socket:") else link)
        elif entry[2] != "0A" and proxy_port in entry[:2]:
            fds.client_conns += 1                     # either end of a client <-> proxy connection
        elif entry[2] != "0A" and (entry[0] in upstream_ports or entry[1] in upstream_ports):
            fds.upstream_conns += 1                   # either end of proxy -> upstream (live or pooled)
        else:
            fds.other += 1
            fds.names.append(f"{link} {entry}")
    return fds


def drain_pool(px: RunningProxy) -> None:
    """Close the proxy's idle upstream connections (kept for reuse, so not a leak) so that
    whatever is still open afterwards is one."""
    gc.collect()
    for o in gc.get_objects():
        if isinstance(o, Proxy) and o.settings is px.settings:
            px.portal.call(o.pool.aclose)
            return
    raise AssertionError("proxy not found")


def settle(px: RunningProxy, ports: set[int], tasks: int, fds: Fds | None = None,
           timeout: float = 20.0) -> tuple[int, Fds]:
    """Wait until the proxy is back to `tasks` and no client or upstream connection is open
    (the idle pool drained first), or `timeout`; returns what was counted last."""
    deadline = time.monotonic() + timeout
    while True:
        drain_pool(px)
        now = (proxy_tasks(px), open_fds(px.port, ports))
        done = now[0] <= tasks and now[1].client_conns == 0 and (
            fds is None or (now[1].upstream_conns <= fds.upstream_conns and now[1].other <= fds.other))
        if done or time.monotonic() > deadline:
            return now
        time.sleep(0.2)


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


def mitm(px: RunningProxy) -> ssl.SSLSocket:
    s = connect(px, f"{HOST}:443")
    return ssl.create_default_context(cafile=str(px.ca_file)).wrap_socket(s, server_hostname=HOST)


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()


def mid_download(px: RunningProxy, up: UpstreamServer, plain: UpstreamServer) -> None:
    t = mitm(px)
    t.sendall(get("/bytes?n=50000000"))
    t.recv(65536)
    abort(t)


def mid_sse(px: RunningProxy, up: UpstreamServer, plain: UpstreamServer) -> None:
    t = mitm(px)
    t.sendall(get("/sse?n=100000&delay=0.005"))
    t.recv(65536)
    t.close()


def mid_upload(px: RunningProxy, up: UpstreamServer, plain: UpstreamServer) -> None:
    t = mitm(px)
    t.sendall(f"POST /v1/upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 5000000\r\n\r\n".encode()
              + b"u" * 300_000)
    abort(t)


def while_upstream_thinks(px: RunningProxy, up: UpstreamServer, plain: UpstreamServer) -> None:
    t = mitm(px)
    t.sendall(get("/slow?delay=1"))
    abort(t)


def in_tunnel(px: RunningProxy, up: UpstreamServer, plain: UpstreamServer) -> None:
    s = connect(px, f"127.0.0.1:{plain.port}")
    s.sendall(b"GET /bytes?n=50000000 HTTP/1.1\r\nHost: x\r\n\r\n")
    s.recv(65536)
    abort(s)


def in_websocket(px: RunningProxy, up: UpstreamServer, plain: UpstreamServer) -> None:
    t = mitm(px)
    key = base64.b64encode(os.urandom(16)).decode()
    t.sendall(f"GET /ws HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n".encode())
    assert recv_response(t) is not None
    t.sendall(b"\x81\x82\x00\x00\x00\x00hi")
    abort(t)


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
        # warm up: one complete exchange leaves one idle upstream connection in the pool (a
        # connection whose exchange ended cleanly may be pooled; that is reuse, not a leak)
        t = mitm(px)
        t.sendall(get("/json"))
        assert recv_response(t) is not None
        t.close()
        ports = {up.port, plain.port}
        tasks0, fds0 = settle(px, ports, 10**6, timeout=0)
        for _ in range(3):
            for way in WAYS:
                way(px, up, plain)
        tasks1, fds1 = settle(px, ports, tasks0, fds0)
        new = sorted(set(fds1.names) - set(fds0.names))
        assert tasks1 <= tasks0, f"proxy tasks: {tasks0} before, {tasks1} after"
        assert fds1.client_conns == 0, "a vanished client's connection is still open"
        assert fds1.upstream_conns <= fds0.upstream_conns, f"upstream connections left open: {fds1}"
        assert fds1.other <= fds0.other, f"descriptors: {fds0} before, {fds1} after: {new}"
        # and the proxy still works
        t = mitm(px)
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
