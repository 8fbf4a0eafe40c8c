"""In-memory `Stream` pairs and a proxy driven over them, for transcript tests.

    async with proxy_over_memory([route], secrets={...}) as t:
        tls = await t.connect_tls("api.example.test")     # CONNECT + TLS, as a client does
        await tls.send(b"GET / HTTP/1.1\\r\\n...")
        up = await t.next_upstream()                       # the far end of the upstream connection
        await expect(up, b"GET / HTTP/1.1\\r\\n...")        # exactly these bytes, nothing else yet

The proxy is `cordon.proxy.server.Proxy` itself; only its sockets are replaced:
the client connection is a `memory_pair()` end handed to `Proxy.handle`, and
every upstream connection the pool opens is another pair (`Proxy(opener=...)`).
No sockets, no threads besides the secret lookup's worker.
"""

from __future__ import annotations

import ssl
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream

from cordon.core import certs
from cordon.core.model import Route
from cordon.proxy.pool import Target, Upstream
from cordon.proxy.server import Proxy, ProxySettings
from cordon.proxy.tls import LeafIssuer
from cordon.proxy.transport.fasttls import TLSConn
from cordon.proxy.transport.stream import Stream
from tests.proxy_harness import DictResolver


class _Pipe:
    """Bytes travelling one way, with the writer's EOF and the reader's departure."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.eof = False          # the writer closed or half-closed
        self.reader_gone = False  # the reading end was closed: writes break
        self.event = anyio.Event()

    def wake(self) -> None:
        self.event.set()
        self.event = anyio.Event()


class MemoryStream:
    """One end of an in-memory connection; implements `cordon.proxy.transport.stream.Stream`.

    Semantics follow a TCP `FastStream`: EOF after the peer's `aclose` or
    `send_eof`, BrokenResourceError when writing to a closed peer,
    ClosedResourceError after our own `aclose`, TimeoutError once `deadline` passes.
    """

    def __init__(self, incoming: _Pipe, outgoing: _Pipe) -> None:
        self._in = incoming
        self._out = outgoing
        self._closed = False
        self.deadline: float | None = None
        self.clock: Callable[[], float] = anyio.current_time
        self.received = 0   # bytes handed out by receive, in total

    async def receive(self, max_bytes: int = 65536) -> bytes:
        p = self._in
        while not p.buf:
            if self._closed:
                raise anyio.ClosedResourceError
            if p.eof:
                raise anyio.EndOfStream
            event = p.event
            if self.deadline is None:
                await event.wait()
            else:
                with anyio.fail_after(max(0.0, self.deadline - self.clock())):
                    await event.wait()
        data = bytes(p.buf[:max_bytes])
        del p.buf[:max_bytes]
        self.received += len(data)
        return data

    def receive_nowait(self, max_bytes: int) -> bytes:
        return b""

    async def send(self, item: bytes) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if self._out.reader_gone or self._out.eof:
            raise anyio.BrokenResourceError
        self._out.buf += item
        self._out.wake()
        await anyio.lowlevel.checkpoint()

    async def send_parts(self, parts: tuple[bytes, ...]) -> None:
        await self.send(b"".join(parts))

    async def send_eof(self) -> None:
        self._out.eof = True
        self._out.wake()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._out.eof = True
            self._in.reader_gone = True
            self._out.wake()
            self._in.wake()
        await anyio.lowlevel.checkpoint()

    def looks_dead(self) -> bool:
        return bool(self._in.buf) or self._in.eof or self._closed

    @property
    def closed(self) -> bool:
        """Whether this end was closed by its owner."""
        return self._closed

    @property
    def peer_closed(self) -> bool:
        """Whether the other end closed (or half-closed) its side."""
        return self._in.eof

    def pending(self) -> bytes:
        """What has arrived and not been read yet."""
        return bytes(self._in.buf)


def memory_pair() -> tuple[MemoryStream, MemoryStream]:
    """Two connected ends: what one sends, the other receives."""
    a_to_b, b_to_a = _Pipe(), _Pipe()
    return MemoryStream(b_to_a, a_to_b), MemoryStream(a_to_b, b_to_a)


def _is_stream(s: MemoryStream) -> Stream:
    return s   # mypy checks here that MemoryStream implements the protocol


async def receive_exactly(stream: Stream, n: int, timeout: float = 10.0) -> bytes:
    """`n` bytes from `stream` (fewer only if it ends first)."""
    got = bytearray()
    with anyio.fail_after(timeout):
        while len(got) < n:
            try:
                got += await stream.receive(n - len(got))
            except anyio.EndOfStream:
                break
    return bytes(got)


async def expect(stream: Stream, want: bytes) -> None:
    """The next bytes from `stream` are exactly `want` (and, on a memory stream, nothing follows yet)."""
    got = await receive_exactly(stream, len(want))
    assert got == want, f"\nexpected: {want!r}\n     got: {got!r}"
    if isinstance(stream, MemoryStream):
        await anyio.wait_all_tasks_blocked()
        assert stream.pending() == b"", f"unexpected bytes after the transcript: {stream.pending()!r}"


class ProxyOverMemory:
    """`Proxy` with a memory client connection per `connect_tls` and memory upstreams."""

    def __init__(self, tg: anyio.abc.TaskGroup, proxy: Proxy, ca: certs.CA,
                 upstreams: MemoryObjectReceiveStream[tuple[Target, MemoryStream]], resolver: DictResolver,
                 tmp: Path) -> None:
        self._tg = tg
        self.proxy = proxy
        self.ca = ca
        self._upstreams = upstreams
        self.resolver = resolver
        self.opened: list[Target] = []
        self._client_ctx = ssl.create_default_context(cafile=str(tmp / "ca.pem"))

    async def connect(self) -> MemoryStream:
        """A new client connection to the proxy (plain: CONNECT or absolute-form comes next)."""
        client, server = memory_pair()
        self._tg.start_soon(self.proxy.handle, server)
        return client

    async def connect_tls(self, host: str, port: int = 443) -> TLSConn:
        """CONNECT to host:port, check the 200, then TLS to cordon's leaf for `host`."""
        client = await self.connect()
        await client.send(b"CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (host.encode(), port,
                                                                             host.encode(), port))
        await expect(client, b"HTTP/1.1 200 Connection established\r\n\r\n")
        with anyio.fail_after(10):
            return await TLSConn.wrap(client, self._client_ctx, server_side=False, hostname=host)

    async def next_upstream(self, timeout: float = 10.0) -> MemoryStream:
        """The far end of the next upstream connection the proxy opens."""
        with anyio.fail_after(timeout):
            target, far = await self._upstreams.receive()
        self.opened.append(target)
        return far


@asynccontextmanager
async def proxy_over_memory(routes: Sequence[Route], *, secrets: dict[str, str]) -> AsyncIterator[ProxyOverMemory]:
    ca = certs.create_ca("cordon transcript CA")
    send, receive = anyio.create_memory_object_stream[tuple[Target, MemoryStream]](16)
    resolver = DictResolver(dict(secrets))

    async def opener(target: Target, timeout: float) -> Upstream:
        near, far = memory_pair()
        await send.send((target, far))
        return Upstream(near, target)

    settings = ProxySettings(routes=tuple(routes), issuer=LeafIssuer(ca), resolver=resolver)
    with tempfile.TemporaryDirectory(prefix="cordon-transcript-") as d, send, receive:
        tmp = Path(d)
        (tmp / "ca.pem").write_bytes(ca.cert_pem)
        async with anyio.create_task_group() as tg:
            t = ProxyOverMemory(tg, Proxy(settings, opener=opener), ca, receive, resolver, tmp)
            try:
                yield t
            finally:
                # shielded: inside the cancelled scope the close would raise Cancelled at its first
                # await, and that would replace (and so hide) a failure the test body is raising
                with anyio.CancelScope(shield=True):
                    await t.proxy.pool.aclose()
                tg.cancel_scope.cancel()
