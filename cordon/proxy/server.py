"""The listener: accept on 127.0.0.1, authenticate, dispatch CONNECT / absolute-form / self.

`serve(settings)` binds, reports the port through `task_status.started`, and
runs until cancelled. Each client connection is its own task; whatever goes
wrong on one connection is answered (400/403/407/421/426/431/502/504) or
closes that connection only. Decisions (route match, policy, SSRF) come from
the pure modules; this file is the I/O shell around them.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.abc

from cordon import __version__
from cordon.core import ssrf
from cordon.core.errors import ProtocolError
from cordon.core.http1 import (
    FieldMemo,
    Framing,
    Headers,
    RequestHead,
    parse_request_head,
    request_framing,
    simple_response,
    strip_hop_by_hop,
    tokens,
)
from cordon.core.model import Policy, Route, SecretReader
from cordon.core.routes import RouteTable, normalize_host, split_host_port
from cordon.core.wording import plural
from cordon.proxy.auth import CHALLENGE, ProxyAuth
from cordon.proxy.conn import Conn, splice
from cordon.proxy.eventloop import running_loop_name
from cordon.proxy.forward import Forwarder, Plan, Timeouts
from cordon.proxy.mitm import route_request, serve_mitm
from cordon.proxy.oauth import Broker, LoginBackend
from cordon.proxy.pool import Opener, Pool, Target
from cordon.proxy.refuse import answered_hosts, serve_refusal
from cordon.proxy.secretcache import SecretCache
from cordon.proxy.stats import ProxyStats
from cordon.proxy.tls import ClientContexts, Issuer
from cordon.proxy.transport.fastio import can_pipe, pipe, serve_tcp
from cordon.proxy.transport.stream import Stream
from cordon.proxy.tunnel import GuardMemo, connect_pinned, guarded_addresses
from cordon.proxy.websocket import upgrade_token

__all__ = ["ProxyAuth", "ProxySettings", "ProxyStats", "SecretCache", "Timeouts", "serve"]

log = logging.getLogger("cordon.proxy")


@dataclass(frozen=True)
class ProxySettings:
    """Everything a running proxy needs; it reads no files or keyrings itself.

    routes: the route hosts to intercept. issuer: `.server_context(host)` (e.g.
    `cordon.proxy.tls.LeafIssuer(ca)`). resolver: a `SecretCache` (used as is: it
    may hold values read at preflight), or any blocking `SecretReader`, which is
    wrapped in one watching `secrets_gen_file`. auth: None for
    an open proxy, else the tokens clients must present. upstream_ca_file:
    replaces the system roots upstream (tests, doctor); a route's own ca_file
    is added on top. logins: where the tokens of `type = "login"` routes live
    (load/save/lock; `cordon.store.logins.LoginStore`).
    """

    routes: tuple[Route, ...]
    issuer: Issuer
    resolver: SecretReader
    auth: ProxyAuth | None = None
    policy: Policy = Policy()  # noqa: RUF009 (frozen, shared safely)
    port: int = 0
    upstream_ca_file: str | None = None
    secrets_gen_file: Path | None = None
    timeouts: Timeouts = Timeouts()  # noqa: RUF009 (frozen, shared safely)
    logins: LoginBackend | None = None   # subscription logins (routes of type "login"): cordon.proxy.oauth
    version: str = __version__
    stats: ProxyStats = field(default_factory=ProxyStats)
    config: ConfigSource | None = None    # `cordon start`: the config file, re-read when it changes


class ConfigSource(Protocol):
    """Where a long-lived proxy's routes and policy come from (cordon.app.liveconfig)."""

    def current(self) -> tuple[tuple[Route, ...], Policy] | None:
        """New routes and policy when the source changed and loads; None otherwise (cheap)."""
        ...

    def health(self) -> dict[str, Any]:
        """What /health says about it: which configuration is live, and a pending error."""
        ...


async def serve(settings: ProxySettings, *,
                task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
    """Listen on 127.0.0.1:`settings.port`; `task_status.started(port)`; run until cancelled."""
    px = Proxy(settings)

    def started(port: int) -> None:
        settings.stats.port = port
        log.info("proxy listening on 127.0.0.1:%d (%s)", port, plural(len(settings.routes), "route"))
        task_status.started(port)

    px.secrets.watch()   # secret changes by inotify where it works, else a stat() per request
    try:
        await serve_tcp(settings.port, px.handle, _Started(started))
    finally:
        px.secrets.unwatch()
        with anyio.CancelScope(shield=True):
            await px.pool.aclose()


class _Started:
    """Adapts a callback to the TaskStatus interface serve_tcp reports its port through."""

    def __init__(self, fn: Callable[[int], None]) -> None:
        self._fn = fn

    def started(self, value: int | None = None) -> None:
        assert value is not None
        self._fn(value)


class PlainMemo(GuardMemo):
    """What one client connection's absolute-form requests keep from one request to the next.

    The SSRF decision (`GuardMemo`, at most a second), the last request target's parsed
    scheme and authority with the route they matched (under the route table they were
    matched against), and the last upstream `Target` (one object per connection, so the
    pool's lookups hit on identity).
    """

    __slots__ = ("authority", "derived", "target", "who")

    def __init__(self) -> None:
        super().__init__()
        self.authority: tuple[bytes, bytes, RouteTable, str, int, Route | None, str] | None = None
        self.target: Target | None = None
        # what the request's fields decide (framing, upgrade, the fields to forward), for the
        # `headers` list it was computed from: FieldMemo hands out the same list for the same bytes
        self.derived: tuple[Headers, bytes, Framing, bytes | None, Headers, bool, bool] | None = None
        # the client the fields' Proxy-Authorization named, for that headers list and token set
        self.who: tuple[Headers, ProxyAuth, str] | None = None


class Proxy:
    """Per-`serve` state: route table, pool, secret cache, stats."""

    def __init__(self, settings: ProxySettings, *, opener: Opener | None = None) -> None:
        """`opener`: how upstream connections are opened (default: TCP and verified TLS)."""
        self.settings = settings
        self.issuer = settings.issuer
        self.oauth: Broker | None = None
        self._apply(settings.routes, settings.policy)
        self.timeouts = settings.timeouts
        self.stats = settings.stats
        self.pool = Pool(ClientContexts(settings.upstream_ca_file), settings.timeouts.connect, opener)
        self.forwarder = Forwarder(self.pool, settings.timeouts)
        r = settings.resolver
        self.secrets = r if isinstance(r, SecretCache) else SecretCache(r, settings.secrets_gen_file)
        if settings.logins is not None:
            self.oauth = Broker(settings.logins, self.routes, self.pool.contexts)
            self.secrets.listeners.append(self.oauth.invalidate)
        self._targets: dict[tuple[int, str, int], tuple[Route, Target]] = {}
        self._plain_targets: dict[tuple[str, int, str, bool], Target] = {}

    def _apply(self, routes: tuple[Route, ...], policy: Policy) -> None:
        """The routes and policy new connections are served with (start, or a reloaded config)."""
        self.routes = routes
        self.policy = policy
        self.table = RouteTable(routes)
        self.exemptions = ssrf.Exemptions.parse(policy.allow_private)
        self.allow_hosts = frozenset(normalize_host(h) for h in policy.allow_hosts)
        self.answered = answered_hosts(policy.unmatched, self.allow_hosts)
        if self.oauth is not None:
            self.oauth.set_routes(routes)

    def _reload(self) -> None:
        """A changed config (settings.config) takes effect on the next connection."""
        source = self.settings.config
        if source is None:
            return
        fresh = source.current()
        if fresh is not None:
            self._apply(*fresh)
            self.secrets.invalidate()     # cached by route name: an edited route may read another source

    # -- helpers used by mitm --------------------------------------------------------
    def route_target(self, route: Route, port: int, host: str | None = None) -> Target:
        """Where a request for `host` (a name the route covers; its own host by default) goes."""
        name = route.host if host is None else normalize_host(host)
        # per request: cached per (route object, host, port); the route is kept so its id is never reused
        key = (id(route), name, port)
        hit = self._targets.get(key)
        if hit is not None and hit[0] is route:
            return hit[1]
        t = self._route_target(route, name, port)
        if len(self._targets) < 1024:
            self._targets[key] = (route, t)
        return t

    def _plain_target(self, host: str, port: int, address: str, tls: bool) -> Target:
        """The Target of an unmatched host at a checked address: one object for all connections
        (the pool's lookups then hit on identity)."""
        key = (host, port, address, tls)
        t = self._plain_targets.get(key)
        if t is None:
            t = Target(host=host, port=port, connect_host=address, connect_port=port, tls=tls)
            if len(self._plain_targets) >= 1024:
                self._plain_targets.clear()
            self._plain_targets[key] = t
        return t

    def _route_target(self, route: Route, host: str, port: int) -> Target:
        up = route.upstream
        tls = up.scheme != "http"
        if up.address:
            ch, cp = split_host_port(up.address, 443 if tls else 80)
        else:
            ch, cp = host, port
        return Target(host=host, port=port, connect_host=ch, connect_port=cp, tls=tls,
                      ca_file=up.ca_file)

    async def send_error(self, conn: Conn, status: int, message: str, *, close: bool,
                         extra: list[tuple[bytes, bytes]] | None = None) -> None:
        """A one-line plain-text answer from cordon itself."""
        body = f"cordon: {message}\n".encode()
        try:
            await conn.send(simple_response(status, body, extra=extra or [], close=close))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            return
        if close:
            await linger(conn)

    def log_exchange(self, route: str | None, host: str, req: RequestHead, status: int, nbytes: int,
                     t0: float, error: str | None = None, who: str = "-") -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        dur = time.monotonic() - t0
        extra = {"route": route or "-", "host": host, "method": req.method.decode("latin-1"),
                 "status": status, "bytes": nbytes, "duration": round(dur, 4), "client": who}
        msg = "route=%s host=%s method=%s status=%d bytes=%d duration=%.3fs client=%s"
        args: tuple[Any, ...] = (extra["route"], host, extra["method"], status, nbytes, dur, who)
        if error:
            msg += " error=%s"
            args += (error,)
            extra["error"] = error
        log.info(msg, *args, extra={"cordon": extra})

    # -- connection handling -------------------------------------------------------
    async def handle(self, sock: Stream) -> None:
        self.stats.connections += 1
        self._reload()
        client = Conn(sock)
        try:
            await self._client_loop(client)
        except Exception as e:  # one bad connection never disturbs the others
            log.warning("connection ended by an internal error: %s", type(e).__name__)
            log.debug("internal error", exc_info=True)
        finally:
            with anyio.CancelScope(shield=True):
                await client.aclose()

    async def read_request(self, conn: Conn, *, count_refused: bool = False,
                           fields: FieldMemo | None = None) -> RequestHead | None:
        """The next request on `conn`; None when the connection is done (a bad or late head is
        answered first: 408, or the parser's status)."""
        t = self.timeouts
        try:
            head = await conn.read_head(idle=t.idle, head=t.head)
        except TimeoutError:
            await self.send_error(conn, 408, "the request head did not arrive in time", close=True)
            return None
        except ProtocolError as e:
            await self.send_error(conn, e.status, e.message, close=True)
            return None
        if head is None:
            return None
        try:
            return parse_request_head(head, fields)
        except ProtocolError as e:
            if count_refused:
                self.stats.refused += 1
            await self.send_error(conn, e.status, e.message, close=True)
            return None

    async def _client_loop(self, client: Conn) -> None:
        memo: PlainMemo | None = None   # plain HTTP's last SSRF decision etc. on this connection
        fields = FieldMemo()            # the last request's fields and their parse
        while True:
            req = await self.read_request(client, count_refused=True, fields=fields)
            if req is None:
                return
            if req.method == b"CONNECT":
                if not await self._connect(client, req):
                    return
            elif req.target.startswith(b"/") or req.target == b"*":
                if not await self._self_request(client, req):
                    return
            elif b"://" in req.target[:10]:
                if memo is None:
                    memo = PlainMemo()
                if not await self._absolute(client, req, memo):
                    return
            else:
                await self.send_error(client, 400, "malformed request target", close=True)
                return

    def _client_name(self, req: RequestHead, memo: PlainMemo | None = None) -> str | None:
        """The name of the client whose token the request carries ("-" for an open proxy), or None.

        With `memo`: the same fields (the same headers list, see FieldMemo) checked against the
        same token set as the connection's last request that passed get the same answer."""
        auth = self.settings.auth
        if auth is None:
            return "-"
        if memo is None:
            return auth.check_header(req.get(b"proxy-authorization"))
        tokens = auth.current()
        if tokens is None:
            return None
        seen = memo.who
        if seen is not None and seen[0] is req.headers and seen[1] is tokens:
            return seen[2]
        who = tokens.check_header(req.get(b"proxy-authorization"))
        memo.who = (req.headers, tokens, who) if who is not None else None
        return who

    async def _refuse_auth(self, client: Conn, req: RequestHead, host: str) -> bool:
        self.stats.refused += 1
        await self.send_error(client, 407, "proxy authentication required (use the token from "
                              "`cordon env` in HTTPS_PROXY)", close=not _bodyless(req),
                              extra=[(b"Proxy-Authenticate", CHALLENGE)])
        self.log_exchange(None, host, req, 407, 0, time.monotonic())
        return _bodyless(req)

    async def _connect(self, client: Conn, req: RequestHead) -> bool:
        t0 = time.monotonic()
        try:
            host, port = split_host_port(req.target.decode("latin-1"), 443)
        except ValueError:
            await self.send_error(client, 400, "CONNECT needs host:port", close=True)
            return False
        who = self._client_name(req)
        if who is None:
            return await self._refuse_auth(client, req, host)
        route = self.table.match(host)
        if route is None and self.oauth is not None:
            route = self.oauth.learned_route(host)
        if route is not None:
            await client.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await serve_mitm(self, client, route, host, port, who)
            return False
        if normalize_host(host) in self.answered:   # denied, but refused inside TLS (cordon.proxy.refuse)
            await client.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await serve_refusal(self, client, normalize_host(host), who)
            return False
        # unmatched: policy, SSRF guard, then an opaque tunnel to the validated address
        try:
            addrs = await self._vet_unmatched(host, port)
            upstream = await connect_pinned(host, addrs, port, self.timeouts.connect)
        except ProtocolError as e:
            if e.status == 403:
                self.stats.refused += 1
            else:
                self.stats.tunnel_errors += 1
            await self.send_error(client, e.status, e.message, close=True)
            self.log_exchange(None, host, req, e.status, 0, t0, e.message, who)
            return False
        self.stats.tunnels += 1
        up = Conn(upstream)
        try:
            await client.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
            # copied by the loop's callbacks (fastio.pipe), not splice(2) through a pipe, which was
            # slower on uvloop and no faster on asyncio's loop (docs/performance.md)
            if can_pipe(client.stream, upstream):
                buffered, client.buf = bytes(client.buf), bytearray()
                _sent, received = await pipe(client.stream, upstream, buffered)
            else:
                _sent, received = await splice(client, up)
        finally:
            await up.aclose()
        self.log_exchange(None, host, req, 200, received, t0, who=who)
        return False

    async def _vet_unmatched(self, host: str, port: int, memo: GuardMemo | None = None) -> list[str]:
        """Policy (`unmatched = "deny"` + allow_hosts), then the SSRF guard: 403 or addresses."""
        pol = self.policy
        if pol.unmatched == "deny" and normalize_host(host) not in self.allow_hosts:
            raise ProtocolError(f"{host} is not an allowed host ([policy] unmatched = \"deny\")", 403)
        if memo is not None:
            return await memo.addresses(host, port, self.exemptions, self.timeouts.connect)
        return await guarded_addresses(host, port, self.exemptions, self.timeouts.connect)

    async def _absolute(self, client: Conn, req: RequestHead, memo: PlainMemo | None = None) -> bool:
        """`GET http://host/path` (absolute-form): route hosts never get a cleartext credential."""
        t0 = time.monotonic()
        scheme, _, rest = req.target.partition(b"://")
        scheme = scheme.lower()
        authority, slash, tail = rest.partition(b"/")
        if b"?" in authority:
            authority, _, q = authority.partition(b"?")
            tail, slash = b"?" + q, b"/"
        # the same scheme and authority as this connection's last request: the same answers
        seen = memo.authority if memo is not None else None
        if seen is not None and seen[0] == scheme and seen[1] == authority and seen[2] is self.table:
            host, port, route, name = seen[3], seen[4], seen[5], seen[6]
        else:
            if scheme not in (b"http", b"https") or not authority or b"@" in authority:
                await self.send_error(client, 400, "malformed absolute-form request target", close=True)
                return False
            default = 443 if scheme == b"https" else 80
            try:
                host, port = split_host_port(authority.decode("latin-1"), default)
            except ValueError:
                await self.send_error(client, 400, "malformed absolute-form request target", close=True)
                return False
            route = self.table.match(host)
            name = normalize_host(host)
            if memo is not None:
                memo.authority = (scheme, authority, self.table, host, port, route, name)
        who = self._client_name(req, memo)
        if who is None:
            return await self._refuse_auth(client, req, host)
        path = (slash + tail) if slash else b"/"
        if route is not None:
            # the upstream leg is TLS unless the route explicitly chose `scheme = "http"`
            up_port = 443 if (route.upstream.scheme == "https" and scheme == b"http" and port == 80) else port
            fixed = RequestHead(method=req.method, target=path, version=req.version, headers=req.headers)
            return await route_request(self, client, fixed, route, host, up_port, None, absolute=True,
                                       who=who)
        self.stats.plain += 1
        derived = memo.derived if memo is not None else None
        if derived is not None and derived[0] is req.headers and derived[1] == req.version:
            framing, upgrade, forwarded, expect, keep = derived[2:]
        else:
            upgrade = upgrade_token(req)
            framing = None
        try:
            if framing is None:
                framing = request_framing(req)
                forwarded = [(k, v) for k, v in strip_hop_by_hop(req.headers) if k.lower() != b"host"]
                expect = b"100-continue" in tokens(req.headers, b"expect")
                keep = req.keep_alive
                if memo is not None:
                    memo.derived = (req.headers, req.version, framing, upgrade, forwarded, expect, keep)
            addrs = await self._vet_unmatched(host, port, memo)
            headers = [(b"Host", authority), *forwarded]
            target = memo.target if memo is not None else None
            if target is None or target.connect_host != addrs[0] or target.port != port \
                    or target.tls != (scheme == b"https") or target.host != name:
                target = self._plain_target(name, port, addrs[0], scheme == b"https")
                if memo is not None:
                    memo.target = target   # one object per connection: the pool's lookups hit on identity
            plan = Plan(target=target, method=req.method, path=path, headers=headers, upgrade=upgrade,
                        framing=framing, expect=expect, keep_alive=keep)
            result = await self.forwarder.exchange(client, req, plan)
        except ProtocolError as e:
            if e.status == 403:
                self.stats.refused += 1
            status = 426 if upgrade and e.status in (400, 408, 431, 501, 502, 504, 505) else e.status
            await self.send_error(client, status, e.message, close=True)
            self.log_exchange(None, host, req, status, 0, t0, e.message, who)
            return False
        self.log_exchange(None, host, req, result.status, result.bytes_down, t0, result.error, who)
        return result.keep_alive

    async def _self_request(self, client: Conn, req: RequestHead) -> bool:
        """Origin-form requests to the proxy itself: /health, /status, else 400."""
        path = req.target.split(b"?", 1)[0]
        keep = _bodyless(req) and req.keep_alive
        if path == b"/health" and req.method in (b"GET", b"HEAD"):
            body = json.dumps({"status": "ok", "version": self.settings.version,
                               "uptime": round(self.stats.uptime, 3),
                               "routes": len(self.table), "loop": running_loop_name(),
                               **({"config": self.settings.config.health()} if self.settings.config else {}),
                               }).encode() + b"\n"
            await self._send_json(client, req, 200, body, keep)
            return keep
        if path == b"/status" and req.method in (b"GET", b"HEAD"):
            auth = self.settings.auth
            if auth is not None and auth.check_header(req.get(b"proxy-authorization")) is None \
                    and auth.check_header(req.get(b"authorization"), bearer=True) is None:
                self.stats.refused += 1
                await self.send_error(client, 401, "/status needs the proxy token "
                                      "(Authorization: Bearer <token>)", close=not keep,
                                      extra=[(b"WWW-Authenticate", b'Bearer realm="cordon"')])
                return keep
            snap = self.stats.snapshot(version=self.settings.version,
                                       route_names=[r.name for r in self.routes])
            await self._send_json(client, req, 200, json.dumps(snap).encode() + b"\n", keep)
            return keep
        await self.send_error(client, 400, "this is cordon's proxy: send CONNECT or absolute-form requests "
                              "(GET /health answers health checks)", close=True)
        return False

    async def _send_json(self, client: Conn, req: RequestHead, status: int, body: bytes, keep: bool) -> None:
        data = simple_response(status, body, content_type=b"application/json", close=not keep)
        if req.method == b"HEAD":
            data = data[: len(data) - len(body)]
        await client.send(data)


LINGER_SECONDS = 2.0
LINGER_QUIET = 0.25
LINGER_BYTES = 4 << 20


async def linger(conn: Conn) -> None:
    """Read and drop what the client is still sending before we close (RFC 9112 §9.6).

    Closing a socket with unread input makes the kernel send RST, which can
    destroy the error answer we just wrote before the client reads it. Stops
    after 2 s, 0.25 s of silence, 4 MiB, or EOF.
    """
    conn.buf.clear()
    taken = 0
    with anyio.move_on_after(LINGER_SECONDS):
        try:
            while taken < LINGER_BYTES:
                with anyio.fail_after(LINGER_QUIET):
                    taken += len(await conn.stream.receive(1 << 16))
        except (TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError,
                OSError, ssl.SSLError):
            pass


def _bodyless(req: RequestHead) -> bool:
    try:
        return request_framing(req).kind == "none"
    except ProtocolError:
        return False


