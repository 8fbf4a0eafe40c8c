"""The benchmark's HTTPS upstream: a lean asyncio server on 127.0.0.1 (stdlib only).

GET /small        -> 200 with a 128-byte body (keep-alive unless the client asks to close)
GET /bulk/<bytes> -> 200 with that many bytes, written as fast as the socket takes them

ALPN offers http/1.1 only. Prints the bound port on stdout, then serves until
stdin closes or SIGTERM. It never parses more than it has to: the point is a
baseline that the proxies, not the upstream, are measured against.

    python bench/upstream.py --cert leaf.pem --key leaf.key [--host 127.0.0.1] [--port 0]
    python bench/upstream.py --plain [--host 127.0.0.1]      # cleartext HTTP (bench/plain.py)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import ssl
import sys

SMALL_BODY = b"x" * 127 + b"\n"
SMALL = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(SMALL_BODY)
         + SMALL_BODY)
SMALL_CLOSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
               b"Content-Length: %d\r\n\r\n" % len(SMALL_BODY) + SMALL_BODY)
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
CHUNK = memoryview(b"\x5a" * (256 * 1024))


class Handler(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = b""
        self.left = 0            # bulk bytes still to write
        self.paused = False
        self.close_after = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=1 << 20)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        t = self.transport
        assert t is not None
        while self.left == 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buf = self.buf[:end], self.buf[end + 4:]
            line, _, rest = head.partition(b"\r\n")
            parts = line.split(b" ")
            path = parts[1].partition(b"?")[0] if len(parts) == 3 else b""
            close = b"connection: close" in rest.lower()
            if path == b"/small":
                t.write(SMALL_CLOSE if close else SMALL)
            elif path.startswith(b"/bulk/"):
                n = int(path[6:])
                t.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                        b"Content-Length: %d\r\n%s\r\n" % (n, b"Connection: close\r\n" if close else b""))
                self.left = n
                self.close_after = close
                self.pump()
                return
            else:
                t.write(NOT_FOUND)
            if close:
                t.close()
                return

    def pump(self) -> None:
        t = self.transport
        assert t is not None
        while self.left > 0 and not self.paused:
            n = min(self.left, len(CHUNK))
            t.write(CHUNK[:n])
            self.left -= n
        if self.left == 0:
            if self.close_after:
                t.close()
            elif self.buf:
                self.data_received(b"")

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.pump()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--plain", action="store_true", help="cleartext HTTP instead of TLS")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    ctx: ssl.SSLContext | None = None
    if not args.plain:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.cert, args.key)
        ctx.set_alpn_protocols(["http/1.1"])
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Handler, args.host, args.port, ssl=ctx, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not os.read(sys.stdin.fileno(), 1) else None)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
