"""Route hosts: terminate the client's TLS, then forward each request with the real credential.

After `200` to CONNECT, the client's TLS is terminated with a leaf for the
route host (ALPN http/1.1). Per request: Host and SNI must name the CONNECT
host (else 421, nothing forwarded), client credentials are stripped, the
secret injected (path rules permitting) and the exchange forwarded over
verified TLS. Never logs a header value.
"""

from __future__ import annotations

import logging
import ssl
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

import anyio

from cordon.core.errors import ProtocolError, SecretError
from cordon.core.http1 import RequestHead, header_values, request_framing, strip_hop_by_hop
from cordon.core.inject import InjectionError, echo_scrub, rewrite_request, wants_secret
from cordon.core.model import Route, Secret
from cordon.core.routes import normalize_host, server_name_host, split_host_port
from cordon.proxy.conn import Conn
from cordon.proxy.forward import ClientGone, Forwarder, Plan, Timeouts
from cordon.proxy.pool import Target
from cordon.proxy.secretcache import SecretCache
from cordon.proxy.stats import ProxyStats
from cordon.proxy.tls import Issuer, sni_of
from cordon.proxy.transport.fasttls import TLSConn
from cordon.proxy.websocket import upgrade_token

if TYPE_CHECKING:
    from cordon.proxy.oauth import Broker  # imported when a login route is served

log = logging.getLogger("cordon.proxy")


class ProxyCore(Protocol):
    """What the MITM leg uses of the running proxy (`server.Proxy`; declared here so that
    `server` imports `mitm` and never the other way round)."""

    @property
    def issuer(self) -> Issuer: ...
    @property
    def timeouts(self) -> Timeouts: ...
    @property
    def stats(self) -> ProxyStats: ...
    @property
    def secrets(self) -> SecretCache: ...
    @property
    def forwarder(self) -> Forwarder: ...
    @property
    def oauth(self) -> Broker | None: ...

    async def read_request(self, conn: Conn, *, count_refused: bool = False) -> RequestHead | None: ...
    def route_target(self, route: Route, port: int, host: str | None = None) -> Target: ...
    async def send_error(self, conn: Conn, status: int, message: str, *, close: bool,
                         extra: list[tuple[bytes, bytes]] | None = None) -> None: ...
    def log_exchange(self, route: str | None, host: str, req: RequestHead, status: int, nbytes: int,
                     t0: float, error: str | None = None, who: str = "-") -> None: ...


async def serve_mitm(px: ProxyCore, client: Conn, route: Route, host: str, port: int, who: str = "-") -> None:
    """Run the intercepted connection until either side is done."""
    # cached per host; the first call signs a leaf (about a millisecond with EC keys). The
    # leaf names the CONNECT host: a route may cover several names or a `*.suffix` pattern
    waits = getattr(px.issuer, "waits", None)   # LeafIssuer: the CA or a signer still to come
    if waits is not None and waits(normalize_host(host)):
        ctx = await anyio.to_thread.run_sync(px.issuer.server_context, normalize_host(host))
    else:
        ctx = px.issuer.server_context(normalize_host(host))
    try:
        with anyio.fail_after(px.timeouts.handshake):
            tls = await TLSConn.wrap(client.stream, ctx, server_side=True, prefix=bytes(client.buf))
    except (TimeoutError, ssl.SSLError, anyio.BrokenResourceError, anyio.EndOfStream, OSError) as e:
        reason = e.reason if isinstance(e, ssl.SSLError) and e.reason else type(e).__name__
        log.info("TLS handshake with the client for %s failed: %s (does the client trust cordon's CA?)",
                 normalize_host(host), reason)
        px.stats.handshake_failed(normalize_host(host))
        return
    client.buf.clear()
    sni = sni_of(tls.ssl_object)
    # the connection's server name, worked out once (each request is still checked against it)
    sni_host = normalize_host(server_name_host(sni)) if sni is not None else None
    inner = Conn(tls)
    seen = Seen()
    try:
        while True:
            req = await px.read_request(inner)
            if req is None or not await route_request(px, inner, req, route, host, port, sni_host, who=who,
                                                      seen=seen):
                return
    finally:
        await inner.aclose()


class Seen:
    """What one intercepted connection keeps from one request to the next (its route, CONNECT
    host and server name never change): the Host value that passed `check_host` last. The same
    Host bytes pass the same check, so a request gets exactly the answer it would get afresh."""

    __slots__ = ("host",)

    def __init__(self) -> None:
        self.host: bytes | None = None   # the one Host value that passed (None: none yet)


def _origin_path(req: RequestHead, host: str) -> bytes:
    """The origin-form target; an absolute-form target must name `host` (else 421)."""
    t = req.target
    low = t[:8].lower()
    if low.startswith(b"https://") or low.startswith(b"http://"):
        rest = t.split(b"://", 1)[1]
        authority, slash, path = rest.partition(b"/")
        try:
            h, _ = split_host_port(authority.decode("latin-1"), 443)
        except ValueError:
            raise ProtocolError("malformed request target", 400)
        if normalize_host(h) != normalize_host(host):
            raise ProtocolError(f"request names another host than {host}", 421)
        return slash + path if slash else b"/"
    if t.startswith(b"/") or t == b"*":
        return t
    raise ProtocolError("malformed request target", 400)


def check_host(req: RequestHead, host: str, port: int, sni_host: str | None) -> None:
    """421 unless the Host header and the TLS SNI (`sni_host`: its host part, normalized) both
    name the CONNECT host."""
    name = normalize_host(host)
    if sni_host is not None and sni_host != name:
        raise ProtocolError(f"TLS server name does not match the CONNECT host {host}", 421)
    hosts = header_values(req.headers, b"host")
    if len(hosts) > 1:
        # the upstream might believe either copy (RFC 9112 §3.2: 400)
        raise ProtocolError("more than one Host header", 400)
    hv = hosts[0] if hosts else None
    if hv is None:
        if req.version == b"HTTP/1.1":
            raise ProtocolError("missing Host header", 400)
        return
    try:
        h, _ = split_host_port(hv.decode("latin-1"), port)
    except ValueError:
        raise ProtocolError("malformed Host header", 400)
    if normalize_host(h) != name:
        raise ProtocolError(f"Host header does not match the CONNECT host {host}", 421)


async def route_request(px: ProxyCore, client: Conn, req: RequestHead, route: Route, host: str, port: int,
                        sni_host: str | None, *, absolute: bool = False, who: str = "-",
                        seen: Seen | None = None) -> bool:
    """Forward one request for a route host; returns whether the client connection stays open.

    `sni_host`: the host part of the client's TLS server name, normalized (None: no TLS or no SNI).
    `seen`: the intercepted connection's memo (always the same route, host, port and `sni_host`).
    """
    t0 = time.monotonic()
    st = px.stats.route(route.name)
    st.requests += 1
    upgrade = upgrade_token(req)
    status = 0
    nbytes = 0
    try:
        path = _origin_path(req, host)
        if absolute:
            headers = [(k, v) for k, v in strip_hop_by_hop(req.headers) if k.lower() != b"host"]
            # the route's own spelling (no trailing dot or client casing reaches the upstream)
            name = normalize_host(host).encode("idna")
            headers.insert(0, (b"Host", name if port in (80, 443) else b"%s:%d" % (name, port)))
        else:
            hosts = header_values(req.headers, b"host")
            if seen is None or len(hosts) != 1 or hosts[0] != seen.host:
                check_host(req, host, port, sni_host)
                if seen is not None and len(hosts) == 1:
                    seen.host = hosts[0]
            headers = strip_hop_by_hop(req.headers)
        framing = request_framing(req)  # 400 for smuggling-prone framing before any secret lookup
        if route.auth.type == "login":
            secret = None
            if px.oauth is None:
                raise ProtocolError(f"route '{route.name}': this proxy was started without logins", 502)
            if route.auth.role == "auth":
                answered = await px.oauth.agent_call(client, req, route, path, px.timeouts.read)
                if answered is not None:
                    px.log_exchange(route.name, host, req, 200, 0, t0, None, who)
                    return answered
            else:
                px.secrets.poll()
                secret = await px.oauth.access(route)
            inject = secret is not None
        else:
            inject = wants_secret(route, path)
            secret = await _secret(px, route, required=inject)
        base = headers
        try:
            headers, path, _ = rewrite_request(headers, route, path, secret if inject else None)
        except InjectionError as e:
            raise ProtocolError(str(e), 502)
        # every response from a route host is scrubbed, injected or not: the upstream may echo the key anyway
        scrub = echo_scrub(route, secret) if secret is not None else None   # worked out once per secret
        target = px.route_target(route, port, host)
        plan = Plan(target=target, method=req.method, path=path, headers=headers, scrub=scrub, upgrade=upgrade,
                    framing=framing)
        if secret is not None and px.oauth is not None and route.auth.type == "login":
            from cordon.proxy.oauth import ACCOUNTS_CHECK, LOGIN_PREFETCH
            if req.method == b"GET" and path.startswith(ACCOUNTS_CHECK) and not upgrade:
                status, nbytes, keep = await px.oauth.accounts_check(client, req, route, target, path, headers,
                                                                      secret)
                px.log_exchange(route.name, host, req, status, nbytes, t0, None, who)
                return keep
            # a 401 is retried once with refreshed tokens (the body is kept for that, up to LOGIN_PREFETCH)
            plan = replace(plan, prefetch=LOGIN_PREFETCH, on_401=px.oauth.retry_hook(route, base, path, secret))
        result = await px.forwarder.exchange(client, req, plan)
    except ClientGone as e:
        # nobody left to answer; the upstream connection is already closed (the call abandoned)
        st.errors += 1
        px.log_exchange(route.name, host, req, e.status, 0, t0, e.message, who)
        return False
    except ProtocolError as e:
        st.errors += 1
        status = 426 if upgrade and e.status in (400, 408, 431, 501, 502, 504, 505) else e.status
        keep = e.status in (421,) and request_framing_is_empty(req)
        await px.send_error(client, status, e.message, close=not keep)
        px.log_exchange(route.name, host, req, status, 0, t0, e.message, who)
        return keep
    status, nbytes = result.status, result.bytes_down
    st.bytes_up += result.bytes_up
    st.bytes_down += result.bytes_down
    if result.error:
        st.errors += 1
    px.log_exchange(route.name, host, req, status, nbytes, t0, result.error, who)
    return result.keep_alive


async def _secret(px: ProxyCore, route: Route, *, required: bool) -> Secret | None:
    """The route's secret; when it is only wanted for scrubbing, a failed lookup is None, not an error."""
    try:
        return await px.secrets.get(route)
    except SecretError as e:
        if not required:
            return None
        raise ProtocolError(f"{e.message}; {e.hint}" if e.hint else e.message, 502)
    except Exception as e:  # a keyring backend failing in its own way: name it, never its text
        if not required:
            return None
        raise ProtocolError(f"route '{route.name}': the secret lookup failed ({type(e).__name__}); "
                            f"run `cordon secret check`", 502)


def request_framing_is_empty(req: RequestHead) -> bool:
    try:
        return request_framing(req).kind == "none"
    except ProtocolError:
        return False
