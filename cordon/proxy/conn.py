"""A byte stream with a read buffer: request/response heads and exact-length reads.

Heads are located with one `find` per received block (never byte by byte);
bytes read past a head stay in the buffer for the body or the next message.
Hand-written rather than anyio's `BufferedByteReceiveStream` with a cancel
scope per read: a head's time limits are one read deadline on the `Stream`.
"""

from __future__ import annotations

import ssl

import anyio

from cordon.core.errors import ProtocolError
from cordon.core.http1 import MAX_HEAD, find_head_end
from cordon.proxy.transport.stream import Stream

RECV = 1 << 18  # large reads: fewer trips through Python per megabyte
SMALL_CHUNK = 4096  # up to this size a chunk is one copy and one TLS record (Conn.send_chunk)


class Conn:
    """One side of a proxied exchange: `stream` plus whatever was read ahead."""

    __slots__ = ("buf", "closed", "stream")

    def __init__(self, stream: Stream, buf: bytes = b"") -> None:
        self.stream = stream
        self.buf = bytearray(buf)
        self.closed = False

    async def read_head(self, *, idle: float | None, head: float, status_on_eof: int = 400,
                        status_too_large: int = 431, idle_is_timeout: bool = False) -> bytes | None:
        """Read up to and including the blank line after a head.

        Returns None when the peer closes, or stays silent for `idle` seconds
        (None: no limit), before sending anything; with `idle_is_timeout` that
        silence raises TimeoutError instead. Once a byte has arrived the whole
        head must follow within `head` seconds (slowloris), else TimeoutError.
        The limits are the stream's read deadline, moved on at the first byte.
        """
        buf = self.buf
        if buf and buf[0] in (10, 13) and (buf.startswith(b"\r\n") or buf.startswith(b"\n")):
            del buf[:len(buf) - len(buf.lstrip(b"\r\n"))]   # stray CRLFs between messages (RFC 9112 §2.2)
        fs = self.stream
        started = bool(buf)
        clock = fs.clock
        limit = head if started else idle
        fs.deadline = clock() + limit if limit is not None else None
        start = 0
        try:
            while True:
                if started:
                    end = find_head_end(buf, max(0, start - 3))
                    if end >= 0:
                        h = bytes(buf[:end])
                        del buf[:end]
                        return h
                    if len(buf) > MAX_HEAD:
                        raise ProtocolError("message head larger than 64 KiB", status_too_large)
                    start = len(buf)
                try:
                    data = await self.stream.receive(RECV)
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    if not started:
                        return None
                    raise ProtocolError("connection closed in the middle of a message head", status_on_eof)
                except TimeoutError:
                    if not started and not idle_is_timeout:
                        return None
                    raise
                if not started and data[:1] not in (b"\r", b"\n", b""):
                    # the common case: one read holding a whole head (and maybe what follows it)
                    end = find_head_end(data)
                    if end == len(data):
                        return data
                    if end > 0:
                        buf += memoryview(data)[end:]
                        return data[:end]
                buf += data
                if not started:
                    stripped = buf.lstrip(b"\r\n")
                    if stripped:
                        del buf[:len(buf) - len(stripped)]
                        started = True
                        fs.deadline = clock() + head
                    else:
                        buf.clear()
        finally:
            fs.deadline = None

    async def receive(self, max_bytes: int = RECV) -> bytes:
        """Buffered bytes first, then one read from the stream (raises EndOfStream)."""
        if self.buf:
            if len(self.buf) <= max_bytes:
                data = bytes(self.buf)
                self.buf.clear()
            else:
                data = bytes(self.buf[:max_bytes])
                del self.buf[:max_bytes]
            return data
        return await self.stream.receive(max_bytes)

    async def receive_batch(self, max_bytes: int = RECV) -> bytes:
        """`receive`, plus every further TLS record already buffered (no extra loop trips).

        The TLS layer hands out one record (16 KiB) per call; a bulk relay
        that forwards 64 KiB at a time makes a quarter of the trips.
        """
        data = await self.receive(max_bytes)
        if len(data) >= max_bytes:
            return data
        more = self.stream.receive_nowait(max_bytes - len(data))
        return data + more if more else data

    async def receive_within(self, max_bytes: int, timeout: float) -> bytes:
        """`receive`, failing with TimeoutError if nothing arrives within `timeout` seconds."""
        if self.buf:
            return await self.receive(max_bytes)
        with anyio.fail_after(timeout):
            return await self.receive_batch(max_bytes)

    def unread(self, data: bytes) -> None:
        if data:
            self.buf[:0] = data

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def send_chunk(self, data: bytes) -> None:
        """`data` as one chunk of a chunked body. A small chunk (an SSE event) is copied into one
        piece, one TLS record; a large one is sent as its parts (one record each, no copy)."""
        if data:
            if len(data) <= SMALL_CHUNK:
                await self.stream.send(b"%x\r\n%b\r\n" % (len(data), data))
            else:
                await self.stream.send_parts((b"%x\r\n" % len(data), data, b"\r\n"))

    async def aclose(self) -> None:
        self.closed = True
        with anyio.CancelScope() as scope:   # anyio.aclose_forcefully, for a Stream
            scope.cancel()
            await self.stream.aclose()


async def splice(a: Conn, b: Conn, *, half_close: bool = True) -> tuple[int, int]:
    """Copy bytes both ways until both directions end; returns (a->b, b->a) byte counts.

    With `half_close`, EOF from one side is passed on with `send_eof` and the
    other direction keeps flowing (RFC 9293 half-close; TLS streams cannot, so
    for them the first EOF ends both). A broken side ends both directions.
    """
    counts = [0, 0]

    async def one(src: Conn, dst: Conn, i: int, scope: anyio.CancelScope) -> None:
        try:
            while True:
                data = await src.receive_batch(RECV)
                await dst.send(data)
                counts[i] += len(data)
        except anyio.EndOfStream:
            if half_close:
                try:
                    await dst.stream.send_eof()
                    return
                except (NotImplementedError, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    pass
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError, ssl.SSLError):
            pass
        scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, a, b, 0, tg.cancel_scope)
        tg.start_soon(one, b, a, 1, tg.cancel_scope)
    return counts[0], counts[1]
