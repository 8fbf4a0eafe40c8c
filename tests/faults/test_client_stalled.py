"""A client that stops reading in the middle of a response is given up after the read timeout.

The upstream (`FloodUpstream`, real TLS on loopback) answers with a large body, its head and
the first 256 KiB in one write, then the rest; the client sends its request through cordon
and never reads, with a small receive buffer, so the proxy's writes to it stall. The body's
inactivity timer (`Timeouts.read`) covers those writes too, the first ones included (the
bytes that came with the head): the proxy gives the exchange up and closes the upstream
connection, which the upstream sees.
"""

from __future__ import annotations

import socket
import ssl
import threading

import anyio
import anyio.abc

from cordon.proxy.forward import Timeouts
from tests.proxy_harness import running_proxy
from tests.security.wire import proxy_auth_line
from tests.upstream import LoopbackServer, read_raw_request

HOST = "api.openai.com"
FIRST = 256 * 1024        # sent in the same write as the head
TOTAL = 64 * 1024 * 1024  # far more than any socket buffers between the two ends


class FloodUpstream(LoopbackServer):
    """Answers one request with TOTAL bytes; `closed` is set when the proxy drops the connection."""

    def __init__(self) -> None:
        super().__init__(HOST)
        self.closed = threading.Event()

    async def serve_connection(self, stream: anyio.abc.ByteStream, sock: anyio.abc.SocketStream,
                               conn_id: int) -> None:
        if await read_raw_request(stream, b"") is None:
            return
        try:
            await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % TOTAL + b"x" * FIRST)
            left = TOTAL - FIRST
            while left:
                n = min(left, 1 << 16)
                await stream.send(b"x" * n)
                left -= n
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, ssl.SSLError, OSError):
            self.closed.set()


def test_a_client_that_stops_reading_is_given_up_after_the_read_timeout() -> None:
    with FloodUpstream() as up, running_proxy([up.route("openai")], upstream_ca_file=str(up.ca_file),
                                             timeouts=Timeouts(read=1.0)) as px:
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.settimeout(10)
        raw.connect(("127.0.0.1", px.port))
        raw.sendall(f"CONNECT {HOST}:443 HTTP/1.1\r\n".encode() + proxy_auth_line() + b"\r\n")
        assert raw.recv(4096).startswith(b"HTTP/1.1 200")
        with ssl.create_default_context(cafile=str(px.ca_file)).wrap_socket(raw, server_hostname=HOST) as s:
            s.sendall(f"GET /big HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
            # never read: the proxy's writes to this client stall after a few hundred KiB
            assert up.closed.wait(30), "the proxy kept the stalled exchange (and its upstream) open"
