"""`cordon start`: the long-lived proxy of a scope, in the foreground.

Order (Cordon's): config -> every route's secret checked, all failures reported
together -> CA (scope state dir or [tls] paths) and bundle -> bind
127.0.0.1:listen -> one "ready" line on stderr. While it runs, `proxy.json` in
the state dir says where (see cordon.cli.proxyscope); SIGINT/SIGTERM stop it,
SIGHUP drops cached secrets. Tokens come from tokens.toml, re-read on change.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import errno
import json
import logging
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from cordon import __version__
from cordon.cli.context import Context, add_scope_args
from cordon.cli.logsetup import LEVELS, Redactor, setup_logging, teardown_logging
from cordon.cli.proxyscope import Scope, load_scope, prepare_ca
from cordon.errors import ConfigError, CordonError, SecretError
from cordon.runrecord import live_run_record

if TYPE_CHECKING:
    import ssl

    from cordon.tokens import TokenWatcher

log = logging.getLogger("cordon.start")


def register(sub: Any, name: str) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        name, help="run the proxy for a scope in the foreground (Ctrl-C stops it)",
        description="Run cordon's proxy on 127.0.0.1:<listen> until SIGINT/SIGTERM. Checks every "
                    "route's secret first and reports all failures together; prints one 'ready' line "
                    "on stderr once it accepts connections. SIGHUP re-resolves secrets.")
    add_scope_args(p)
    p.add_argument("--log-level", choices=tuple(LEVELS), default="info",
                   help="trace|debug|info|warn|error (default info: one line per request)")
    p.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="text lines or JSON lines on stderr (default text)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    scope = load_scope(args, ctx)                                    # 1. config
    rec = live_run_record(scope.state_dir)
    if rec is not None:
        raise CordonError(f"cordon is already running for this scope (pid {rec.pid}, "
                          f"127.0.0.1:{rec.port})",
                          "use that one (`cordon env` points clients at it), or stop it first")
    secret_values: list[str] = []
    watcher: list[TokenWatcher] = []
    redactor = Redactor(lambda: [*secret_values, *(v for w in watcher for v in w.values())])
    handler = setup_logging(args.log_level, args.log_format, ctx.stderr, redactor)
    try:
        from cordon.secrets import SecretResolver
        resolver = SecretResolver(ctx.env, op_path=scope.config.op_path)
        secret_values += check_secrets(scope, resolver, ctx)        # 2. all secrets, all failures
        if scope.config.routes and not scope.config.tls.enabled:
            raise ConfigError(f"{scope.config_path}: [tls] enabled = false, so cordon cannot intercept "
                              f"its {len(scope.config.routes)} route(s)",
                              "remove `enabled = false` from [tls] (or remove the routes)")
        ca = prepare_ca(scope, ctx.env) if scope.config.tls.enabled else None   # 3. CA + bundle
        from cordon.tokens import TokenStore
        from cordon.tokens import TokenWatcher as _TokenWatcher
        store = TokenStore.for_state_dir(scope.state_dir)
        store.ensure_default()
        watcher.append(_TokenWatcher(store.path))
        import anyio

        from cordon.proxy.eventloop import backend_options
        return int(anyio.run(_serve, scope, ca, resolver, watcher[0], args, ctx,   # 4. bind, 5. ready
                             backend_options=backend_options(ctx.env)))
    finally:
        teardown_logging(handler)


def check_secrets(scope: Scope, resolver: Any, ctx: Context) -> list[str]:
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
            ctx.err(f"cordon: error: {failure.message}")
            if failure.hint:
                ctx.err(f"hint: {failure.hint}")
        n = len(scope.config.routes)
        raise SecretError(f"{len(failures)} of {n} route secret{'s' if n != 1 else ''} could not be resolved "
                          "(each is listed above); cordon did not start",
                          "fix each one as its hint says, then run `cordon start` again")
    return values


def _token_auth(watcher: TokenWatcher) -> Any:
    """A ProxyAuth that follows tokens.toml: `token rotate|revoke` take effect on the next check."""
    from cordon.proxy.auth import ProxyAuth

    class TokenFileAuth(ProxyAuth):
        def __init__(self) -> None:   # no super().__init__: the inner ProxyAuth holds the digests
            self._gen = -1
            self._inner: ProxyAuth | None = None

        def _current(self) -> ProxyAuth | None:
            watcher.reload()
            if watcher.generation != self._gen:
                tokens = watcher.tokens()
                self._inner = ProxyAuth({tok: name for name, tok in tokens.items()}) if tokens else None
                self._gen = watcher.generation
            return self._inner

        def check_token(self, token: bytes) -> str | None:
            inner = self._current()
            return inner.check_token(token) if inner else None

        def check_header(self, value: bytes | None) -> str | None:
            inner = self._current()
            return inner.check_header(value) if inner else None

    return TokenFileAuth()


class _NoIssuer:
    """[tls] enabled = false with no routes: nothing is ever intercepted."""

    def server_context(self, host: str) -> ssl.SSLContext:
        raise CordonError(f"no CA to intercept {host}", "remove `enabled = false` from [tls]")


async def _serve(scope: Scope, ca: Any, resolver: Any, watcher: TokenWatcher, args: argparse.Namespace,
                 ctx: Context) -> int:
    import anyio

    from cordon.proxy.secretcache import SecretCache
    from cordon.proxy.server import ProxySettings, serve
    from cordon.proxy.tls import LeafIssuer

    # cached secrets are dropped when the generation file changes (`cordon secret set|delete`
    # bump it) and on SIGHUP; a SecretCache is used by the proxy as it is
    cache = SecretCache(resolver, scope.secrets_gen_file)
    settings = ProxySettings(routes=tuple(scope.config.routes), policy=scope.config.policy,
                             port=scope.config.listen, issuer=LeafIssuer(ca) if ca is not None else _NoIssuer(),
                             resolver=cast(Any, cache), auth=_token_auth(watcher),
                             secrets_gen_file=scope.secrets_gen_file)
    stopped_by: int | None = None
    bind_error: OSError | None = None
    async with anyio.create_task_group() as tg:
        try:
            port = await tg.start(serve, settings)
        except OSError as e:
            bind_error = e
        if bind_error is None:
            record = _write_record(scope, port)
            try:
                _ready_line(ctx, args.log_format, scope, port)
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
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


def _ready_line(ctx: Context, fmt: str, scope: Scope, port: int) -> None:
    n = len(scope.config.routes)
    if fmt == "json":
        ts = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        ctx.err(json.dumps({"ts": ts, "level": "info", "logger": "cordon", "event": "ready",
                            "msg": f"ready on 127.0.0.1:{port}", "port": port, "routes": n,
                            "scope": scope.scope, "config": str(scope.config_path), "pid": os.getpid()}))
    else:
        ctx.err(f"cordon: ready on 127.0.0.1:{port} ({n} route{'s' if n != 1 else ''}, {scope.scope} scope, "
                f"config {scope.config_path})")
    with contextlib.suppress(OSError, ValueError):
        ctx.stderr.flush()


def _write_record(scope: Scope, port: int) -> Path:
    from cordon.atomic import atomic_write
    from cordon.paths import ensure_private_dir
    ensure_private_dir(scope.state_dir)
    data = {"pid": os.getpid(), "port": port,
            "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "version": __version__, "config_path": str(scope.config_path), "scope": scope.scope,
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
