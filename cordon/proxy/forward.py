"""One HTTP exchange relayed upstream: request out, response streamed back.

Shared by the MITM leg (route hosts) and absolute-form plain HTTP. The caller
decides the target and rewrites the headers; this module does the framing:
request bodies streamed (Content-Length, chunked, `Expect: 100-continue`),
responses relayed block by block as they arrive (SSE, chunked, large bodies),
echo scrubbing, connection reuse on both legs and WebSocket hand-off after 101.
Failures before anything reached the client raise `ProtocolError(status)`.

A client that goes away while the upstream is still thinking (EOF or reset
while cordon waits for the response head) aborts the exchange: the upstream
connection is closed, not pooled, so a slow non-streaming model call stops
there and then (`ClientGone`). Only a wait longer than `WATCH_AFTER` is
watched, so the keep-alive hot path pays nothing; the watcher keeps any bytes
a pipelining client sends meanwhile in the client's buffer for the next
request. A clean EOF counts as leaving, as with nginx
(`proxy_ignore_client_abort off`): the HTTP clients cordon serves never
half-close their side, and the two cannot be told apart without writing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from cordon.core.errors import ProtocolError
from cordon.core.http1 import (
    ChunkedDecoder,
    Framing,
    Headers,
    RequestHead,
    ResponseHead,
    encode_chunk,
    end_chunks,
    header_get,
    request_framing,
    response_framing,
    serialize_request_head,
    serialize_response_head,
    strip_hop_by_hop,
    tokens,
    wants_keep_alive,
)
from cordon.core.scrub import EchoScrub, Scrubber
from cordon.proxy.conn import RECV, Conn
from cordon.proxy.pool import Pool, Target, Upstream
from cordon.proxy.websocket import relay_upgraded

PREFETCH_MAX = 64 * 1024   # request bodies up to this size are read first (replayable on a stale connection)
WATCH_AFTER = 1.0          # seconds of waiting for a response head before the client is watched as well
WATCH_BUFFER = 1 << 20     # pipelined bytes kept while watching; past this the client is not watched further
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
BROKEN = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError, ssl.SSLError)


@dataclass(frozen=True)
class Plan:
    """What goes upstream for one client request."""

    target: Target
    method: bytes
    path: bytes                      # origin-form request target
    headers: Headers                 # end-to-end fields, credentials already rewritten
    scrub: EchoScrub | None = None   # the credential's forms to replace in the response (echo scrubbing)
    upgrade: bytes | None = None     # b"websocket": relay raw bytes after a 101
    prefetch: int = PREFETCH_MAX     # request bodies up to this size are read first (replayable)
    on_401: Callable[[], Awaitable[Headers | None]] | None = None   # headers to retry a 401 with, once
    framing: Framing | None = None   # the request's body framing, when the caller already has it
    expect: bool | None = None       # the request asks for 100-continue, when the caller already knows
    keep_alive: bool | None = None   # the client wants its connection kept, when the caller already knows


class ClientGone(ProtocolError):
    """The client closed (or reset) its connection while the upstream had not answered yet."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 499)   # nginx's "client closed request"; never sent to anyone


@dataclass
class Result:
    status: int = 0
    keep_alive: bool = False
    bytes_up: int = 0
    bytes_down: int = 0
    error: str | None = None         # why the exchange ended early (already partly sent)


@dataclass
class _Upload:
    complete: bool = False
    error: BaseException | None = None
    client_side: bool = True         # where `error` happened (reading the client or writing upstream)
    sent: int = 0
    done: anyio.Event | None = None  # set when the copy ends, either way (the client watcher waits for it)


@dataclass(frozen=True)
class Timeouts:
    """Seconds. `head`: a request head must be complete this long after its first byte
    (slowloris); `idle`: a keep-alive client may stay silent this long; `response`:
    upstream time to the response head (LLM answers can take minutes); `read`: any body
    read making no progress; `connect`/`handshake`: TCP+TLS upstream, TLS with clients."""

    connect: float = 10.0
    handshake: float = 10.0
    head: float = 30.0
    idle: float = 300.0
    response: float = 600.0
    read: float = 600.0


class Forwarder:
    def __init__(self, pool: Pool, timeouts: Timeouts) -> None:
        self.pool = pool
        self.t = timeouts

    async def exchange(self, client: Conn, req: RequestHead, plan: Plan) -> Result:
        framing = plan.framing or request_framing(req)
        expect = plan.expect if plan.expect is not None else b"100-continue" in tokens(req.headers, b"expect")
        body: bytes | None = None
        if framing.kind == "none":
            body = b""
        elif framing.kind == "length" and framing.length <= plan.prefetch and not expect:
            body = await self._read_exact(client, framing.length)

        def request_head(fields: Headers) -> bytes:
            headers = list(fields)
            if plan.upgrade:
                headers += [(b"Connection", b"Upgrade"), (b"Upgrade", plan.upgrade)]
            if framing.kind == "length":
                headers.append((b"Content-Length", b"%d" % framing.length))
            elif framing.kind == "chunked":
                headers.append((b"Transfer-Encoding", b"chunked"))
            return serialize_request_head(plan.method, plan.path, headers)

        head = request_head(plan.headers)

        retried = False
        on_401 = plan.on_401
        while True:
            if plan.upgrade:
                up = await self.pool.open(plan.target, self.t.connect)
            else:
                up = await self.pool.acquire(plan.target)
            reused = up.uses > 0
            up.uses += 1
            try:
                if body is not None:
                    try:
                        await up.send(head + body)
                    except BROKEN as e:
                        await up.aclose()
                        if reused and not retried:
                            retried = True
                            continue
                        raise ProtocolError(f"upstream {plan.target.describe()} closed the connection: "
                                            f"{type(e).__name__}", 502)
                    resp = await self._response_head(up, client, req, expect, plan)
                    if resp is None:
                        await up.aclose()
                        if reused and not retried and (req.method in IDEMPOTENT or header_get(
                                req.headers, b"idempotency-key") is not None):   # replayable
                            retried = True
                            continue
                        raise ProtocolError(f"upstream {plan.target.describe()} closed the connection "
                                            "without answering", 502)
                    if resp.status == 401 and on_401 is not None:
                        again, on_401 = await on_401(), None
                        if again is not None:        # fresh credentials: the same request once more
                            await up.aclose()
                            head = request_head(again)
                            continue
                    upload = _Upload(complete=True, sent=len(body))
                    return await self._respond(client, req, plan, up, resp, upload)
                return await self._streaming(client, req, plan, up, framing, head, expect)
            except BaseException:
                if not up.closed:
                    await up.aclose()
                raise

    async def _streaming(self, client: Conn, req: RequestHead, plan: Plan, up: Upstream, framing: Framing,
                         head: bytes, expect: bool) -> Result:
        """Request body relayed while the response is read (100-continue, early answers)."""
        try:
            await up.send(head)
        except BROKEN:
            raise ProtocolError(f"upstream {plan.target.describe()} closed the connection", 502)
        upload = _Upload(done=anyio.Event())
        result: Result | None = None
        failure: BaseException | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._pump, client, up, framing, upload, tg.cancel_scope)
            # errors are carried out of the task group by hand: it would wrap them in an ExceptionGroup
            try:
                resp = await self._response_head(up, client, req, expect, plan, upload)
                if resp is not None:
                    result = await self._respond(client, req, plan, up, resp, upload)
            except (ProtocolError, TimeoutError, *BROKEN) as exc:
                failure = exc
            if not upload.complete:
                tg.cancel_scope.cancel()
        result_bytes_up = upload.sent
        if result is None:
            if not up.closed:
                await up.aclose()
            why = upload.error if (upload.error is not None and upload.client_side) else failure
            if isinstance(why, ProtocolError):
                raise why
            if upload.error is not None and upload.client_side:
                if isinstance(why, TimeoutError):
                    raise ProtocolError("timed out reading the request body", 408)
                raise ProtocolError("the client stopped sending the request body", 400)
            if isinstance(why, TimeoutError):
                raise ProtocolError(f"upstream {plan.target.describe()} timed out", 504)
            raise ProtocolError(f"upstream {plan.target.describe()} closed the connection without answering",
                                502)
        if not upload.complete:
            result.keep_alive = False
            if not up.closed:
                await up.aclose()
        result.bytes_up = result_bytes_up
        return result

    async def _pump(self, client: Conn, up: Upstream, framing: Framing, st: _Upload,
                    scope: anyio.CancelScope) -> None:
        """Copy the request body upstream. A client-side failure ends the exchange; an
        upstream-side one only stops the copy (an early answer may still be waiting)."""
        try:
            if framing.kind == "length":
                left = framing.length
                while left:
                    data = await client.receive_within(min(left, RECV), self.t.read)
                    left -= len(data)
                    st.client_side = False
                    await up.send(data)
                    st.client_side = True
                    st.sent += len(data)
            else:
                dec = ChunkedDecoder(400)
                while not dec.done:
                    data = await client.receive_within(RECV, self.t.read)
                    out = dec.feed(data)
                    st.client_side = False
                    if out:
                        await up.send(encode_chunk(out))
                        st.sent += len(out)
                    if dec.done:
                        # request trailers are dropped (RFC 9110 §6.5.1 lets a recipient discard them):
                        # they could carry a credential, the proxy token or a Host past the head's checks
                        await up.send(end_chunks())
                    st.client_side = True
                client.unread(dec.unused)
            st.complete = True
        except (ProtocolError, TimeoutError, *BROKEN) as e:
            st.error = e
            if st.client_side:
                scope.cancel()
        finally:
            if st.done is not None:
                st.done.set()

    async def _read_exact(self, client: Conn, n: int) -> bytes:
        buf = client.buf
        if len(buf) >= n:   # the usual case: the body came with the head
            body = bytes(buf[:n])
            del buf[:n]
            return body
        parts: list[bytes] = []
        left = n
        try:
            while left:
                data = await client.receive_within(min(left, RECV), self.t.read)
                parts.append(data)
                left -= len(data)
        except TimeoutError:
            raise ProtocolError("timed out reading the request body", 408)
        except BROKEN:
            raise ProtocolError("the client closed the connection in the middle of the request body", 400)
        return b"".join(parts)

    async def _response_head(self, up: Upstream, client: Conn, req: RequestHead, expect: bool,
                             plan: Plan, upload: _Upload | None = None) -> ResponseHead | None:
        """The final (or 101) response head; interim 1xx go to HTTP/1.1 clients. None: closed first.

        `upload`: the request body still being copied by `_pump` (None: already sent).
        """
        while True:
            try:
                # the common case: the head arrives within WATCH_AFTER, a plain read with a deadline
                first = min(WATCH_AFTER, self.t.response)
                try:
                    raw = await up.read_head(idle=first, head=first, status_on_eof=502,
                                             status_too_large=502, idle_is_timeout=True)
                except TimeoutError:
                    if first >= self.t.response:
                        raise
                    # a slow answer: keep waiting, and watch the client meanwhile
                    raw = await self._head_watching_client(up, client, upload, self.t.response - first)
            except TimeoutError:
                raise ProtocolError(f"upstream {plan.target.describe()} did not answer within "
                                    f"{self.t.response:g}s", 504)
            except BROKEN:
                return None
            if raw is None:
                return None
            resp = up.response_memo.parse(raw)
            if resp.status == 101:
                if plan.upgrade:
                    return resp
                raise ProtocolError("upstream switched protocols without being asked", 502)
            if resp.status >= 200:
                return resp
            if req.version == b"HTTP/1.1" and (resp.status != 100 or expect):
                hdrs = strip_hop_by_hop(resp.headers)
                reason = resp.reason
                if plan.scrub:
                    hdrs, reason = plan.scrub.headers(hdrs), plan.scrub.scrub(reason)
                await client.send(serialize_response_head(resp.status, reason, hdrs))

    async def _head_watching_client(self, up: Upstream, client: Conn, upload: _Upload | None,
                                    limit: float) -> bytes | None:
        """`up.read_head` within `limit` seconds; ClientGone if the client leaves first."""
        gone: list[str] = []
        raw: bytes | None = None
        failure: BaseException | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch_client, client, upload, gone, tg.cancel_scope)
            # errors are carried out of the task group by hand: it would wrap them in an ExceptionGroup
            try:
                raw = await up.read_head(idle=limit, head=limit, status_on_eof=502, status_too_large=502,
                                         idle_is_timeout=True)
            except (ProtocolError, TimeoutError, *BROKEN) as exc:
                failure = exc
            tg.cancel_scope.cancel()
        if gone:
            raise ClientGone(f"the client closed the connection ({gone[0]}) before the upstream "
                             f"answered; the upstream request was abandoned")
        if failure is not None:
            raise failure
        return raw

    async def _watch_client(self, client: Conn, upload: _Upload | None, gone: list[str],
                            scope: anyio.CancelScope) -> None:
        """Until cancelled: read whatever the client sends into its buffer (a pipelined next
        request stays there for the next `read_head`); EOF or a broken connection appends the
        reason to `gone` and cancels `scope`."""
        if upload is not None:
            if upload.done is not None and not upload.complete:
                await upload.done.wait()
            if not upload.complete:
                return   # the body copy failed upstream-side: the client's bytes are not ours to read
        buf = client.buf
        try:
            while len(buf) < WATCH_BUFFER:
                buf += await client.stream.receive(RECV)
        except (anyio.EndOfStream, ssl.SSLZeroReturnError):   # FIN, or TLS close_notify
            gone.append("EOF")
            scope.cancel()
        except (anyio.BrokenResourceError, OSError) as e:   # reset, or a TLS error (ssl.SSLError)
            gone.append("reset" if isinstance(e, anyio.BrokenResourceError) else type(e).__name__)
            scope.cancel()
        except anyio.ClosedResourceError:
            pass   # closed on our side: whoever closed it is ending the exchange already

    async def _respond(self, client: Conn, req: RequestHead, plan: Plan, up: Upstream, resp: ResponseHead,
                       upload: _Upload) -> Result:
        if resp.status == 101:
            down, upb = await relay_upgraded(client, up, resp, plan.scrub)
            return Result(status=101, keep_alive=False, bytes_down=down, bytes_up=upb)
        memo = up.response_memo
        if memo.decided is resp and memo.method == req.method:
            rf, headers, up_keep = memo.framing, list(memo.fields), memo.keep_alive
        else:
            rf = response_framing(req.method, resp)   # ProtocolError(502) on nonsense
            headers = strip_hop_by_hop(resp.headers)
            up_keep = wants_keep_alive(resp.version, resp.headers)
            memo.decide(resp, req.method, rf, headers, up_keep)
        keep_client = req.keep_alive if plan.keep_alive is None else plan.keep_alive
        scrubber: Scrubber | None = None
        if plan.scrub:
            headers = plan.scrub.headers(headers)
            reason = plan.scrub.scrub(resp.reason)
            if reason is not resp.reason:
                resp = dataclasses.replace(resp, reason=reason)
            enc = tokens(resp.headers, b"content-encoding")
            if rf.kind != "none" and all(e == b"identity" for e in enc):
                scrubber = plan.scrub.scrubber()
        if rf.kind == "none":
            cl = header_get(resp.headers, b"content-length")
            if cl is not None and (req.method == b"HEAD" or resp.status == 304):
                headers.append((b"Content-Length", cl))
            elif resp.status >= 200 and resp.status not in (204, 304):
                headers.append((b"Content-Length", b"0"))
            mode = "none"
        elif rf.kind == "length" and rf.length <= PREFETCH_MAX and (
                scrubber is not None or len(up.buf) >= rf.length):
            # small body: scrub it whole (keeping an exact Content-Length) and send it with the head
            return await self._respond_small(client, req, plan, up, resp, rf.length, headers, scrubber,
                                             upload, keep_client, up_keep)
        elif rf.kind == "length" and scrubber is None:
            headers.append((b"Content-Length", b"%d" % rf.length))
            mode = "length"
        elif req.version == b"HTTP/1.1":
            # chunked out when the length is unknown or scrubbing may change it
            headers.append((b"Transfer-Encoding", b"chunked"))
            mode = "chunked"
        else:
            mode = "close"
            keep_client = False
        if not keep_client:
            headers.append((b"Connection", b"close"))
        res = Result(status=resp.status, keep_alive=keep_client)
        head = serialize_response_head(resp.status, resp.reason, headers)
        if not up.buf or mode == "none":   # after a response without a body, buffered bytes are not its own
            await client.send(head)
            head = b""
        # else the body's first bytes came with the head (a stream's first event, usually): they go
        # out together, one write and one TLS record, as the upstream sent them

        up_reusable = rf.kind != "close" and up_keep
        try:
            res.bytes_down, trailers, clean = await self._relay_body(client, up, rf, mode, scrubber, head)
            if not clean:
                up_reusable = False
        except TimeoutError:
            res.error = f"upstream {plan.target.describe()} stalled for {self.t.read:g}s mid-body"
            res.keep_alive = False
            await up.aclose()
            return res
        except ProtocolError as e:
            res.error = e.message
            res.keep_alive = False
            await up.aclose()
            return res
        except BROKEN as e:
            res.error = f"connection broken mid-body ({type(e).__name__})"
            res.keep_alive = False
            await up.aclose()
            return res
        if mode == "chunked":
            if plan.scrub and trailers:
                trailers = plan.scrub.headers(trailers)
            await client.send(end_chunks(trailers))
        if up_reusable and upload.complete:
            await self.pool.release(up)
        else:
            await up.aclose()
        if mode == "close":
            res.keep_alive = False
        return res

    async def _respond_small(self, client: Conn, req: RequestHead, plan: Plan, up: Upstream, resp: ResponseHead,
                             length: int, headers: Headers, scrubber: Scrubber | None, upload: _Upload,
                             keep_client: bool, up_keep: bool) -> Result:
        parts: list[bytes] = []
        left = length
        try:
            while left:
                data = await up.receive_within(left, self.t.read)
                parts.append(data)
                left -= len(data)
        except TimeoutError:
            raise ProtocolError(f"upstream {plan.target.describe()} stalled for {self.t.read:g}s mid-body", 504)
        except BROKEN:
            raise ProtocolError(f"upstream {plan.target.describe()} closed the connection mid-body", 502)
        body = b"".join(parts)
        if scrubber is not None:
            body = scrubber.feed(body) + scrubber.flush()
        headers.append((b"Content-Length", b"%d" % len(body)))
        if not keep_client:
            headers.append((b"Connection", b"close"))
        await client.send(serialize_response_head(resp.status, resp.reason, headers) + body)
        if upload.complete and up_keep:
            await self.pool.release(up)
        else:
            await up.aclose()
        return Result(status=resp.status, keep_alive=keep_client, bytes_down=len(body))

    async def _relay_body(self, client: Conn, up: Upstream, rf: Framing, mode: str,
                          scrubber: Scrubber | None, head: bytes = b"") -> tuple[int, Headers, bool]:
        """Copy the response body; returns (bytes sent, trailers, upstream left clean).

        `head`: the response head, not sent yet, because the upstream's buffer already holds the
        first bytes of the body: it goes out with them (after those bytes only, never after a wait).
        """
        sent = 0
        read_t = self.t.read
        chunked_out = mode == "chunked"
        pending = head   # the head while it is still to go (b"" once sent)

        async def emit(data: bytes) -> None:
            nonlocal sent, pending
            if scrubber is not None:
                data = scrubber.feed(data)
            if pending:
                out, pending = pending, b""
                if data:
                    out += encode_chunk(data) if chunked_out else data
                    sent += len(data)
                await client.send(out)
            elif data:
                if chunked_out:
                    await client.send_chunk(data)
                else:
                    await client.send(data)
                sent += len(data)

        trailers: Headers = []
        clean = True
        left = rf.length
        dec = ChunkedDecoder(502) if rf.kind == "chunked" else None
        try:
            if pending:
                # the body's first bytes came with the head (they are in `up.buf`: no read waits): they
                # leave with it now, before the inactivity timer below is set up (a cancel scope costs
                # tens of microseconds, and the first event should not wait for it)
                data = await up.receive_batch(min(left, RECV) if rf.kind == "length" else RECV)
                if rf.kind == "length":
                    left -= len(data)
                await emit(dec.feed(data) if dec is not None else data)
            # one inactivity timer for the rest of the body, pushed back as data flows (cheaper than a
            # scope per read)
            clock = up.stream.clock   # the loop's clock, which anyio's deadlines are on
            now = clock()
            moved = now
            with anyio.CancelScope(deadline=now + read_t) as idle:
                if rf.kind == "length":
                    while left:
                        data = await up.receive_batch(min(left, RECV))
                        left -= len(data)
                        await emit(data)
                        now = clock()
                        if now - moved > 0.5:
                            idle.deadline, moved = now + read_t, now
                elif dec is not None:
                    while not dec.done:
                        data = await up.receive_batch(RECV)
                        out = dec.feed(data)
                        if out or pending:
                            await emit(out)
                        now = clock()
                        if now - moved > 0.5:
                            idle.deadline, moved = now + read_t, now
                    trailers = dec.trailers
                    if dec.unused:
                        clean = False
                elif rf.kind == "close":
                    while True:
                        try:
                            data = await up.receive_batch(RECV)
                        except anyio.EndOfStream:
                            break
                        await emit(data)
                        now = clock()
                        if now - moved > 0.5:
                            idle.deadline, moved = now + read_t, now
                    clean = False
        except Exception:
            if pending:   # the buffered bytes were bad: the head still goes first, then the error
                with contextlib.suppress(Exception):
                    await client.send(pending)
            raise
        if pending:
            await client.send(pending)
        if idle.cancelled_caught:
            raise TimeoutError
        if scrubber is not None:
            tail = scrubber.flush()
            if tail:
                await client.send(encode_chunk(tail) if chunked_out else tail)
                sent += len(tail)
        return sent, trailers, clean
