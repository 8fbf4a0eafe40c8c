"""`cordon exec -- CMD [ARGS...]`: run a command with the proxy and a placeholder key.

Thin: parses the arguments and hands them to `cordon.runner.run_exec`, which
does the work; prints what it is told to and returns the child's status.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from cordon.cli.context import Context, add_scope_args

LOG_LEVELS = ("debug", "info", "warning", "error")


def register(sub: Any, name: str) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        name, help="run a command under a session proxy that injects the real credentials",
        description="Run CMD with a placeholder key and a session proxy on 127.0.0.1 that injects the "
                    "real credential for the configured route hosts only. The session (proxy, CA, "
                    "files) lives exactly as long as CMD; cordon exits with CMD's status.",
        epilog="example: cordon exec -- codex")
    add_scope_args(p)
    p.add_argument("--log-level", choices=LOG_LEVELS, default="warning",
                   help="proxy log level on stderr (default: warning)")
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]",
                   help="the command to run")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    from cordon.runner import CommandNotExecutable, CommandNotFound, ExecRequest, run_exec
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    logging.basicConfig(level=args.log_level.upper(), format="cordon: %(levelname)s %(message)s",
                        stream=ctx.stderr)
    req = ExecRequest(argv=tuple(argv), env=dict(ctx.env), paths=ctx.paths, config=args.config,
                      scope=args.scope, log_level=args.log_level)
    try:
        return run_exec(req, ctx.err)
    except (CommandNotFound, CommandNotExecutable) as e:
        ctx.err(f"cordon: {e.message}")      # as a shell says it; no hint line
        return e.exit_status
