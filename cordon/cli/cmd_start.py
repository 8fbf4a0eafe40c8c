"""`cordon start`: parse, run cordon.app.start.ProxyRun, render its ready line and errors."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
from typing import Any

from cordon.app.start import ProxyRun
from cordon.cli.context import Context, add_scope_args
from cordon.cli.logsetup import LEVELS, Redactor, setup_logging, teardown_logging
from cordon.core.errors import SecretError
from cordon.store.scope import Scope, load_scope


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
    scope = load_scope(ctx.paths, args.config, args.scope)
    proxy = ProxyRun(scope, ctx.env)
    handler = setup_logging(args.log_level, args.log_format, ctx.stderr, Redactor(proxy.sensitive_values))
    try:
        proxy.preflight(report=lambda e: _report(ctx, e))
        return proxy.serve(on_ready=lambda port: _ready_line(ctx, args.log_format, scope, port))
    finally:
        teardown_logging(handler)


def _report(ctx: Context, failure: SecretError) -> None:
    ctx.err(f"cordon: error: {failure.message}")
    if failure.hint:
        ctx.err(f"hint: {failure.hint}")


def _ready_line(ctx: Context, fmt: str, scope: Scope, port: int) -> None:
    n = len(scope.config.routes)
    if fmt == "json":
        ts = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        ctx.err(json.dumps({"ts": ts, "level": "info", "logger": "cordon", "event": "ready",
                            "msg": f"ready on 127.0.0.1:{port}", "port": port, "routes": n,
                            "scope": scope.name, "config": str(scope.config_path), "pid": os.getpid()}))
    else:
        ctx.err(f"cordon: ready on 127.0.0.1:{port} ({n} route{'s' if n != 1 else ''}, {scope.name} scope, "
                f"config {scope.config_path})")
    with contextlib.suppress(OSError, ValueError):
        ctx.stderr.flush()
