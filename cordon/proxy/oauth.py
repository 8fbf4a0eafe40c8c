"""Subscription logins in the proxy: the real access token in, refreshes and revokes answered here.

The agent holds placeholder tokens. On a login's API route (`type = "login"`,
`role = "api"`) the proxy injects the real access token; on its token route
(`role = "auth"`) an agent's refresh gets a 200 with its placeholders again and
a revoke a local 200, so neither reaches the provider. The real tokens are
refreshed here only: before they expire, and once when the upstream answers
401 (only if the rejected token is still the current one: several 401s in
flight must not spend the rotating refresh token twice). One refresh at a time
per login in this process (an anyio lock) and across processes (the store's
file lock); the rotated tokens are saved before anything uses them, and other
proxies reload on the secrets generation change. Codex's accounts/check answer
names workspace origins, which get the token too. Never logs a token.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import anyio
import anyio.to_thread

from cordon import __version__
from cordon.core import oauth
from cordon.core.errors import ProtocolError
from cordon.core.http1 import (
    ChunkedDecoder,
    Headers,
    RequestHead,
    parse_response_head,
    request_framing,
    response_framing,
    serialize_request_head,
    serialize_response_head,
    simple_response,
)
from cordon.core.inject import rewrite_headers
from cordon.core.model import Route, Secret, UpstreamSpec
from cordon.core.oauth import Login
from cordon.core.routes import normalize_host
from cordon.proxy.conn import RECV, Conn
from cordon.proxy.pool import Target, open_connection
from cordon.proxy.tls import ClientContexts

log = logging.getLogger("cordon.proxy")

LOGIN_PREFETCH = 8 << 20      # request bodies up to this size are kept, so a 401 can be retried once
AGENT_CALL_MAX = 64 << 10     # an agent's refresh/revoke body
FETCH_MAX = 1 << 20           # cordon's own token and accounts/check answers
LOCK_WAIT = 60.0              # seconds to wait for another process's refresh of the same login
RETRY_AFTER_FAILURE = 30.0    # seconds before a failed refresh is tried again
ACCOUNTS_CHECK = b"/backend-api/wham/accounts/check"


class LoginBackend(Protocol):
    """Where logins live (blocking; `cordon.store.logins.LoginStore` in production)."""

    def load(self, name: str) -> Login | None: ...
    def save(self, login: Login) -> None: ...
    def try_lock(self, name: str) -> int | None: ...
    def unlock(self, fd: int) -> None: ...


@dataclass(frozen=True)
class Fetched:
    status: int
    reason: bytes
    headers: Headers
    body: bytes


class Broker:
    """The proxy's side of every subscription login (see module docstring)."""

    def __init__(self, backend: LoginBackend, routes: Sequence[Route], contexts: ClientContexts,
                 clock: Callable[[], float] = time.time) -> None:
        self.backend = backend
        self._contexts = contexts
        self.clock = clock
        self.routes = [r for r in routes if r.auth.type == "login"]
        self._cache: dict[str, Login] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self._failed_until: dict[str, float] = {}
        self._learned: dict[str, Route] = {}
        self.refreshes = 0            # real refreshes this proxy made (stats, tests)

    def set_routes(self, routes: Sequence[Route]) -> None:
        """A reloaded configuration's login routes (`cordon start` re-reads cordon.toml)."""
        self.routes = [r for r in routes if r.auth.type == "login"]

    # -- the login --------------------------------------------------------------------
    def invalidate(self) -> None:
        """Another process saved a login (generation change): reload on next use."""
        self._cache.clear()

    async def _load(self, name: str) -> Login:
        login = await anyio.to_thread.run_sync(self.backend.load, name)
        if login is None:
            raise ProtocolError(f"login '{name}' is not stored in cordon; run `cordon login {name}`", 502)
        self._cache[name] = login
        return login

    async def login(self, name: str) -> Login:
        return self._cache.get(name) or await self._load(name)

    async def access(self, route: Route) -> Secret:
        """The current real access token, refreshed first when it is about to expire."""
        name = route.auth.login or ""
        login = await self.login(name)
        if login.expiring(self.clock()):
            login = await self.refresh(name, login.access_token)
        return Secret(login.access_token)

    async def refresh(self, name: str, rejected: str) -> Login:
        """Refresh the real tokens unless `rejected` is no longer the current access token."""
        lock = self._locks.setdefault(name, anyio.Lock())
        async with lock:
            cur = await self._load(name)
            if cur.access_token != rejected and not cur.expiring(self.clock()):
                return cur
            if self._failed_until.get(name, 0.0) > self.clock():
                return cur                        # a refresh just failed: not again at once
            fd = await self._lock_file(name)
            try:
                cur = await self._load(name)      # another process may have refreshed while we waited
                if cur.access_token != rejected and not cur.expiring(self.clock()):
                    return cur
                if not cur.expiring(self.clock()) and cur.refreshed_within(self.clock(), oauth.FRESH_FOR):
                    # rejected although just issued: another refresh would not help, only spend tokens
                    log.warning("login %s: the provider rejects an access token issued moments ago; "
                                "not refreshing again", name)
                    return cur
                # shielded: a client leaving must not cancel a refresh between the provider's
                # rotation and the save (the old refresh token is spent by then)
                new: Login | None = None
                with anyio.CancelScope(shield=True):
                    new = await self._exchange(cur)
                    if new is not None:
                        await anyio.to_thread.run_sync(self.backend.save, new)   # stored before any use
                if new is None:
                    self._failed_until[name] = self.clock() + RETRY_AFTER_FAILURE
                    return cur
                self._cache[name] = new
                self._failed_until.pop(name, None)
                self.refreshes += 1
                log.info("login %s refreshed (access token valid until %s)", name,
                         new.summary()["expires_at"] or "unknown")
                return new
            finally:
                self.backend.unlock(fd)          # two system calls; never skipped by a cancellation

    async def _lock_file(self, name: str) -> int:
        deadline = self.clock() + LOCK_WAIT
        while True:
            fd = self.backend.try_lock(name)    # non-blocking (LOCK_NB): never holds up the loop
            if fd is not None:
                return fd
            if self.clock() > deadline:
                raise ProtocolError(f"login '{name}': another cordon process holds the refresh lock", 504)
            await anyio.sleep(0.05)

    def _token_target(self, name: str) -> Target:
        p = oauth.provider(name)
        for r in self.routes:
            if r.auth.login == name and r.auth.role == "auth":
                return _target(r, 443)
        return Target(host=p.auth_host, port=443, connect_host=p.auth_host, connect_port=443)

    async def _exchange(self, login: Login) -> Login | None:
        p = oauth.provider(login.provider)
        target = self._token_target(login.provider)
        body = oauth.refresh_request_body(login)
        headers: Headers = [(b"Host", target.host.encode("idna")), (b"Content-Type", b"application/json"),
                            (b"Accept", b"application/json"), (b"User-Agent", f"cordon/{__version__}".encode())]
        try:
            got = await fetch(self._contexts, target, b"POST", p.token_path.encode(), headers, body)
        except (ProtocolError, OSError, TimeoutError, anyio.BrokenResourceError, anyio.EndOfStream) as e:
            log.warning("login %s: refreshing the tokens failed: %s", login.provider, _why(e))
            return None
        if got.status != 200:
            log.warning("login %s: the token endpoint refused the refresh: %d (%s)", login.provider, got.status,
                        oauth.refresh_error_code(got.body))
            return None
        try:
            answer = json.loads(got.body)
            return oauth.apply_refresh(login, answer if isinstance(answer, dict) else {}, self.clock())
        except (ValueError, oauth.LoginFormatError) as e:
            log.warning("login %s: unusable answer from the token endpoint (%s)", login.provider, type(e).__name__)
            return None

    # -- requests -----------------------------------------------------------------------
    def learned_route(self, host: str) -> Route | None:
        return self._learned.get(normalize_host(host))

    async def agent_call(self, client: Conn, req: RequestHead, route: Route, path: bytes,
                         timeout: float) -> bool | None:
        """An agent's refresh or revoke on a token route, answered here; None: not one (forward it)."""
        p = oauth.provider(route.auth.login or "")
        if req.method != b"POST" or path.split(b"?", 1)[0] not in (p.token_path.encode(), p.revoke_path.encode()):
            return None
        framing = request_framing(req)
        if framing.kind == "length" and framing.length <= AGENT_CALL_MAX:
            raw = body = await _read_exact(client, framing.length, timeout)
        elif framing.kind == "chunked":
            raw, body = await _read_chunked(client, timeout)
        else:
            return None
        kind = oauth.classify(p, req.method, path, body)
        if kind is None:
            client.unread(raw)           # e.g. a new login's authorization_code exchange: forwarded as it came
            return None
        answer = oauth.local_refresh_answer(await self.login(p.name)) if kind == "refresh" else b"{}"
        log.info("login %s: the agent's %s call was answered by cordon (not forwarded)", p.name, kind)
        keep = req.keep_alive
        await client.send(simple_response(200, answer, content_type=b"application/json", close=not keep))
        return keep

    def retry_hook(self, route: Route, headers: Headers, path: bytes,
                   sent: Secret) -> Callable[[], Awaitable[Headers | None]]:
        """For the forwarder: after a 401, refresh once and give the headers to retry with (None: pass it on)."""
        name = route.auth.login or ""

        async def again() -> Headers | None:
            new = await self.refresh(name, sent.reveal())
            if new.access_token == sent.reveal():
                return None
            out, _ = rewrite_headers(headers, route, path, Secret(new.access_token))
            return out
        return again

    async def accounts_check(self, client: Conn, req: RequestHead, route: Route, target: Target,
                             path: bytes, headers: Headers, secret: Secret) -> tuple[int, int, bool]:
        """Codex's workspace discovery, relayed whole so the origins it names can be learned."""
        hdrs = [(k, v) for k, v in headers if k.lower() != b"accept-encoding"] + [(b"Accept-Encoding", b"identity")]
        got = await fetch(self._contexts, target, req.method, path, hdrs, b"")
        if got.status == 401:
            new = await self.retry_hook(route, hdrs, path, secret)()
            if new is not None:
                got = await fetch(self._contexts, target, req.method, path, new, b"")
        if got.status == 200:
            await self._learn(route, oauth.workspace_origins(got.body))
        keep = req.keep_alive
        out = [(k, v) for k, v in got.headers if k.lower() not in (
            b"content-length", b"transfer-encoding", b"connection", b"keep-alive")]
        out.append((b"Content-Length", b"%d" % len(got.body)))
        if not keep:
            out.append((b"Connection", b"close"))
        body = got.body.replace(secret.reveal().encode(), route.auth.placeholder.encode())
        await client.send(serialize_response_head(got.status, got.reason, out) + body)
        return got.status, len(body), keep

    async def _learn(self, api: Route, hosts: Sequence[str]) -> None:
        for h in hosts:
            if h == api.host or h in self._learned or any(r.host == h for r in self.routes):
                continue
            # the session CA vouches only for the route hosts and the names under them
            if not any(h == r.host or h.endswith("." + r.host) for r in self.routes):
                log.info("login %s: workspace origin %s is outside this session's CA; it gets the token "
                         "from the next session on", api.auth.login, h)
                continue
            self._learned[h] = replace(api, name=f"{api.name}@{h}", host=h,
                                       upstream=api.upstream if api.upstream.address else UpstreamSpec())
            log.info("login %s: workspace origin %s gets the access token too", api.auth.login, h)
        if hosts:
            await self._remember_origins(api.auth.login or "", hosts)

    async def _remember_origins(self, name: str, hosts: Sequence[str]) -> None:
        login = self._cache.get(name)
        p = oauth.provider(name)
        new = tuple(h for h in hosts if h != p.api_host and h not in (login.origins if login else ()))
        if login is None or not new:
            return
        try:
            fd = await self._lock_file(name)    # every save of a login happens under its lock
            try:
                current = await self._load(name)
                updated = replace(current, origins=(*current.origins, *new))
                await anyio.to_thread.run_sync(self.backend.save, updated)
                self._cache[name] = updated
            finally:
                self.backend.unlock(fd)
        except Exception as e:  # remembering is a convenience: the session goes on
            log.warning("login %s: could not store the workspace origins (%s)", name, type(e).__name__)


def _target(route: Route, port: int) -> Target:
    from cordon.core.routes import split_host_port
    up = route.upstream
    tls = up.scheme != "http"
    ch, cp = split_host_port(up.address, 443 if tls else 80) if up.address else (route.host, port)
    return Target(host=route.host, port=port, connect_host=ch, connect_port=cp, tls=tls, ca_file=up.ca_file)


def _why(e: BaseException) -> str:
    return e.message if isinstance(e, ProtocolError) else type(e).__name__


async def _read_exact(client: Conn, n: int, timeout: float) -> bytes:
    parts: list[bytes] = []
    left = n
    try:
        while left:
            data = await client.receive_within(min(left, RECV), timeout)
            parts.append(data)
            left -= len(data)
    except TimeoutError:
        raise ProtocolError("timed out reading the request body", 408)
    except (anyio.BrokenResourceError, anyio.EndOfStream, OSError):
        raise ProtocolError("the client closed the connection in the middle of the request body", 400)
    return b"".join(parts)


async def _read_chunked(client: Conn, timeout: float) -> tuple[bytes, bytes]:
    """A chunked body up to AGENT_CALL_MAX: (the bytes as sent, the decoded body)."""
    dec = ChunkedDecoder(400)
    raw = bytearray()
    body = bytearray()
    try:
        while not dec.done:
            data = await client.receive_within(RECV, timeout)
            raw += data
            body += dec.feed(data)
            if len(raw) > AGENT_CALL_MAX:
                raise ProtocolError("request body too large for a token call", 413)
    except TimeoutError:
        raise ProtocolError("timed out reading the request body", 408)
    except (anyio.BrokenResourceError, anyio.EndOfStream, OSError):
        raise ProtocolError("the client closed the connection in the middle of the request body", 400)
    if dec.unused:
        client.unread(dec.unused)
        del raw[len(raw) - len(dec.unused):]
    return bytes(raw), bytes(body)


async def fetch(contexts: ClientContexts, target: Target, method: bytes, path: bytes, headers: Headers, body: bytes,
                timeout: float = 30.0) -> Fetched:
    """One buffered exchange on a fresh connection (cordon's own calls; answers up to FETCH_MAX)."""
    hdrs = [(k, v) for k, v in headers if k.lower() not in (b"content-length", b"connection")]
    if body or method in (b"POST", b"PUT", b"PATCH"):
        hdrs.append((b"Content-Length", b"%d" % len(body)))
    hdrs.append((b"Connection", b"close"))
    with anyio.fail_after(timeout):
        up = await open_connection(target, contexts, timeout)
        try:
            await up.send(serialize_request_head(method, path, hdrs) + body)
            raw = await up.read_head(idle=timeout, head=timeout, status_on_eof=502, status_too_large=502,
                                     idle_is_timeout=True)
            if raw is None:
                raise ProtocolError(f"upstream {target.describe()} closed the connection without answering", 502)
            resp = parse_response_head(raw)
            rf = response_framing(method, resp)
            data = bytearray()
            if rf.kind == "length":
                while len(data) < rf.length:
                    data += await up.receive(min(RECV, rf.length - len(data)))
            elif rf.kind == "chunked":
                dec = ChunkedDecoder(502)
                while not dec.done:
                    data += dec.feed(await up.receive(RECV))
                    if len(data) > FETCH_MAX:
                        raise ProtocolError("answer too large", 502)
            elif rf.kind == "close":
                try:
                    while len(data) <= FETCH_MAX:
                        data += await up.receive(RECV)
                except anyio.EndOfStream:
                    pass
            if len(data) > FETCH_MAX:
                raise ProtocolError("answer too large", 502)
            return Fetched(resp.status, resp.reason, list(resp.headers), bytes(data))
        finally:
            await up.aclose()
