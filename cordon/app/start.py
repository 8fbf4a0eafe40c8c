"""`cordon start`: the long-lived proxy of one scope, from preflight to shutdown.

Order (Cordon's): with the CA on disk, the child that signs the route hosts'
leaves started (cordon.app.leafsign: the proxy does not load cryptography for
them) -> every route's secret checked, all failures reported together -> CA
(scope state dir or [tls] paths) checked or created, and bundle -> bind
127.0.0.1:listen -> `on_ready(port)` -> in a worker thread, the child's leaves
taken (a connection for one of those hosts that comes first waits for them, it
does not fail), a second later the upstream verifying contexts made -> serve
until SIGINT/SIGTERM; SIGHUP drops cached secrets.
While it runs, `proxy.json` in the state dir says where (cordon.store.runrecord).
Proxy tokens come from tokens.toml and are re-read when it changes. Nothing
here prints: the CLI renders what the callbacks report.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import logging
import os
import signal
import ssl
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, cast

from cordon import __version__
from cordon.app.hardening import set_non_dumpable
from cordon.app.scope import open_ca
from cordon.core.errors import ConfigError, CordonError, SecretError
from cordon.core.model import Resolver
from cordon.store.runrecord import live_run_record
from cordon.store.scope import Scope

if TYPE_CHECKING:
    from cordon.app.leafsign import Signing
    from cordon.core.certs import CA
    from cordon.proxy.auth import ProxyAuth
    from cordon.proxy.secretcache import SecretCache
    from cordon.proxy.tls import ClientContexts, LeafIssuer
    from cordon.store.logins import LoginStore
    from cordon.store.tokens import TokenWatcher

    class WatchedAuth(ProxyAuth):
        def watch(self) -> bool: ...
        def unwatch(self) -> None: ...

log = logging.getLogger("cordon.start")


class ProxyRun:
    """One `cordon start` of a scope: `preflight()`, then `serve(on_ready)`."""

    def __init__(self, scope: Scope, env: Mapping[str, str]) -> None:
        self.scope = scope
        self.env = env
        self._secret_values: list[str] = []
        self._watcher: TokenWatcher | None = None
        self._ca: tuple[bytes, Callable[[], CA]] | None = None   # its PEM, and a loader (cryptography)
        self._resolver: SecretCache | None = None
        self._signing: Signing | None = None   # the child signing the route hosts' leaves

    def sensitive_values(self) -> list[str]:
        """Every secret and proxy token this run holds (for the log redaction filter only)."""
        tokens = list(self._watcher.values()) if self._watcher is not None else []
        return [*self._secret_values, *tokens]

    def preflight(self, report: Callable[[SecretError], None]) -> None:
        """Refuse a second proxy for the scope, resolve every secret (each failure goes to
        `report`, then one SecretError), then check or create the CA and the tokens file.
        With the CA on disk already, the child that signs the route hosts' leaves is started
        first, to run beside all that (`close()` stops it if `serve` does not follow)."""
        try:
            self._preflight(report)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the signing child if nobody took its answer (a failed preflight, the end of serve)."""
        if self._signing is not None:
            self._signing.close()
            self._signing = None

    def _preflight(self, report: Callable[[SecretError], None]) -> None:
        set_non_dumpable()   # before any secret or token is in memory (the service runs this too)
        scope = self.scope
        from cordon.store.approvals import require_approved
        require_approved(scope.cordon_home, scope.config)   # a project file only as the user approved it
        rec = live_run_record(scope.state_dir)
        if rec is not None:
            raise CordonError(f"cordon is already running for this scope (pid {rec.pid}, "
                              f"127.0.0.1:{rec.port})",
                              "use that one (`cordon env` points clients at it), or stop it first")
        self._signing = self._start_signing()
        from cordon.proxy.secretcache import SecretCache
        from cordon.store.secrets import SecretResolver
        # the run's one cache: preflight fills it, the proxy serves from it; values are dropped
        # when the generation file changes (`cordon secret set|delete` bump it) and on SIGHUP
        self._resolver = SecretCache(SecretResolver(self.env, op_path=scope.config.op_path),
                                     scope.secrets_gen_file)
        self._secret_values += check_secrets(scope, self._resolver, report)
        from cordon.store.upstreamca import check_ca_files
        check_ca_files(scope.config.routes, scope.config_path)
        if scope.config.routes and not scope.config.tls.enabled:
            n = len(scope.config.routes)
            raise ConfigError(f"{scope.config_path}: [tls] enabled = false, so cordon cannot intercept "
                              f"its {n} route{'s' if n != 1 else ''}",
                              "remove `enabled = false` from [tls] (or remove the routes)")
        self._ca = open_ca(scope, self.env) if scope.config.tls.enabled else None
        if self._signing is not None and self._ca is not None:
            self._signing.ca_pem = self._ca[0]   # the certificate the child's CA must be
        from cordon.store.tokens import TokenStore, TokenWatcher
        store = TokenStore.for_state_dir(scope.state_dir)
        store.ensure_default()
        self._watcher = TokenWatcher(store.path)

    def serve(self, on_ready: Callable[[int], None]) -> int:
        """Bind, call `on_ready(port)` once connections are accepted, serve until a stop signal.
        Returns the exit status: 130 after SIGINT, 0 after SIGTERM."""
        import anyio

        from cordon.proxy.eventloop import backend_options
        try:
            return int(anyio.run(self._serve, on_ready, backend_options=backend_options(self.env)))
        finally:
            self.close()

    def _start_signing(self) -> Signing | None:
        scope = self.scope
        hosts = _warm_hosts(scope)
        if not (scope.config.tls.enabled and hosts and scope.ca_cert.is_file() and scope.ca_key.is_file()):
            return None   # no CA yet: it is created here, and signs here
        from cordon.app.leafsign import Signing
        return Signing(scope.ca_cert, scope.ca_key, hosts)

    async def _serve(self, on_ready: Callable[[int], None]) -> int:
        watcher = self._watcher
        assert watcher is not None and self._resolver is not None, "preflight() first"
        auth = token_auth(watcher)
        auth.watch()
        try:
            return await self._serve_with(on_ready, auth)
        finally:
            auth.unwatch()

    async def _serve_with(self, on_ready: Callable[[int], None], auth: ProxyAuth) -> int:
        import anyio

        from cordon.app.liveconfig import LiveConfig
        from cordon.proxy.server import ProxySettings, serve
        from cordon.proxy.tls import ClientContexts, LeafIssuer

        scope, watcher, cache = self.scope, self._watcher, self._resolver
        assert watcher is not None and cache is not None
        issuer = None
        if self._ca is not None:
            signing = self._signing
            issuer = LeafIssuer(self._ca[1], signer=signing.result if signing is not None else None,
                                ahead=signing.hosts if signing is not None else ())
        contexts = ClientContexts()
        settings = ProxySettings(routes=tuple(scope.config.routes), policy=scope.config.policy,
                                 port=scope.config.listen, contexts=contexts,
                                 issuer=issuer if issuer is not None else _NoIssuer(),
                                 resolver=cache, auth=auth,
                                 secrets_gen_file=scope.secrets_gen_file, logins=self._logins(),
                                 config=LiveConfig(scope.config, scope.config_file, scope.name,
                                                   scope.cordon_home))
        stopped_by: int | None = None
        bind_error: OSError | None = None
        # handlers first: a SIGTERM that arrives right after "ready" must stop us cleanly
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            async with anyio.create_task_group() as tg:
                try:
                    port = await tg.start(serve, settings)
                except OSError as e:
                    bind_error = e
                if bind_error is None:
                    record = _write_record(scope, port)
                    try:
                        on_ready(port)
                        if issuer is not None:
                            tg.start_soon(_warm, issuer, contexts, scope)
                        async for signum in signals:
                            if signum == signal.SIGHUP:
                                cache.invalidate()
                                log.info("SIGHUP: cached secrets dropped; the next request re-resolves them")
                                continue
                            stopped_by = signum
                            log.info("stopping on %s", signal.Signals(signum).name)
                            tg.cancel_scope.cancel()
                            break
                    finally:
                        _remove_record(record)
        if bind_error is not None:
            raise _bind_failure(scope, bind_error)
        return 130 if stopped_by == signal.SIGINT else 0


    def _logins(self) -> LoginStore | None:
        """The login store, when a route injects a subscription login."""
        if not any(r.auth.type == "login" for r in self.scope.config.routes):
            return None
        from cordon.app.logins import proxy_login_store
        from cordon.store.paths import Paths
        return proxy_login_store(Paths.from_env(self.env), self.env, self._secret_values.append)


WARM_HOSTS = 16   # leaves signed right after ready; other hosts get theirs on first use


def _warm_hosts(scope: Scope) -> list[str]:
    """The routes' exact host names (not `*.suffix` patterns), first ones first."""
    from cordon.core.routes import normalize_host, wildcard_suffix
    hosts = [normalize_host(h) for r in scope.config.routes for h in r.hosts if wildcard_suffix(h) is None]
    return list(dict.fromkeys(hosts))[:WARM_HOSTS]


CONTEXTS_AFTER = 1.0   # s after ready: a client that waited for ready has had its first request served


async def _warm(issuer: LeafIssuer, contexts: ClientContexts, scope: Scope) -> None:
    """After ready, in a worker thread: at once the route hosts' leaves (by a child process;
    if that fails, here, loading the CA); a second later the verifying contexts of the routes'
    TLS upstreams (the system roots take ~25 ms of CPU each, which a request that comes at
    once would otherwise share its CPU with)."""
    import anyio
    import anyio.to_thread

    hosts = _warm_hosts(scope)
    ca_files = list(dict.fromkeys(r.upstream.ca_file for r in scope.config.routes if r.upstream.scheme != "http"))

    def warm_contexts() -> None:
        for ca_file in ca_files:
            try:
                contexts.get(ca_file)
            except (OSError, ssl.SSLError):
                pass   # the first request to that upstream reports it (a 502 naming the file)

    try:
        await anyio.to_thread.run_sync(issuer.warm, hosts, abandon_on_cancel=True)
    except CordonError as e:
        log.error("the CA could not be loaded: %s (intercepted connections fail until it can be)", e.message)
    except Exception as e:   # a leaf that cannot be signed: that host's first connection reports it again
        log.warning("signing the route hosts' certificates ahead failed: %s", e)
    await anyio.sleep(CONTEXTS_AFTER)
    await anyio.to_thread.run_sync(warm_contexts, abandon_on_cancel=True)


def check_secrets(scope: Scope, resolver: Resolver, report: Callable[[SecretError], None]) -> list[str]:
    """Resolve every route's secret; report every failure, then fail. Returns the values
    (for the log redaction filter only)."""
    values: list[str] = []
    failures: list[SecretError] = []
    for route in scope.config.routes:
        try:
            values.append(resolver.resolve(route).reveal())
        except SecretError as e:
            failures.append(e)
    if failures:
        for failure in failures:
            report(failure)
        n = len(scope.config.routes)
        raise SecretError(f"{len(failures)} of {n} route secret{'s' if n != 1 else ''} could not be resolved "
                          "(each is listed above); cordon did not start",
                          "fix each one as its hint says, then run `cordon start` again")
    return values


def token_auth(watcher: TokenWatcher) -> WatchedAuth:
    """A ProxyAuth that follows tokens.toml: `token rotate|revoke` take effect on the next check.

    After `watch()` (from inside the event loop) the file is watched by inotify
    and only re-read when it changed; without a watch every check stats it
    (plain-HTTP clients are checked on every request, not once per connection).
    """
    from cordon.proxy.auth import ProxyAuth
    from cordon.proxy.filewatch import FileWatch

    class _TokenFileAuth(ProxyAuth):
        def __init__(self) -> None:   # no super().__init__: the inner ProxyAuth holds the digests
            self._gen = -1
            self._inner: ProxyAuth | None = None
            self._watch: FileWatch | None = None
            self._stale = True

        def watch(self) -> bool:
            """Watch tokens.toml by inotify from the running loop; False: a stat per check."""
            if self._watch is None:
                self._watch = FileWatch(watcher.path, self._changed, self._changed)
            self._stale = True
            return self._watch.start()

        def unwatch(self) -> None:
            if self._watch is not None:
                self._watch.stop()

        def _changed(self) -> None:
            self._stale = True

        def _current(self) -> ProxyAuth | None:
            w = self._watch
            if self._stale or w is None or not w.active:
                self._stale = False   # before the read: a change meanwhile marks it again
                watcher.reload()
            if watcher.generation != self._gen:
                tokens = watcher.tokens()
                self._inner = ProxyAuth({tok: name for name, tok in tokens.items()}) if tokens else None
                self._gen = watcher.generation
            return self._inner

        def current(self) -> ProxyAuth | None:
            return self._current()

        def check_token(self, token: bytes) -> str | None:
            inner = self._current()
            return inner.check_token(token) if inner else None

        def check_header(self, value: bytes | None, *, bearer: bool = False) -> str | None:
            inner = self._current()
            return inner.check_header(value, bearer=bearer) if inner else None

    return cast("WatchedAuth", _TokenFileAuth())


class _NoIssuer:
    """[tls] enabled = false with no routes: nothing is ever intercepted."""

    def server_context(self, host: str) -> ssl.SSLContext:
        raise CordonError(f"no CA to intercept {host}", "remove `enabled = false` from [tls]")


def _bind_failure(scope: Scope, e: OSError) -> CordonError:
    port = scope.config.listen
    if e.errno == errno.EADDRINUSE:
        rec = live_run_record(scope.state_dir)
        if rec is not None and rec.port == port:
            hint = (f"cordon is already running for this scope (pid {rec.pid}); "
                    "`cordon status` shows it, stop it first")
        else:
            hint = (f"another program holds the port (`ss -ltnp 'sport = :{port}'` names it); "
                    f"stop it, or set a free port with `listen = N` in {scope.config_path}")
        return CordonError(f"127.0.0.1:{port} is already in use", hint)
    return CordonError(f"cannot listen on 127.0.0.1:{port}: {e.strerror or e}",
                       f"pick another port with `listen = N` in {scope.config_path}")


def _write_record(scope: Scope, port: int) -> Path:
    from cordon.store.atomic import atomic_write
    from cordon.store.paths import ensure_private_dir
    ensure_private_dir(scope.state_dir)
    data = {"pid": os.getpid(), "port": port,
            "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "version": __version__, "config_path": str(scope.config_path), "scope": scope.name,
            "state_dir": str(scope.state_dir)}
    atomic_write(scope.run_record, json.dumps(data, indent=2) + "\n", mode=0o600)
    return scope.run_record


def _remove_record(path: Path) -> None:
    """Remove the record if it is still ours (a second start may have replaced it)."""
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass
