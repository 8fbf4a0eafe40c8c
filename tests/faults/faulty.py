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

import datetime as dt
import shutil
import socket
import ssl
import struct
import tempfile
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.from_thread import start_blocking_portal
from anyio.streams.tls import TLSStream

from cordon.core import certs
from cordon.core.model import Route
from tests.upstream import UpstreamServer

MB = 1 << 20


def _server_context(chain_pem: bytes, key_pem: bytes, tmp: Path) -> ssl.SSLContext:
    p = tmp / "leaf.pem"
    p.write_bytes(chain_pem + key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(p)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class FaultyUpstream:
    def __init__(self, host: str = "api.openai.com", *, cert: str = "valid") -> None:
        self.host = host
        self.cert = cert
        self.ca = certs.create_ca("cordon faulty upstream CA")
        self._tmp = Path(tempfile.mkdtemp(prefix="cordon-faulty-"))
        self.ca_file = self._tmp / "ca.pem"
        self.ca_file.write_bytes(self.ca.cert_pem)
        self.requests: list[str] = []
        self.accepted = 0
        self._ssl: ssl.SSLContext | None = None
        if cert == "valid":
            leaf = certs.issue_leaf(self.ca, host)
        elif cert == "expired":
            leaf = certs.issue_leaf(self.ca, host, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=30),
                                    validity=dt.timedelta(days=7))
        elif cert == "other-name":
            leaf = certs.issue_leaf(self.ca, "evil.example")
        elif cert == "self-signed":
            leaf = certs.issue_leaf(certs.create_ca("someone else"), host)
        elif cert == "no-tls":
            leaf = None
        else:
            raise ValueError(cert)
        if leaf is not None:
            self._ssl = _server_context(leaf.chain_pem, leaf.key_pem, self._tmp)
        self._stack = ExitStack()
        self._cancel: anyio.CancelScope | None = None
        self.port = 0

    def __enter__(self) -> FaultyUpstream:
        self._portal = self._stack.enter_context(start_blocking_portal("asyncio"))
        self._listener = self._portal.call(partial(anyio.create_tcp_listener, local_host="127.0.0.1",
                                                          local_port=0))
        self.port = self._listener.extra(anyio.abc.SocketAttribute.local_port)
        self._portal.start_task_soon(self._serve)
        return self

    def __exit__(self, *exc: object) -> None:
        self._portal.call(self._shutdown)
        self._stack.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    async def _shutdown(self) -> None:
        if self._cancel is not None:
            self._cancel.cancel()
        await self._listener.aclose()

    async def _serve(self) -> None:
        with anyio.CancelScope() as scope:
            self._cancel = scope
            async with anyio.create_task_group() as tg:
                await self._listener.serve(self._handle, task_group=tg)

    def route(self, **kw: Any) -> Route:
        """A route for `host` whose upstream is this server, trusting this server's CA."""
        return UpstreamServer.route(self, **kw)  # type: ignore[arg-type]  (uses host, address, ca_file)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _handle(self, sock: anyio.abc.SocketStream) -> None:
        self.accepted += 1
        stream: anyio.abc.ByteStream = sock
        try:
            if self._ssl is None:
                await anyio.sleep_forever()
            with anyio.fail_after(10):
                stream = await TLSStream.wrap(sock, server_side=True, ssl_context=self._ssl,
                                              standard_compatible=False)
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += await stream.receive()
            path = buf.split(b" ", 2)[1].decode()
            self.requests.append(path)
            await self._behave(path, stream, sock)
        except (anyio.BrokenResourceError, anyio.EndOfStream, ssl.SSLError, OSError, TimeoutError):
            pass
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.aclose_forcefully(stream)

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
