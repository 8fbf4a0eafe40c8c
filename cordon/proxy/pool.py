"""Upstream connections: connect (TCP, verified TLS), keep idle ones for reuse.

A `Target` names where to connect (`connect_host:connect_port`, possibly a
route's `[routes.upstream] address` or an SSRF-validated IP) and which name
TLS must verify (`host`, also the SNI). Connection failures become
`ProtocolError` with the status the client gets: 502 refused/unreachable/TLS,
504 timeout.
"""

from __future__ import annotations

import errno
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio

from cordon.core.errors import ProtocolError
from cordon.core.http1 import NO_BODY, Framing, Headers, ResponseHead, parse_response_head
from cordon.proxy.conn import Conn
from cordon.proxy.tls import ClientContexts
from cordon.proxy.transport.fastio import connect
from cordon.proxy.transport.fasttls import TLSConn
from cordon.proxy.transport.stream import Stream

IDLE_TTL = 30.0        # drop pooled connections idle longer than this (servers time out ~60 s)
MAX_IDLE_PER_TARGET = 256   # a burst of parallel clients must not churn upstream handshakes
MAX_OPENING_PER_TARGET = 16   # connections being opened to one target at once (Pool.acquire)


@dataclass(frozen=True)
class Target:
    host: str                  # Host / SNI / certificate name
    port: int
    connect_host: str          # where the TCP connection goes
    connect_port: int
    tls: bool = True
    ca_file: Path | None = None

    def __hash__(self) -> int:
        # the pool looks a target up two or three times per request: hashed once, not field by field
        h: int | None = self.__dict__.get("_hash")
        if h is None:
            h = self.__dict__["_hash"] = hash((self.host, self.port, self.connect_host, self.connect_port,
                                               self.tls, self.ca_file))
        return h

    def describe(self) -> str:
        where = f"{self.host}:{self.port}"
        if (self.connect_host, self.connect_port) != (self.host, self.port):
            where += f" (via {self.connect_host}:{self.connect_port})"
        return where


class ResponseMemo:
    """One upstream connection's last response head, its parse and what it decided.

    A server answering the same kind of request often repeats its head byte for
    byte (no Date, or within the same second): `parse` reuses the last parse for
    the same bytes (the same bytes parse the same way), and `decide` keeps the
    framing, the fields to relay and keep-alive decided for that head and request
    method. Heads are read-only: the memo hands out the same objects.
    """

    __slots__ = ("decided", "fields", "framing", "head", "keep_alive", "method", "parsed")

    def __init__(self) -> None:
        self.head = b""
        self.parsed: ResponseHead | None = None
        self.decided: ResponseHead | None = None   # the head `framing`, `fields`, `keep_alive` are for
        self.method = b""
        self.framing = NO_BODY
        self.fields: Headers = []
        self.keep_alive = False

    def parse(self, raw: bytes) -> ResponseHead:
        if self.parsed is not None and raw == self.head:
            return self.parsed
        resp = parse_response_head(raw)   # ProtocolError(502) on garbage: nothing is kept
        self.head, self.parsed = raw, resp
        return resp

    def decide(self, resp: ResponseHead, method: bytes, framing: Framing, fields: Headers, keep_alive: bool) -> None:
        self.decided, self.method, self.framing, self.keep_alive = resp, method, framing, keep_alive
        self.fields = list(fields)   # a copy: the caller goes on to add its own framing fields


class Upstream(Conn):
    """A connection to a target; `uses` counts the exchanges it carried."""

    __slots__ = ("idle_since", "response_memo", "target", "uses")

    def __init__(self, stream: Stream, target: Target) -> None:
        super().__init__(stream)
        self.target = target
        self.uses = 0
        self.idle_since = 0.0
        self.response_memo = ResponseMemo()

    def looks_dead(self) -> bool:
        """A connection holding any unread byte (EOF, junk, an unsolicited response) is not reused.

        HTTP/1.1 has no request ids: whatever is waiting would be read as the
        answer to the next client's request. The bytes may be in our buffer, in
        the TLS session (ciphertext or decrypted records) or on the socket.
        """
        return bool(self.buf) or self.stream.looks_dead()


# How a pool opens a connection: (target, timeout) -> a connected (for TLS: handshaken) Upstream.
# `open_connection` over TCP in the proxy; an in-memory one in the transcript tests.
Opener = Callable[[Target, float], Awaitable[Upstream]]


def os_failure(e: OSError) -> tuple[bool, str]:
    """(was it refused?, one-line reason), looking through anyio's "All connection attempts failed"."""
    causes: list[BaseException] = [e]
    c = e.__cause__
    if isinstance(c, BaseExceptionGroup):
        causes = list(c.exceptions)
    elif c is not None:
        causes = [c]
    refused = all(isinstance(x, ConnectionRefusedError) or getattr(x, "errno", None) == errno.ECONNREFUSED
                  or "[Errno 111]" in str(x) for x in causes)
    last = causes[-1]
    reason = (getattr(last, "strerror", None) or str(last) or type(last).__name__)
    return refused, reason


def _ssl_reason(e: BaseException) -> str:
    if isinstance(e, ssl.SSLCertVerificationError):
        return e.verify_message or str(e)
    if isinstance(e, ssl.SSLError):
        return e.reason or str(e)
    return str(e) or type(e).__name__


async def open_connection(target: Target, contexts: ClientContexts, timeout: float) -> Upstream:
    """Connect and (for TLS) handshake within `timeout`; map failures to 502/504."""
    where = target.describe()
    # which trust anchors verified (or failed to verify) the upstream: the first thing to check
    trust = f" (trusting the system roots and {target.ca_file})" if target.ca_file else ""
    context = None
    if target.tls:
        try:
            context = contexts.get(target.ca_file)
        except (OSError, ssl.SSLError) as e:
            raise ProtocolError(f"cannot use the CA file {target.ca_file} for upstream {where}: "
                                f"{getattr(e, 'strerror', None) or _ssl_reason(e)}", 502) from None
    try:
        with anyio.fail_after(timeout):
            sock = await connect(target.connect_host, target.connect_port)
            stream: Stream = sock
            if context is not None:
                try:
                    stream = await TLSConn.wrap(sock, context, server_side=False,
                                                hostname=target.host)
                except BaseException:
                    await anyio.aclose_forcefully(sock)
                    raise
    except TimeoutError:
        raise ProtocolError(f"upstream {where} timed out after {timeout:g}s while connecting", 504)
    except ssl.SSLCertVerificationError as e:
        raise ProtocolError(f"upstream {where} failed TLS verification: {_ssl_reason(e)}{trust}", 502)
    except ssl.SSLError as e:
        raise ProtocolError(f"TLS handshake with upstream {where} failed: {_ssl_reason(e)}{trust}", 502)
    except (anyio.BrokenResourceError, anyio.EndOfStream) as e:
        raise ProtocolError(f"upstream {where} closed the connection during the TLS handshake"
                            f"{': ' + _ssl_reason(e.__cause__) if e.__cause__ else ''}", 502)
    except socket.gaierror as e:
        raise ProtocolError(f"cannot resolve upstream {target.connect_host}: {e.strerror or e}", 502)
    except OSError as e:
        refused, reason = os_failure(e)
        if refused:
            raise ProtocolError(f"upstream {where} refused the connection", 502)
        raise ProtocolError(f"cannot reach upstream {where}: {reason}", 502)
    return Upstream(stream, target)


class Pool:
    """Idle upstream connections by target, reused LIFO (the warmest first)."""

    def __init__(self, contexts: ClientContexts, connect_timeout: float, opener: Opener | None = None) -> None:
        self.contexts = contexts
        self.connect_timeout = connect_timeout
        self._opener = opener
        self._idle: dict[Target, list[Upstream]] = {}
        self._opening: dict[Target, anyio.Semaphore] = {}

    async def acquire(self, target: Target) -> Upstream:
        """A ready connection: a live idle one when there is one, else a new one.

        At most MAX_OPENING_PER_TARGET connections to a target are being opened
        at once; a request waiting for its turn takes a connection released
        meanwhile instead. A burst of parallel clients then costs far fewer
        upstream handshakes, and their transient buffers (the peak memory of
        a burst) stay bounded. The wait counts against the connect timeout.
        """
        up = await self._take_idle(target)
        if up is not None:
            return up
        sem = self._opening.get(target)
        if sem is None:
            sem = self._opening[target] = anyio.Semaphore(MAX_OPENING_PER_TARGET)
        t0 = time.monotonic()
        try:
            with anyio.fail_after(self.connect_timeout):
                await sem.acquire()
        except TimeoutError:
            raise ProtocolError(f"upstream {target.describe()} timed out after {self.connect_timeout:g}s "
                                "while connecting", 504)
        try:
            up = await self._take_idle(target)
            if up is not None:
                return up
            left = max(0.001, self.connect_timeout - (time.monotonic() - t0))
            return await self.open(target, left)
        finally:
            sem.release()
            if sem.value == MAX_OPENING_PER_TARGET and not sem.statistics().tasks_waiting:
                self._opening.pop(target, None)   # one semaphore per target in use, not per target ever seen

    async def open(self, target: Target, timeout: float) -> Upstream:
        """A new connection, never pooled before (WebSocket upgrades take one of these)."""
        if self._opener is not None:
            return await self._opener(target, timeout)
        return await open_connection(target, self.contexts, timeout)

    async def _take_idle(self, target: Target) -> Upstream | None:
        idle = self._idle.get(target)
        now = time.monotonic()
        while idle:
            up = idle.pop()
            if not idle:
                self._idle.pop(target, None)   # no empty lists kept for targets seen once
            if now - up.idle_since < IDLE_TTL and not up.looks_dead():
                return up
            await up.aclose()
        return None

    async def release(self, up: Upstream) -> None:
        """Return a connection whose last exchange ended cleanly."""
        if up.closed or up.looks_dead():
            await up.aclose()
            return
        idle = self._idle.setdefault(up.target, [])
        if len(idle) >= MAX_IDLE_PER_TARGET:
            await up.aclose()
            return
        up.idle_since = time.monotonic()
        idle.append(up)

    async def aclose(self) -> None:
        conns = [c for lst in self._idle.values() for c in lst]
        self._idle.clear()
        for c in conns:
            await c.aclose()
