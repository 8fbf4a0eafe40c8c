"""The loopback upstreams of the tests: `LoopbackServer`, and the recording `UpstreamServer`.

`LoopbackServer` is the one fixture every fake upstream is built on (this
module's `UpstreamServer`, tests/mock_openai.py's `MockOpenAI` and the mocks built
on it, tests/mock_oauth.py's `MockService`, tests/faults/faulty.py's
`FaultyUpstream`, the slow upstream of
tests/faults/test_client_gone.py): 127.0.0.1 on a free port, TLS with a leaf for
`host` from a throwaway CA (`ca`, `ca_file`) or plain TCP, in a background
event-loop thread (an anyio blocking portal), so sync tests, async tests and
subprocess clients (curl, node, codex) can all talk to it. A subclass writes
`serve_connection(stream, sock, conn_id)`; `route()` makes the model Route that
points at it and `tests/configs.py` takes it as a route's `upstream`.
`ca` signs the leaf instead of a CA made per server; `also` names further hosts
served with a leaf each, picked by the client's SNI; `cert` picks a broken
certificate for fault tests: "expired", "other-name" (a leaf for evil.example),
"self-signed" (not from `ca`), "no-tls" (TCP accepted, nothing ever said).

    from tests.upstream import UpstreamServer

    with UpstreamServer("api.openai.com") as up:       # 127.0.0.1:<free port>
        up.port, up.address        # 55123, "127.0.0.1:55123"
        up.ca, up.ca_file          # throwaway certs.CA and its PEM file (trust it upstream-side)
        up.route("openai", secret_var="REAL_KEY")      # a model.Route pointing here
        ...make requests through cordon...
        up.requests[-1].header("authorization")         # what the upstream received
        up.gate("first").open()                          # release a paced SSE stream

The certificate is for `host` (a DNS name or an IP literal such as "127.0.0.1"),
signed by a CA made per server with `certs.create_ca`. `tls=False` serves plain
HTTP. Every request is recorded (method, target, headers in order with their
original case, body, connection id, SNI) *before* its response is sent.

Endpoints (any method; query parameters in brackets):
    /json (and any unknown path)  200 JSON {"ok", "method", "path", "body_bytes", "sha256"}
    /echo                 200 JSON {"headers": [[name, value], ...]} and every request
                          header copied back as a response header `x-echo-<name>`
    /sse [n=3, gate=NAME, delay=S]   text/event-stream, chunked; event 1 is sent at once,
                          then (if gate) waits for up.gate(NAME).open(), (if delay) sleeps
                          S between events; each event is `data: {"i": k}\\n\\n`, last `data: [DONE]`
    /chunked [n=4, size=1000]   chunked body: chunk k is bytes([65 + k % 26]) * size
    /bytes [n=1000000]    Content-Length body of n bytes of PATTERN (see pattern_bytes)
    /slow [delay=5]       sleeps before sending the head (for proxy timeouts)
    /status [code=500]    that status with a short JSON body
    /ws                   WebSocket echo (text, binary, ping->pong, close echoed then TCP close)
    /close                closes the connection without answering
    /garbage              answers with bytes that are not HTTP, then closes
A client sending `Expect: 100-continue` gets `100 Continue` before the body is read.

The mocks of provider APIs speak HTTP through the helpers at the end of the
module: `read_request`, `send_response`, `send_events` (SSE) and `sse_event`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import http
import json
import shutil
import socket
import ssl
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.abc
import h11
from anyio.from_thread import BlockingPortal, start_blocking_portal
from anyio.streams.tls import TLSAttribute, TLSStream

from cordon.core import certs
from cordon.core.model import Auth, Route, SecretSpec, UpstreamSpec
from cordon.proxy.transport.listen import serve, socket_stream

PATTERN = b"0123456789abcdefghijklmnopqrstuvwxyz" * 4  # 144 bytes
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


def pattern_bytes(n: int) -> bytes:
    """The body /bytes?n=N serves (for checking large downloads)."""
    reps = n // len(PATTERN) + 1
    return (PATTERN * reps)[:n]


@dataclass
class Recorded:
    """One request as the upstream received it."""

    conn_id: int
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    sni: str | None
    trailers: list[tuple[str, str]] = field(default_factory=list)   # of a chunked request body

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    def header(self, name: str) -> str | None:
        """The value of the first header called `name` (case-insensitive), or None."""
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def raw(self) -> str:
        """Every header line and the body as text, for 'the secret is absent' checks."""
        return "\n".join(f"{k}: {v}" for k, v in self.headers) + "\n" + self.body.decode("latin-1")


@dataclass
class _State:
    requests: list[Recorded] = field(default_factory=list)
    gates: dict[str, anyio.Event] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Gate:
    """A latch an SSE stream waits on; `open()` is callable from any thread."""

    def __init__(self, server: UpstreamServer, name: str) -> None:
        self._server = server
        self.name = name

    def open(self) -> None:
        self._server._portal_call(lambda: self._server._gate_event(self.name).set())


CERTS = ("valid", "expired", "other-name", "self-signed", "no-tls")
_HANDLED = (anyio.BrokenResourceError, anyio.EndOfStream, anyio.ClosedResourceError, ssl.SSLError, OSError,
            h11.ProtocolError, TimeoutError)


class LoopbackServer:
    """A TLS (or plain) server on 127.0.0.1:<free port> in its own event-loop thread (module docstring)."""

    def __init__(self, host: str = "api.openai.com", *, tls: bool = True, cert: str = "valid",
                 ca: certs.CA | None = None, also: tuple[str, ...] = ()) -> None:
        if cert not in CERTS:
            raise ValueError(cert)
        self.host = host
        self.also = also
        self.tls = tls
        self.cert = cert
        self.ca = ca or certs.create_ca("cordon test upstream CA")
        self._stack = ExitStack()
        self._portal: BlockingPortal | None = None
        self._tmp = Path(tempfile.mkdtemp(prefix="cordon-upstream-"))
        self.ca_file = self._tmp / "upstream-ca.pem"
        self.ca_file.write_bytes(self.ca.cert_pem)
        self._ssl = self._server_context() if tls and cert != "no-tls" else None
        self._lock = threading.Lock()
        self.accepted = 0
        self.port = 0
        self._cancel: anyio.CancelScope | None = None
        # every socket accepted: a transport closes its socket in a callback, which a loop that
        # stops right after a cancellation may never run; stop() closes what is left (a socket
        # left to the garbage collector is a ResourceWarning in whichever test runs next)
        self._accepted_socks: list[socket.socket] = []

    def _server_context(self) -> ssl.SSLContext:
        if self.cert == "expired":
            leaf = certs.issue_leaf(self.ca, self.host, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=30),
                                    validity=dt.timedelta(days=7))
        elif self.cert == "other-name":
            leaf = certs.issue_leaf(self.ca, "evil.example")
        elif self.cert == "self-signed":
            leaf = certs.issue_leaf(certs.create_ca("someone else"), self.host)
        else:
            leaf = certs.issue_leaf(self.ca, self.host)
        ctx = self._leaf_context(leaf, "leaf.pem")
        if not self.also:
            ctx.sni_callback = _on_sni
            return ctx
        # further names: a leaf each from `ca`, picked by the client's SNI
        contexts = {h: self._leaf_context(certs.issue_leaf(self.ca, h), f"leaf-{h}.pem") for h in self.also}

        def pick(sslobj: Any, name: str | None, first: ssl.SSLContext) -> None:
            _on_sni(sslobj, name, first)
            if name in contexts:
                sslobj.context = contexts[name]
        ctx.sni_callback = pick
        return ctx

    def _leaf_context(self, leaf: certs.Leaf, filename: str) -> ssl.SSLContext:
        chain = self._tmp / filename
        chain.write_bytes(leaf.chain_pem + leaf.key_pem)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(chain)
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    # -- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._portal = self._stack.enter_context(start_blocking_portal("asyncio"))
        self._listener = self._portal.call(self._make_listener)
        self.port = self._listener.extra(anyio.abc.SocketAttribute.local_port)
        self._portal.start_task_soon(self._serve)

    def stop(self) -> None:
        if self._portal is not None:
            self._portal.call(self._shutdown)
            self._stack.close()
            self._portal = None
        for csock in self._accepted_socks:
            csock.close()
        self._accepted_socks.clear()
        shutil.rmtree(self._tmp, ignore_errors=True)

    async def _make_listener(self) -> anyio.abc.Listener[anyio.abc.SocketStream]:
        return await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)

    async def _shutdown(self) -> None:
        if self._cancel is not None:
            self._cancel.cancel()
        await self._listener.aclose()

    async def _serve(self) -> None:
        raw = self._listener.extra(anyio.abc.SocketAttribute.raw_socket)
        with anyio.CancelScope() as scope:
            self._cancel = scope
            # cordon's own accept loop: no connection is lost to the shutdown's cancellation
            await serve(raw, self._accepted)

    async def _accepted(self, csock: socket.socket) -> None:
        self._accepted_socks.append(csock)
        sock = await socket_stream(csock)
        if sock is not None:
            await self._handle(sock)

    def _portal_call(self, fn: Any) -> Any:
        assert self._portal is not None, "server not started"
        return self._portal.call(fn)

    # -- what tests use -----------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def route(self, name: str = "openai", *, secret_var: str = "CORDON_TEST_SECRET",
              header_name: str = "Authorization", scheme: str | None = "Bearer",
              auth_type: str = "header", username: str | None = None,
              paths: tuple[str, ...] = (), placeholder: str = "dummy-replaced-by-cordon",
              upstream_scheme: str = "https") -> Route:
        """A Route for `self.host` whose upstream is this server (address + CA file)."""
        auth = Auth(type=auth_type, secret=SecretSpec(source="env", var=secret_var),  # type: ignore[arg-type]
                    header_name=header_name, scheme=scheme, username=username,
                    placeholder=placeholder)
        return Route(name=name, host=self.host, auth=auth, paths=paths,
                     upstream=UpstreamSpec(address=self.address, ca_file=self.ca_file,
                                       scheme=upstream_scheme))  # type: ignore[arg-type]

    # -- serving ---------------------------------------------------------------------
    async def _handle(self, sock: anyio.abc.SocketStream) -> None:
        with self._lock:
            self.accepted += 1
            conn_id = self.accepted
        stream: anyio.abc.ByteStream = sock
        try:
            if self._ssl is not None:
                with anyio.fail_after(10):
                    stream = await TLSStream.wrap(sock, server_side=True, ssl_context=self._ssl,
                                                  standard_compatible=False)
            elif self.cert == "no-tls":
                await anyio.sleep_forever()    # the connection is accepted and nothing is ever said
            await self.serve_connection(stream, sock, conn_id)
        except _HANDLED:
            pass
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.aclose_forcefully(stream)

    async def serve_connection(self, stream: anyio.abc.ByteStream, sock: anyio.abc.SocketStream,
                               conn_id: int) -> None:
        """Serve one accepted connection (`stream`: after TLS; `sock`: the TCP socket under it)."""
        raise NotImplementedError


# -- h11 on a stream, for the subclasses that answer HTTP ------------------------------------------

async def next_event(stream: anyio.abc.ByteStream, conn: h11.Connection) -> Any:
    """`conn`'s next h11 event, reading from `stream` as it needs (end of stream: ConnectionClosed)."""
    while True:
        ev = conn.next_event()
        if ev is not h11.NEED_DATA:
            return ev
        try:
            data = await stream.receive(65536)
        except anyio.EndOfStream:
            data = b""
        conn.receive_data(data)


async def read_raw_request(stream: anyio.abc.ByteStream, buf: bytes) -> tuple[bytes, bytes, bytes] | None:
    """One request as the raw bytes sent, framed by Content-Length alone (for upstreams that must see
    odd framing untouched), after `buf` (bytes already read): its head without the blank line, its
    body, and what came after it. None at the end of the stream or on a Content-Length that is not
    a number."""
    while b"\r\n\r\n" not in buf:
        try:
            buf += await stream.receive(65536)
        except anyio.EndOfStream:
            return None
    head, _, buf = buf.partition(b"\r\n\r\n")
    n = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            try:
                n = int(v)
            except ValueError:
                return None
    while len(buf) < n:
        buf += await stream.receive(65536)
    return head, buf[:n], buf[n:]


async def read_request(stream: anyio.abc.ByteStream, conn: h11.Connection) -> tuple[h11.Request, bytes] | None:
    """The next request and its whole body, or None once the client is gone. An Upgrade request
    comes back at once with no body (what follows it is not HTTP)."""
    ev = await next_event(stream, conn)
    if not isinstance(ev, h11.Request):
        return None
    req = ev
    if any(k.lower() == b"upgrade" for k, _ in req.headers.raw_items()):
        return req, b""
    body = bytearray()
    while True:
        ev = await next_event(stream, conn)
        if isinstance(ev, h11.Data):
            body += ev.data
        elif isinstance(ev, h11.EndOfMessage):
            return req, bytes(body)
        else:
            return None


async def serve_requests(stream: anyio.abc.ByteStream,
                         answer: Callable[[h11.Connection, h11.Request, bytes], Awaitable[bool]]) -> None:
    """The requests of one connection, each read whole (`read_request`) and handed to `answer`,
    which sends the response on the connection and says whether the connection ends with it (an
    upgrade taken over, say); kept alive while h11 allows."""
    conn = h11.Connection(h11.SERVER)
    while (got := await read_request(stream, conn)) is not None:
        head, body = got
        if await answer(conn, head, body) or conn.our_state is h11.MUST_CLOSE:
            return
        try:
            conn.start_next_cycle()
        except h11.LocalProtocolError:
            return


def str_headers(req: h11.Request) -> list[tuple[str, str]]:
    """A request's headers in order, with their original case."""
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in req.headers.raw_items()]


async def send_response(stream: anyio.abc.ByteStream, conn: h11.Connection, status: int, body: bytes,
                        ctype: str = "application/json", headers: list[tuple[str, str]] | None = None) -> None:
    """One whole response: `status` with its reason phrase, Content-Type and Content-Length, `body`."""
    head = [("content-type", ctype), ("content-length", str(len(body))), *(headers or [])]
    reason = http.HTTPStatus(status).phrase.encode()
    await stream.send(conn.send(h11.Response(status_code=status, headers=head, reason=reason)) or b"")
    await stream.send(conn.send(h11.Data(data=body)) or b"")
    await stream.send(conn.send(h11.EndOfMessage()) or b"")


async def send_events(stream: anyio.abc.ByteStream, conn: h11.Connection, events: Iterable[str]) -> None:
    """200 text/event-stream, each SSE event text in a chunk of its own, then the end."""
    reason = http.HTTPStatus(200).phrase.encode()
    await stream.send(conn.send(h11.Response(status_code=200, reason=reason, headers=[
        ("content-type", "text/event-stream"), ("cache-control", "no-cache")])) or b"")
    for ev in events:
        await stream.send(conn.send(h11.Data(data=ev.encode())) or b"")
    await stream.send(conn.send(h11.EndOfMessage()) or b"")


def sse_event(data: Any, name: str | None = None) -> str:
    """One SSE event: `event: name` (if any) and `data` as JSON."""
    return (f"event: {name}\n" if name else "") + f"data: {json.dumps(data)}\n\n"


def _on_sni(sslobj: Any, name: str | None, ctx: ssl.SSLContext) -> None:
    sslobj.cordon_test_sni = name


def sni_of(stream: anyio.abc.ByteStream) -> str | None:
    """The server name the client sent in its TLS hello (None over plain TCP or without SNI)."""
    sslobj = stream.extra(TLSAttribute.ssl_object, None)
    return getattr(sslobj, "cordon_test_sni", None)


class UpstreamServer(LoopbackServer):
    """A local HTTPS/HTTP upstream that records what it receives (see module docstring)."""

    def __init__(self, host: str = "api.openai.com", *, tls: bool = True) -> None:
        super().__init__(host, tls=tls)
        self._state = _State()

    @property
    def requests(self) -> list[Recorded]:
        with self._state.lock:
            return list(self._state.requests)

    @property
    def connections(self) -> int:
        """How many TCP connections were accepted so far (for connection-reuse checks)."""
        return self.accepted

    def clear(self) -> None:
        with self._state.lock:
            self._state.requests.clear()

    def gate(self, name: str) -> Gate:
        return Gate(self, name)

    def _gate_event(self, name: str) -> anyio.Event:
        ev = self._state.gates.get(name)
        if ev is None:
            ev = self._state.gates[name] = anyio.Event()
        return ev

    async def serve_connection(self, stream: anyio.abc.ByteStream, sock: anyio.abc.SocketStream,
                               conn_id: int) -> None:
        await self._http(stream, conn_id, sni_of(stream))

    async def _http(self, stream: anyio.abc.ByteStream, conn_id: int, sni: str | None) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
        async def send(*events: Any) -> None:
            out = b"".join(conn.send(e) or b"" for e in events)
            if out:
                await stream.send(out)

        while True:
            ev = await next_event(stream, conn)
            if isinstance(ev, h11.ConnectionClosed) or ev is h11.PAUSED:
                return
            assert isinstance(ev, h11.Request), ev
            req = ev
            headers = str_headers(req)
            if conn.they_are_waiting_for_100_continue:
                await send(h11.InformationalResponse(status_code=100, headers=[]))
            body = bytearray()
            trailers: list[tuple[str, str]] = []
            while True:
                ev = await next_event(stream, conn)
                if isinstance(ev, h11.Data):
                    body += ev.data
                elif isinstance(ev, h11.EndOfMessage):
                    trailers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in ev.headers.raw_items()]
                    break
                elif isinstance(ev, h11.ConnectionClosed):
                    return
            target = req.target.decode("latin-1")
            rec = Recorded(conn_id=conn_id, method=req.method.decode(), target=target,
                           headers=headers, body=bytes(body), sni=sni, trailers=trailers)
            with self._state.lock:
                self._state.requests.append(rec)
            url = urlsplit(target)
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            path = url.path
            if path == "/close":
                return
            if path == "/garbage":
                await stream.send(b"this is not HTTP at all\r\n\r\n")
                return
            if path == "/ws":
                await self._websocket(stream, conn, rec, send)
                return
            await self._respond(path, q, rec, send)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _respond(self, path: str, q: dict[str, str], rec: Recorded, send: Any) -> None:
        def jbody(obj: object) -> bytes:
            return json.dumps(obj).encode()

        if path == "/echo":
            body = jbody({"headers": [[k, v] for k, v in rec.headers]})
            hdrs = [("content-type", "application/json"), ("content-length", str(len(body)))]
            hdrs += [(f"x-echo-{k.lower()}", v) for k, v in rec.headers
                     if k.lower() not in ("content-length", "transfer-encoding", "connection")]
            await send(h11.Response(status_code=200, headers=hdrs), h11.Data(data=body), h11.EndOfMessage())
        elif path == "/sse":
            n = int(q.get("n", "3"))
            delay = float(q.get("delay", "0"))
            gate = q.get("gate")
            await send(h11.Response(status_code=200, headers=[("content-type", "text/event-stream"),
                                                              ("cache-control", "no-cache")]))
            for i in range(n):
                if i == 1 and gate:
                    await self._gate_event(gate).wait()
                if i > 0 and delay:
                    await anyio.sleep(delay)
                await send(h11.Data(data=f'data: {{"i": {i}}}\n\n'.encode()))
            await send(h11.Data(data=b"data: [DONE]\n\n"), h11.EndOfMessage())
        elif path == "/chunked":
            n, size = int(q.get("n", "4")), int(q.get("size", "1000"))
            await send(h11.Response(status_code=200, headers=[("content-type", "application/octet-stream")]))
            for i in range(n):
                await send(h11.Data(data=bytes([65 + i % 26]) * size))
            await send(h11.EndOfMessage())
        elif path == "/bytes":
            n = int(q.get("n", "1000000"))
            await send(h11.Response(status_code=200, headers=[("content-type", "application/octet-stream"),
                                                              ("content-length", str(n))]))
            data = pattern_bytes(n)
            step = 1 << 18
            for i in range(0, n, step):
                await send(h11.Data(data=data[i:i + step]))
            await send(h11.EndOfMessage())
        elif path == "/status":
            code = int(q.get("code", "500"))
            body = jbody({"status": code})
            await send(h11.Response(status_code=code, headers=[("content-type", "application/json"),
                                                               ("content-length", str(len(body)))]),
                       h11.Data(data=body), h11.EndOfMessage())
        else:
            if path == "/slow":
                await anyio.sleep(float(q.get("delay", "5")))
            body = jbody({"ok": True, "method": rec.method, "path": path, "body_bytes": len(rec.body),
                          "sha256": hashlib.sha256(rec.body).hexdigest()})
            await send(h11.Response(status_code=200, headers=[("content-type", "application/json"),
                                                              ("content-length", str(len(body)))]),
                       h11.Data(data=body), h11.EndOfMessage())

    async def _websocket(self, stream: anyio.abc.ByteStream, conn: h11.Connection, rec: Recorded,
                         send: Any) -> None:
        key = rec.header("sec-websocket-key")
        if (rec.header("upgrade") or "").lower() != "websocket" or not key:
            await send(h11.Response(status_code=400, headers=[("content-length", "0"),
                                                              ("connection", "close")]),
                       h11.EndOfMessage())
            return
        accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
        await send(h11.InformationalResponse(status_code=101, headers=[
            ("upgrade", "websocket"), ("connection", "Upgrade"), ("sec-websocket-accept", accept)]))
        buf = bytearray(conn.trailing_data[0])

        async def need(n: int) -> None:
            while len(buf) < n:
                buf.extend(await stream.receive(65536))

        while True:
            await need(2)
            b0, b1 = buf[0], buf[1]
            opcode, masked, ln = b0 & 0x0F, b1 & 0x80, b1 & 0x7F
            pos = 2
            if ln == 126:
                await need(4)
                ln, pos = int.from_bytes(buf[2:4], "big"), 4
            elif ln == 127:
                await need(10)
                ln, pos = int.from_bytes(buf[2:10], "big"), 10
            mask = b""
            if masked:
                await need(pos + 4)
                mask, pos = bytes(buf[pos:pos + 4]), pos + 4
            await need(pos + ln)
            payload = bytes(buf[pos:pos + ln])
            del buf[:pos + ln]
            if mask:
                payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
            if opcode == 0x9:  # ping -> pong
                await stream.send(ws_frame(0xA, payload))
            elif opcode == 0x8:  # close: echo it, then close TCP (RFC 6455 §5.5.1)
                await stream.send(ws_frame(0x8, payload))
                return
            elif opcode in (0x0, 0x1, 0x2):
                await stream.send(bytes([b0 & 0x8F]) + _ws_len(len(payload)) + payload)


def _ws_len(n: int) -> bytes:
    if n < 126:
        return bytes([n])
    if n < 1 << 16:
        return bytes([126]) + n.to_bytes(2, "big")
    return bytes([127]) + n.to_bytes(8, "big")


def ws_frame(opcode: int, payload: bytes) -> bytes:
    return bytes([0x80 | opcode]) + _ws_len(len(payload)) + payload


@contextmanager
def upstream(host: str = "api.openai.com", *, tls: bool = True) -> Iterator[UpstreamServer]:
    """`with upstream("api.openai.com") as up:` — same as `with UpstreamServer(...)`."""
    with UpstreamServer(host, tls=tls) as up:
        yield up
