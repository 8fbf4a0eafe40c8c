"""`cordon wait`: block until the scope's proxy answers `GET /health` with 200.

For Procfiles and scripts (`cordon wait && npm run dev`). Polls the port of
the running `cordon start` (from its run record) or the configured `listen`;
exit 0 once healthy, 1 with a message naming the port on timeout.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from cordon.app.scope import target_port
from cordon.cli.context import Context, add_scope_args
from cordon.core.errors import CordonError, UsageError
from cordon.store.scope import load_scope

POLL_FIRST = 0.02     # seconds; doubles up to POLL_MAX
POLL_MAX = 0.25


def register(sub: Any, name: str) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        name, help="wait until the scope's proxy is healthy",
        description="Poll GET /health on the scope's proxy until it answers 200; exit 1 on timeout.")
    add_scope_args(p)
    p.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="give up after S seconds (default 30)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(run=run)


def healthy(port: int) -> bool:
    from cordon.app.localclient import get_json
    ans = get_json(port, "/health", timeout=1.0)
    return ans.status == 200 and bool(ans.body) and ans.body.get("status") == "ok"  # type: ignore[union-attr]


def run(args: argparse.Namespace, ctx: Context) -> int:
    if args.timeout < 0:
        raise UsageError("--timeout must be zero or more seconds", "e.g. --timeout 10")
    scope = load_scope(ctx.paths, args.config, args.scope)
    deadline = time.monotonic() + args.timeout
    delay = POLL_FIRST
    port: int | None = None
    while True:
        port, _running = target_port(scope)
        if port is not None and healthy(port):
            if not args.quiet:
                ctx.err(f"cordon: proxy healthy on 127.0.0.1:{port}")
            return 0
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(delay, left))
        delay = min(delay * 2, POLL_MAX)
    where = f"127.0.0.1:{port}" if port is not None else "the scope's proxy (listen = 0 and no run record)"
    raise CordonError(f"no healthy cordon proxy on {where} after {args.timeout:g} s",
                      f"start it with `cordon start{_scope_flags(args)}` (or `cordon service start`); "
                      "`cordon status` shows what is running")


def _scope_flags(args: argparse.Namespace) -> str:
    if getattr(args, "config", None):
        return f" --config {args.config}"
    if getattr(args, "scope", None):
        return f" --scope {args.scope}"
    return ""
