"""Lean TCP byte streams for the proxy's hot path (asyncio backend): `stream.Stream` over TCP.

Hand-written instead of anyio's `SocketStream` because that one pauses and
resumes the transport around every receive (two epoll_ctl calls) and yields
to the event loop after every send: per proxied request, several extra loop
iterations (docs/performance.md has the measurements). `FastStream` is an
`anyio.abc.ByteStream` over an asyncio transport that keeps reading (with a
high-water mark), hands out buffered bytes without a loop trip and writes
directly, waiting only when the transport asks it to (flow control). Tasks,
cancellation and TLS (`fasttls.TLSConn`, or anyio's `TLSStream`) work on it unchanged.

Memory: a plain asyncio protocol gets a fresh 256 KiB `bytes` from every
`recv` (shrunk to what arrived). Under many connections those large short
allocations and their shrunken tails fragment glibc's heap, and the resident
size creeps up. The protocol here is a `BufferedProtocol`: the transport
reads into one scratch buffer per thread (`scratch`), and only the bytes that
arrived are copied out, in an object of exactly their size. Under TLS
(`attach_bio`) they are not even copied out: they go from the scratch buffer
straight into the session's incoming memory BIO.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import sys
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, cast

import anyio
import anyio.abc
import anyio.lowlevel

from cordon.proxy.transport.listen import serve

HIGH_WATER = 1 << 20   # stop reading from the socket when this much is buffered
READ_SIZE = 1 << 18    # bytes per socket read (asyncio's own transport reads this much)

_local = threading.local()


def scratch(size: int = READ_SIZE) -> memoryview:
    """This thread's reusable buffer of `size` bytes (one per size, kept for the thread's life).

    Only for use between two awaits: whatever is read into it must be copied
    out before the task yields, as another connection will overwrite it.
    """
    bufs: dict[int, memoryview] | None = getattr(_local, "bufs", None)
    if bufs is None:
        bufs = _local.bufs = {}
    view = bufs.get(size)
    if view is None:
        view = bufs[size] = memoryview(bytearray(size))
    return view


# The selector loops (and uvloop) call get_buffer, recv_into and buffer_updated back to back, so
# every connection of a thread can share one buffer. The proactor loop (Windows) keeps a read
# pending across loop iterations: there each connection needs a buffer of its own.
_SHARED = sys.platform != "win32"


class _Protocol(asyncio.BufferedProtocol):
    __slots__ = ("buf", "buffered", "chunks", "closed", "eof", "exc", "fresh", "paused_reading", "peer", "pipe_done",
                 "piped", "read_waiter", "sink", "transport", "write_paused", "write_waiter")

    def __init__(self) -> None:
        self.buf = scratch() if _SHARED else memoryview(bytearray(1 << 16))
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.eof = False
        self.closed = False
        self.exc: BaseException | None = None
        self.read_waiter: asyncio.Future[None] | None = None
        self.write_waiter: asyncio.Future[None] | None = None
        self.write_paused = False
        self.paused_reading = False
        self.transport: asyncio.Transport | None = None
        self.sink: Any = None   # a TLS session's incoming MemoryBIO (FastStream.attach_bio)
        self.fresh = 0          # bytes written to the sink since the last drain_into
        self.peer: _Protocol | None = None   # `pipe`: where every byte read goes, straight from the loop
        self.piped = 0                       # bytes passed on to `peer`
        self.pipe_done: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # not an isinstance check: uvloop's transports do not subclass asyncio.Transport
        self.transport = cast(asyncio.Transport, transport)

    def _wake_reader(self) -> None:
        w = self.read_waiter
        if w is not None and not w.done():
            w.set_result(None)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        peer = self.peer
        if peer is not None:
            self._forward(peer, nbytes)
            return
        sink = self.sink
        if sink is None:
            self.data_received(bytes(self.buf[:nbytes]))   # exactly the bytes that arrived
            return
        try:
            sink.write(self.buf[:nbytes])
        except ssl.SSLError:   # the session already failed (its BIO was given EOF): nothing reads on
            return
        self.fresh += nbytes
        if sink.pending > HIGH_WATER and not self.paused_reading and self.transport is not None:
            self.paused_reading = True
            self.transport.pause_reading()
        self._wake_reader()

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > HIGH_WATER and not self.paused_reading and self.transport is not None:
            self.paused_reading = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        peer = self.peer
        if peer is not None:   # half-close passes through; both halves closed ends the pipe
            t = peer.transport
            if t is not None and not t.is_closing() and t.can_write_eof():
                try:
                    t.write_eof()
                except OSError:
                    self._end_pipe()
            if peer.eof:
                self._end_pipe()
        return True   # keep the transport open: we may still write (half-close)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.exc = exc
        self._wake_reader()
        if self.peer is not None:
            self._end_pipe()
        w = self.write_waiter
        if w is not None and not w.done():
            w.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        src = self.peer   # piped: the side writing into us was paused while we were full
        if src is not None and src.paused_reading and not src.closed and src.transport is not None:
            src.paused_reading = False
            src.transport.resume_reading()
        w = self.write_waiter
        if w is not None and not w.done():
            w.set_result(None)


    # -- pipe: both directions copied by the loop's callbacks, no task wake-up per read ----------
    def _forward(self, peer: _Protocol, nbytes: int) -> None:
        t = peer.transport
        if peer.closed or t is None or t.is_closing():
            self._end_pipe()
            return
        t.write(bytes(self.buf[:nbytes]))   # exactly the bytes that arrived (the scratch is shared)
        self.piped += nbytes
        if peer.write_paused and not self.paused_reading and self.transport is not None:
            self.paused_reading = True   # the other side is full: stop reading until it drains
            self.transport.pause_reading()

    def _end_pipe(self) -> None:
        fut = self.pipe_done
        if fut is not None and not fut.done():
            fut.set_result(None)


class FastStream(anyio.abc.ByteStream):
    """A TCP connection; see the module docstring."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._p = protocol
        self._closed = False
        # loop time after which a read still waiting raises TimeoutError (Conn.read_head sets it:
        # no cancel scope per message head)
        self.deadline: float | None = None
        # The timer behind `deadline`, armed lazily: a wait arms it only when none is armed for
        # that deadline or earlier, and a wait that ends leaves it armed. When it fires it checks
        # the deadline of the wait in progress then (re-arming if the deadline has moved on). A
        # keep-alive connection pushes its deadline later with every request: one timer per
        # deadline's length instead of a timer set and cancelled per read (3.5 us on uvloop).
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        # the loop this stream lives on (asyncio.get_running_loop() costs a getpid() syscall per call)
        self.loop = asyncio.get_running_loop()
        self.clock = self.loop.time   # the clock `deadline` is on (`stream.Stream`)

    # -- reading ------------------------------------------------------------------
    def attach_bio(self, bio: Any) -> None:
        """From now on bytes from the socket go straight into `bio` (a TLS session's incoming
        MemoryBIO), bytes already buffered first; read them with `drain_into(bio)` only."""
        p = self._p
        while p.chunks:
            bio.write(p.chunks.popleft())
        p.fresh += p.buffered
        p.buffered = 0
        p.sink = bio

    async def _wait_data(self) -> None:
        """Until a chunk is buffered; TimeoutError once `deadline` (loop time) passes."""
        p = self._p
        while not p.chunks and not p.fresh:
            if self._closed:
                raise anyio.ClosedResourceError
            if p.exc is not None:
                raise anyio.BrokenResourceError from p.exc
            if p.eof or p.closed:
                raise anyio.EndOfStream
            if p.read_waiter is not None:
                raise anyio.BusyResourceError("reading from")
            if p.paused_reading and p.buffered < HIGH_WATER:
                p.paused_reading = False
                self._transport.resume_reading()
            fut = p.read_waiter = self.loop.create_future()
            deadline = self.deadline
            if deadline is not None and (self._timer is None or self._timer_at > deadline):
                self._arm(deadline)
            try:
                await fut
            finally:
                p.read_waiter = None

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        """The timer fired: fail the wait in progress if its deadline has passed, else re-arm."""
        self._timer = None
        fut = self._p.read_waiter
        deadline = self.deadline
        if fut is None or fut.done() or deadline is None or self._closed:
            return
        if self.loop.time() >= deadline:
            fut.set_exception(TimeoutError())
        else:
            self._arm(deadline)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        p = self._p
        if not p.chunks:
            await self._wait_data()
        chunk = p.chunks.popleft()
        if len(chunk) > max_bytes:
            p.chunks.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        p.buffered -= len(chunk)
        if p.paused_reading and p.buffered < HIGH_WATER // 2 and not self._closed:
            p.paused_reading = False
            self._transport.resume_reading()
        return chunk

    def receive_nowait(self, max_bytes: int) -> bytes:
        """Nothing: `receive` already hands out a buffered chunk without waiting, and joining
        chunks here would copy them."""
        return b""

    async def drain_into(self, bio: Any) -> None:
        """Wait for bytes, then write every buffered chunk into `bio` (a TLS MemoryBIO), uncut
        (with `attach_bio`: wait until more bytes landed in it)."""
        p = self._p
        if not p.chunks and not p.fresh:
            await self._wait_data()
        chunks = p.chunks
        while chunks:
            bio.write(chunks.popleft())
        p.buffered = 0
        p.fresh = 0
        if p.paused_reading and not self._closed:
            p.paused_reading = False
            self._transport.resume_reading()

    # -- writing ------------------------------------------------------------------
    async def send(self, item: bytes) -> None:
        p = self._p
        if self._closed:
            raise anyio.ClosedResourceError
        if p.closed or self._transport.is_closing():
            raise anyio.BrokenResourceError from p.exc
        self._transport.write(item)
        while p.write_paused and not p.closed:
            fut = p.write_waiter = self.loop.create_future()
            try:
                await fut
            finally:
                p.write_waiter = None
        if p.closed and p.exc is not None:
            raise anyio.BrokenResourceError from p.exc

    async def send_parts(self, parts: tuple[bytes, ...]) -> None:
        await self.send(b"".join(parts))

    async def send_eof(self) -> None:
        try:
            self._transport.write_eof()
        except OSError:
            pass

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._transport.get_write_buffer_size():
                self._transport.close()   # flush what is queued (the end of a close-delimited body), then FIN
            else:
                self._transport.abort()
            self._p._wake_reader()
        await anyio.lowlevel.checkpoint()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        sock = self._transport.get_extra_info("socket")
        attrs: dict[Any, Callable[[], Any]] = {
            anyio.abc.SocketAttribute.raw_socket: lambda: sock,
            anyio.abc.SocketAttribute.family: lambda: sock.family,
            anyio.abc.SocketAttribute.local_address: lambda: sock.getsockname(),
            anyio.abc.SocketAttribute.remote_address: lambda: sock.getpeername(),
            anyio.abc.SocketAttribute.local_port: lambda: sock.getsockname()[1],
            anyio.abc.SocketAttribute.remote_port: lambda: sock.getpeername()[1],
        }
        return attrs

    def looks_dead(self) -> bool:
        """For an idle pooled connection: anything arrived (EOF, junk) means it is not reusable."""
        p = self._p
        return bool(p.chunks) or p.fresh > 0 or self.peer_closed()

    def peer_closed(self) -> bool:
        """The peer closed (or the connection broke): no byte count, just the end."""
        p = self._p
        return p.eof or p.closed or self._closed


def can_pipe(a: object, b: object) -> bool:
    """Whether `pipe` can join these two streams (both plain TCP streams of this module)."""
    return (isinstance(a, FastStream) and isinstance(b, FastStream)
            and a._p.sink is None and b._p.sink is None)


async def pipe(sa: object, sb: object, a_read: bytes = b"") -> tuple[int, int]:
    """Copy bytes both ways between two TCP streams until both directions end; (a->b, b->a) counts.

    The copy runs in the protocols' callbacks: each read is written to the
    other transport as it arrives (reading pauses while the other side cannot
    take more), with no task woken per read. EOF from one side is passed on
    with `write_eof` and the other direction keeps flowing (half-close); a
    broken or closed side ends both. `a_read`: bytes already read from `a`
    (sent to `b` first). The caller closes both streams afterwards.
    """
    if not can_pipe(sa, sb):
        raise ValueError("pipe() joins two plain TCP streams (can_pipe)")
    a, b = cast(FastStream, sa), cast(FastStream, sb)
    pa, pb = a._p, b._p
    fut: asyncio.Future[None] = a.loop.create_future()
    counts = [0, 0]
    for src, dst, first, i in ((pa, b, a_read, 0), (pb, a, b"", 1)):
        pending = [first, *src.chunks] if first else list(src.chunks)
        src.chunks.clear()
        src.buffered = 0
        for chunk in pending:
            dst._transport.write(chunk)
            counts[i] += len(chunk)
    pa.peer, pb.peer = pb, pa
    pa.piped = pb.piped = 0
    pa.pipe_done = pb.pipe_done = fut
    try:
        for rp, wp in ((pa, pb), (pb, pa)):
            if rp.paused_reading and not rp.closed and rp.transport is not None and not wp.write_paused:
                rp.paused_reading = False
                rp.transport.resume_reading()
            if rp.eof and wp.transport is not None and wp.transport.can_write_eof():
                wp.transport.write_eof()
        if pa.closed or pb.closed or (pa.eof and pb.eof):
            fut.set_result(None)
        await fut
    finally:
        pa.peer = pb.peer = None
        pa.pipe_done = pb.pipe_done = None
    return counts[0] + pa.piped, counts[1] + pb.piped


async def connect(host: str, port: int) -> FastStream:
    """TCP to host:port (names resolved by the loop, happy eyeballs as anyio does).

    An IP address is connected to directly: it has nothing to race, and
    Python 3.11's happy-eyeballs race can drop a socket it already connected,
    unclosed, when the caller's deadline cancels it at that moment.
    """
    loop = asyncio.get_running_loop()
    if _is_ip(host):
        transport, protocol = await loop.create_connection(_Protocol, host, port)
        return FastStream(transport, protocol)
    try:
        transport, protocol = await loop.create_connection(_Protocol, host, port, happy_eyeballs_delay=0.25)
    except TypeError:   # uvloop has no happy eyeballs parameter
        transport, protocol = await loop.create_connection(_Protocol, host, port)
    return FastStream(transport, protocol)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def serve_tcp(port: int, handler: Callable[[FastStream], Coroutine[Any, Any, None]],
                    task_status: anyio.abc.TaskStatus[int]) -> None:
    """Accept on 127.0.0.1:`port`, running `handler` per connection in this task's task group."""
    loop = asyncio.get_running_loop()
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(("127.0.0.1", port))
        lsock.listen(1024)
        lsock.setblocking(False)
        task_status.started(lsock.getsockname()[1])

        async def take(csock: socket.socket) -> None:
            try:
                csock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                transport, protocol = await loop.connect_accepted_socket(_Protocol, csock)
            except OSError:
                csock.close()   # the client is already gone
                return
            except BaseException:
                # cancelled while taking it over: close it now (a transport closes its socket in a
                # callback, which a loop that is stopping may never run)
                csock.close()
                raise
            await handler(FastStream(transport, protocol))

        await serve(lsock, take)
    finally:
        lsock.close()
