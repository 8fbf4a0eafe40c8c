"""`cordon start`: the long-lived proxy of one scope, from preflight to shutdown.

Order (Cordon's): every route's secret checked, all failures reported together
-> CA (scope state dir or [tls] paths) and bundle -> bind 127.0.0.1:listen ->
`on_ready(port)` -> serve until SIGINT/SIGTERM; SIGHUP drops cached secrets.
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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, cast

from cordon import __version__
from cordon.app.hardening import set_non_dumpable
from cordon.app.scope import prepare_ca
from cordon.core.errors import ConfigError, CordonError, SecretError
from cordon.core.model import Resolver
from cordon.store.runrecord import live_run_record
from cordon.store.scope import Scope

if TYPE_CHECKING:
    import ssl

    from cordon.core.certs import CA
    from cordon.proxy.auth import ProxyAuth
    from cordon.proxy.secretcache import SecretCache
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
        self._ca: CA | None = None
        self._resolver: SecretCache | None = None

    def sensitive_values(self) -> list[str]:
        """Every secret and proxy token this run holds (for the log redaction filter only)."""
        tokens = list(self._watcher.values()) if self._watcher is not None else []
        return [*self._secret_values, *tokens]

    def preflight(self, report: Callable[[SecretError], None]) -> None:
        """Refuse a second proxy for the scope, resolve every secret (each failure goes to
        `report`, then one SecretError), then load or create the CA and the tokens file."""
        set_non_dumpable()   # before any secret or token is in memory (the service runs this too)
        scope = self.scope
        from cordon.store.approvals import require_approved
        require_approved(scope.cordon_home, scope.config)   # a project file only as the user approved it
        rec = live_run_record(scope.state_dir)
        if rec is not None:
            raise CordonError(f"cordon is already running for this scope (pid {rec.pid}, "
                              f"127.0.0.1:{rec.port})",
                              "use that one (`cordon env` points clients at it), or stop it first")
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
        self._ca = prepare_ca(scope, self.env) if scope.config.tls.enabled else None
        from cordon.store.tokens import TokenStore, TokenWatcher
        store = TokenStore.for_state_dir(scope.state_dir)
        store.ensure_default()
        self._watcher = TokenWatcher(store.path)

    def serve(self, on_ready: Callable[[int], None]) -> int:
        """Bind, call `on_ready(port)` once connections are accepted, serve until a stop signal.
        Returns the exit status: 130 after SIGINT, 0 after SIGTERM."""
        import anyio

        from cordon.proxy.eventloop import backend_options
        return int(anyio.run(self._serve, on_ready, backend_options=backend_options(self.env)))

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
        from cordon.proxy.tls import LeafIssuer

        scope, watcher, cache = self.scope, self._watcher, self._resolver
        assert watcher is not None and cache is not None
        settings = ProxySettings(routes=tuple(scope.config.routes), policy=scope.config.policy,
                                 port=scope.config.listen,
                                 issuer=LeafIssuer(self._ca) if self._ca is not None else _NoIssuer(),
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
