"""A misbehaving HTTPS upstream on 127.0.0.1, for fault tests.

    with FaultyUpstream("api.openai.com", cert="expired") as up:
        route = up.route()            # a Route for the host, pointing here, trusting up.ca_file

`cert`: "valid" (a leaf for `host`), "expired", "other-name" (a leaf for
evil.example), "self-signed" (not from the CA the route trusts), "no-tls" (the
TCP connection is accepted and nothing is ever said). Behaviour by request path:

    /ok                   200, 5-byte body
    /reset-mid-body       Content-Length 1 MB, 64 KiB sent, then a TCP reset
    /reset-mid-chunked    chunked, two chunks, then a TCP reset
    /reset-small          Content-Length 1000, 100 bytes, then a TCP reset
    /reset-before-head    a TCP reset right after the request
    /stall-head           never answers
    /stall-mid-body       Content-Length 1 MB, 64 KiB sent, then silence
    /stall-mid-chunked    chunked, one chunk, then silence
    /switch               101 Switching Protocols to a request that asked for nothing
    /bad-length           Content-Length: 10, 20 (conflicting)
"""

from __future__ import annotations

import socket
import struct

import anyio
import anyio.abc

from tests.upstream import LoopbackServer

MB = 1 << 20


class FaultyUpstream(LoopbackServer):
    def __init__(self, host: str = "api.openai.com", *, cert: str = "valid") -> None:
        super().__init__(host, cert=cert)
        self.requests: list[str] = []

    async def serve_connection(self, stream: anyio.abc.ByteStream, sock: anyio.abc.SocketStream,
                               conn_id: int) -> None:
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += await stream.receive()
        path = buf.split(b" ", 2)[1].decode()
        self.requests.append(path)
        await self._behave(path, stream, sock)

    async def _behave(self, path: str, stream: anyio.abc.ByteStream, sock: anyio.abc.SocketStream) -> None:
        async def reset() -> None:
            # SO_LINGER with a zero timeout: closing sends RST instead of FIN (closed through the
            # transport, so the event loop never sees a reused descriptor)
            raw = sock.extra(anyio.abc.SocketAttribute.raw_socket)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await anyio.aclose_forcefully(sock)

        if path == "/ok":
            await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            await anyio.sleep_forever()
        elif path in ("/reset-mid-body", "/stall-mid-body"):
            await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % MB + b"x" * 65536)
            if path.startswith("/reset"):
                await anyio.sleep(0.2)
                await reset()
            else:
                await anyio.sleep_forever()
        elif path in ("/reset-mid-chunked", "/stall-mid-chunked"):
            await stream.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            if path.startswith("/reset"):
                await stream.send(b"6\r\nsecond\r\n")
                await anyio.sleep(0.2)
                await reset()
            else:
                await anyio.sleep_forever()
        elif path == "/reset-small":
            await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"y" * 100)
            await anyio.sleep(0.2)
            await reset()
        elif path == "/reset-before-head":
            await reset()
        elif path == "/stall-head":
            await anyio.sleep_forever()
        elif path == "/switch":
            await stream.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            await anyio.sleep_forever()
        elif path == "/bad-length":
            await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nContent-Length: 20\r\n\r\n0123456789")
            await anyio.sleep_forever()
        else:
            await stream.send(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
