"""TLS for the proxy's hot path: `ssl.SSLObject` + memory BIOs, a `stream.Stream` over another.

Hand-written instead of anyio's `TLSStream` because that one pulls at most
64 KiB from the transport per call (so a 256 KiB socket read is split, and
copied, four times), decrypts one record per `receive`, and goes through a
generic retry loop with several awaits per call (docs/performance.md has the
measurements). Over a `FastStream`, `TLSConn` has the socket write its bytes
straight into the incoming BIO (`attach_bio`: no `bytes` object per socket
read), decrypts as many records as fit into the caller's `max_bytes` in one
call, into the thread's scratch buffer (`fastio.scratch`) so that only the
bytes decrypted are allocated, and writes each encrypted batch to the
transport in one `write`.
Over any other `Stream` (an in-memory one in the tests) it reads with `receive`.

Semantics follow `TLSStream(standard_compatible=False)`, which the proxy used
before: no close_notify on close, a ragged EOF is `EndOfStream`, a broken
transport `BrokenResourceError`, TLS protocol errors `ssl.SSLError`
(certificate verification failures `ssl.SSLCertVerificationError`).
Verification itself is OpenSSL's, configured by the `SSLContext` (hostname
checking through `server_hostname`), exactly as with `TLSStream`.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import anyio
import anyio.abc
from anyio.streams.tls import TLSAttribute

from cordon.proxy.transport.fastio import FastStream, scratch
from cordon.proxy.transport.stream import Stream

READ_MAX = 1 << 18


def server_name(hostname: str) -> str:
    """The name to send as SNI and verify.

    The proxy only hands over ASCII names (a request target is visible ASCII,
    RFC 9112 §3.2, and route hosts are validated), which go as they are. Any
    other name gets the standard library's IDNA codec: should it differ from
    the resolver's encoding, verification fails, it never passes a wrong host.
    """
    if hostname.isascii():
        return hostname
    return hostname.encode("idna").decode("ascii")


def _read_whole_records(obj: ssl.SSLObject, view: memoryview, n: int, limit: int) -> int:
    """Decrypt what the records already buffered hold into view[n:limit]; the new end. Stops at a
    partial record (WantRead) or an error, which the next `receive` meets and reports."""
    while n < limit:
        try:
            more: int = obj.read(limit - n, view[n:limit])  # type: ignore[arg-type,assignment]
        except ssl.SSLError:
            break
        if not more:
            break
        n += more
    return n


class TLSConn(anyio.abc.ByteStream):
    """A TLS session over `raw` (a FastStream, or any `Stream` via its `receive`)."""

    __slots__ = ("_broken", "_fast", "_in", "_out", "clock", "raw", "ssl_object")

    def __init__(self, raw: Stream, ssl_object: ssl.SSLObject, bio_in: ssl.MemoryBIO,
                 bio_out: ssl.MemoryBIO) -> None:
        self.raw = raw
        self.ssl_object = ssl_object
        self._in = bio_in
        self._out = bio_out
        self._broken = False
        self._fast = type(raw) is FastStream
        self.clock = raw.clock

    @property
    def deadline(self) -> float | None:
        """The read deadline is the carrying stream's: TLS reads wait on it."""
        return self.raw.deadline

    @deadline.setter
    def deadline(self, value: float | None) -> None:
        self.raw.deadline = value

    @classmethod
    async def wrap(cls, raw: Stream, ctx: ssl.SSLContext, *, server_side: bool,
                   hostname: str | None = None, prefix: bytes = b"") -> TLSConn:
        """Handshake over `raw` (`prefix`: bytes already read from it, e.g. a ClientHello)."""
        bio_in, bio_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        server_hostname = server_name(hostname) if hostname is not None else None
        obj = ctx.wrap_bio(bio_in, bio_out, server_side=server_side, server_hostname=server_hostname)
        if prefix:
            bio_in.write(prefix)
        conn = cls(raw, obj, bio_in, bio_out)
        if isinstance(raw, FastStream):
            raw.attach_bio(bio_in)  # socket bytes straight into the BIO
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                await conn._flush()
                await conn._fill()
            except ssl.SSLError as e:
                conn._fail(e)
        await conn._flush()
        return conn

    # -- plumbing -----------------------------------------------------------------
    def _fail(self, e: ssl.SSLError) -> NoReturn:
        """Map an SSL error like TLSStream(standard_compatible=False) does; always raises."""
        self._broken = True
        self._in.write_eof()
        self._out.write_eof()
        if isinstance(e, ssl.SSLSyscallError):
            raise anyio.BrokenResourceError from e
        if isinstance(e, ssl.SSLEOFError) or (e.strerror and "UNEXPECTED_EOF_WHILE_READING" in e.strerror):
            raise anyio.EndOfStream from None
        raise e

    async def _fill(self) -> None:
        """Move at least one more chunk of ciphertext from the socket into the BIO."""
        raw = self.raw
        try:
            if self._fast:
                await raw.drain_into(self._in)  # type: ignore[attr-defined]
            else:
                self._in.write(await raw.receive(READ_MAX))
        except anyio.EndOfStream:
            self._in.write_eof()
        except TimeoutError:
            raise   # a read deadline (FastStream.deadline): the session stays usable
        except OSError as e:
            self._broken = True
            self._in.write_eof()
            self._out.write_eof()
            raise anyio.BrokenResourceError from e
        except anyio.BrokenResourceError:
            self._broken = True
            self._in.write_eof()
            self._out.write_eof()
            raise

    async def _flush(self) -> None:
        out = self._out
        if out.pending:
            try:
                await self.raw.send(out.read())
            except BaseException:
                # the record's sequence number is spent: nothing after it could be decrypted
                self._broken = True
                raise

    # -- ByteStream ---------------------------------------------------------------
    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self._broken:
            raise anyio.BrokenResourceError
        obj = self.ssl_object
        bio = self._in
        # decrypt into this thread's scratch buffer and copy out only what arrived:
        # `obj.read(n)` would allocate n bytes (256 KiB for the proxy's reads) and shrink them,
        # which fragments the heap under many connections (see fastio)
        view = scratch()
        limit = min(max_bytes, len(view))
        while True:
            if not bio.pending and not bio.eof and not obj.pending():
                # nothing to decrypt yet: wait for the socket without raising SSLWantReadError first
                if self._out.pending:
                    await self._flush()
                await self._fill()
            try:
                n: int = obj.read(limit, view)  # type: ignore[arg-type,assignment]  # with a buffer: a count
                break
            except ssl.SSLWantReadError:
                if self._out.pending:
                    await self._flush()   # e.g. a TLS 1.3 key update answer
                await self._fill()
            except ssl.SSLError as e:
                self._fail(e)
        # more whole records already buffered: hand them out in the same call (no await until
        # the scratch buffer is copied out)
        if n and n < limit and bio.pending:
            n = _read_whole_records(obj, view, n, limit)
        data = bytes(view[:n])
        if self._out.pending:
            await self._flush()
        if not data:
            raise anyio.EndOfStream
        return data

    async def _write(self, data: bytes) -> None:
        """Encrypt `data` into the outgoing BIO (a TLS 1.2 renegotiation may need a read first)."""
        while True:
            try:
                self.ssl_object.write(data)
                return
            except ssl.SSLWantReadError:
                await self._flush()
                await self._fill()
            except ssl.SSLError as e:
                self._fail(e)

    async def send(self, item: bytes) -> None:
        if self._broken:
            raise anyio.BrokenResourceError
        await self._write(item)
        await self._flush()

    async def send_parts(self, parts: tuple[bytes, ...]) -> None:
        """`send(b"".join(parts))` without the join: one record per part, one transport write."""
        if self._broken:
            raise anyio.BrokenResourceError
        for part in parts:
            if part:
                await self._write(part)
        await self._flush()

    def receive_nowait(self, max_bytes: int) -> bytes:
        """The whole records already buffered, decrypted (b"" when none; errors surface on the
        next `receive`)."""
        obj = self.ssl_object
        if self._broken or not (self._in.pending or obj.pending()):
            return b""
        view = scratch()
        return bytes(view[:_read_whole_records(obj, view, 0, min(max_bytes, len(view)))])

    def has_unread(self) -> bool:
        """Whether application data (or a close) was received and not yet handed out.

        Ciphertext still in the BIO may be only post-handshake messages (TLS 1.3
        session tickets): it is processed here to tell. Application data found
        that way is consumed, so call this only on a connection that is
        discarded when the answer is yes (the pool's reuse check).
        """
        obj = self.ssl_object
        if obj.pending():
            return True
        if not self._in.pending and not self._in.eof:
            return False
        try:
            obj.read(1)
        except ssl.SSLWantReadError:
            return False   # only handshake records were waiting
        except ssl.SSLError:
            return True
        return True        # a byte of data, or b"" for close_notify / EOF

    async def send_eof(self) -> None:
        raise NotImplementedError("send_eof() is not implemented for TLS streams")

    def looks_dead(self) -> bool:
        """Unread application data, a close, or a closed carrier. Over a FastStream the socket's
        bytes go straight into the session: its byte count would also count post-handshake
        messages (TLS 1.3 session tickets, harmless), so only the carrier's end counts there."""
        raw = self.raw
        closed = raw.peer_closed() if isinstance(raw, FastStream) else raw.looks_dead()
        return self._broken or self.has_unread() or closed

    async def aclose(self) -> None:
        # standard_compatible=False: no closing handshake (HTTP framing delimits every message)
        self._broken = True
        await self.raw.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        obj = self.ssl_object
        return {
            **getattr(self.raw, "extra_attributes", {}),   # anyio's typed attributes, where the carrier has them
            TLSAttribute.ssl_object: lambda: obj,
            TLSAttribute.server_side: lambda: obj.server_side,
            TLSAttribute.alpn_protocol: obj.selected_alpn_protocol,
            TLSAttribute.tls_version: obj.version,
            TLSAttribute.cipher: obj.cipher,
            TLSAttribute.peer_certificate: lambda: obj.getpeercert(False),
            TLSAttribute.peer_certificate_binary: lambda: obj.getpeercert(True),
            TLSAttribute.shared_ciphers: lambda: obj.shared_ciphers() if obj.server_side else None,
            TLSAttribute.standard_compatible: lambda: False,
        }
