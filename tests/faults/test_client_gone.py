"""A client that leaves while the upstream is still thinking takes the upstream request with it.

The upstream here (`SlowUpstream`, a real TLS or plain server on loopback, in its own event
loop) answers each request after `?delay=` seconds unless, while it waits, the proxy
closes the connection — then it records that it was abandoned and never answers. A client
sends a slow request and disconnects (FIN or reset); the upstream must be abandoned before
its answer was due, the proxy must count and log the abort without any secret, and leave no
task or descriptor behind. A pipelining client that sends its next request while waiting is
served both answers in order.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import anyio
import anyio.abc
import pytest

from cordon.core.model import Policy
from tests.faults.test_leaks import abort, open_fds, settle
from tests.proxy_harness import SECRET, TOKEN, RunningProxy, running_proxy
from tests.security.wire import proxy_auth_line
from tests.upstream import LoopbackServer, read_raw_request

HOST = "api.openai.com"
DELAY = 3.0   # the slow answer is due this long after the request; the proxy watches after 1 s


class SlowUpstream(LoopbackServer):
    """Answers `GET|POST /slow?delay=S` after S seconds (`/fast`: at once), keep-alive.

    `outcomes` records per request "answered" or "abandoned" (the connection closed or was
    reset while the answer was pending); `abandoned` is set at the first abandonment."""

    def __init__(self, host: str = HOST, *, tls: bool = True) -> None:
        super().__init__(host, tls=tls)
        self.outcomes: list[str] = []
        self.paths: list[str] = []
        self.abandoned = threading.Event()

    async def serve_connection(self, stream: anyio.abc.ByteStream, sock: anyio.abc.SocketStream,
                               conn_id: int) -> None:
        buf = b""
        while (got := await read_raw_request(stream, buf)) is not None:
            head, _, buf = got
            path = head.split(b" ")[1].decode()
            self.paths.append(path)
            delay = float(path.split("delay=")[1]) if "delay=" in path else 0.0
            # wait for the answer to be due, unless the proxy closes the connection first
            with anyio.move_on_after(delay):
                try:
                    while True:
                        buf += await stream.receive()   # not expected: cordon does not pipeline
                except (anyio.EndOfStream, anyio.BrokenResourceError, ssl.SSLError, OSError):
                    self.outcomes.append("abandoned")
                    self.abandoned.set()
                    return
            body = path.encode()
            self.outcomes.append("answered")
            await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


@pytest.fixture
def slow() -> Iterator[SlowUpstream]:
    with SlowUpstream() as u:
        yield u


def mitm(px: RunningProxy) -> ssl.SSLSocket:
    s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
    s.sendall(f"CONNECT {HOST}:443 HTTP/1.1\r\n".encode() + proxy_auth_line() + b"\r\n")
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    return ssl.create_default_context(cafile=str(px.ca_file)).wrap_socket(s, server_hostname=HOST)


def request(path: str, body: bytes = b"") -> bytes:
    method = "POST" if body else "GET"
    return (f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer dummy\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def read_responses(s: socket.socket, n: int) -> list[tuple[int, bytes]]:
    """`n` Content-Length responses in order (pipelined answers may share one read)."""
    s.settimeout(15)
    buf = b""
    out: list[tuple[int, bytes]] = []
    while len(out) < n:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = buf[:end]
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")[1:]
                           if line.lower().startswith(b"content-length:")), 0)
            if len(buf) >= end + 4 + length:
                out.append((int(head.split(b" ")[1]), buf[end + 4:end + 4 + length]))
                buf = buf[end + 4 + length:]
                continue
        data = s.recv(65536)
        if not data:
            break
        buf += data
    return out


@pytest.mark.parametrize("how", ["close", "reset"])
@pytest.mark.parametrize("body", [b"", b"b" * 200_000], ids=["small", "streamed-body"])
def test_client_leaving_abandons_the_slow_upstream_request(slow: SlowUpstream, how: str, body: bytes,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cordon.proxy")
    with running_proxy([slow.route()]) as px:
        t = mitm(px)
        t.sendall(request(f"/slow?delay={DELAY}", body))
        while not slow.paths:          # the request reached the upstream
            time.sleep(0.02)
        if how == "reset":
            abort(t)
        else:
            t.close()
        # the upstream sees its connection closed while its answer is still pending
        assert slow.abandoned.wait(DELAY + 5)
        assert slow.outcomes == ["abandoned"]
        st = px.stats.routes["openai"]
        for _ in range(100):
            if st.errors:
                break
            time.sleep(0.05)
        assert st.requests == 1 and st.errors == 1
    logged = caplog.text
    assert "status=499" in logged and "client closed the connection" in logged
    assert SECRET not in logged and TOKEN not in logged


def test_plain_http_client_leaving_abandons_the_upstream_request() -> None:
    """Absolute-form plain HTTP to an unmatched host goes through the same exchange."""
    with SlowUpstream("127.0.0.1", tls=False) as slow, \
            running_proxy([], policy=Policy(allow_private=("127.0.0.1/32",))) as px:
        s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
        s.sendall(f"GET http://{slow.address}/slow?delay={DELAY} HTTP/1.1\r\nHost: {slow.address}\r\n".encode()
                  + proxy_auth_line() + b"\r\n")
        while not slow.paths:
            time.sleep(0.02)
        s.close()
        assert slow.abandoned.wait(DELAY + 5)
        assert slow.outcomes == ["abandoned"]


def test_a_pipelining_client_gets_both_answers(slow: SlowUpstream) -> None:
    """The next request sent while the slow one is pending is neither lost nor taken for a
    disconnect; a client that stays connected gets its slow answer."""
    with running_proxy([slow.route()]) as px:
        t = mitm(px)
        t.sendall(request("/slow?delay=2"))
        while not slow.paths:
            time.sleep(0.02)
        time.sleep(1.3)                # past the point where the proxy starts watching the client
        t.sendall(request("/fast", b"next") + request("/fast?again"))
        got = read_responses(t, 3)
        assert got == [(200, b"/slow?delay=2"), (200, b"/fast"), (200, b"/fast?again")]
        assert slow.outcomes == ["answered"] * 3
        t.sendall(request("/fast?still-open"))
        assert read_responses(t, 1) == [(200, b"/fast?still-open")]
        t.close()
        assert px.stats.routes["openai"].errors == 0


def test_abandoned_requests_leak_no_tasks_or_descriptors(slow: SlowUpstream) -> None:
    with running_proxy([slow.route()]) as px:
        t = mitm(px)
        t.sendall(request("/fast"))
        assert read_responses(t, 1) == [(200, b"/fast")]
        t.close()
        ports = {slow.port}
        tasks0, fds0 = settle(px, ports, 10**6, timeout=0)
        for i in range(4):
            t = mitm(px)
            t.sendall(request(f"/slow?delay={DELAY}", b"x" * (100_000 if i % 2 else 0)))
            while len(slow.paths) < i + 2:
                time.sleep(0.02)
            abort(t) if i < 2 else t.close()
        for _ in range(200):
            if slow.outcomes.count("abandoned") == 4:
                break
            time.sleep(0.05)
        assert slow.outcomes == ["answered"] + ["abandoned"] * 4
        tasks1, fds1 = settle(px, ports, tasks0, fds0)
        assert tasks1 <= tasks0, f"proxy tasks: {tasks0} before, {tasks1} after"
        assert fds1.client_conns == 0, "a vanished client's connection is still open"
        assert fds1.upstream_conns <= fds0.upstream_conns, f"upstream connections left open: {fds1}"
        assert open_fds(px.port, ports).other <= fds0.other


def test_half_closing_client_still_gets_a_quick_answer() -> None:
    """Shutting down the sending side counts as leaving (as with nginx) only once the answer is
    slow enough to be watched for; a prompt answer still reaches a half-closed client."""
    with SlowUpstream("127.0.0.1", tls=False) as slow, \
            running_proxy([], policy=Policy(allow_private=("127.0.0.1/32",))) as px:
        s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
        try:
            s.sendall(f"GET http://{slow.address}/fast HTTP/1.1\r\nHost: {slow.address}\r\n".encode()
                      + proxy_auth_line() + b"\r\n")
            s.shutdown(socket.SHUT_WR)
            assert read_responses(s, 1) == [(200, b"/fast")]
        finally:
            s.close()
        assert slow.outcomes == ["answered"]
