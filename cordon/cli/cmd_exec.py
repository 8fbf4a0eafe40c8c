"""`cordon exec -- CMD [ARGS...]`: run a command with the proxy and a placeholder key.

Thin: parses the arguments and hands them to `cordon.app.exec.run_exec`, which
does the work; prints what it is told to and returns the child's status.
"""

from __future__ import annotations

import argparse
from typing import Any

from cordon.cli.context import Context, add_scope_args
from cordon.cli.logsetup import LEVELS


def register(sub: Any, name: str) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        name, help="run a command under a session proxy that injects the real credentials",
        description="Run CMD with a placeholder key and a session proxy on 127.0.0.1 that injects the "
                    "real credential for the configured route hosts only. The session (proxy, CA, "
                    "files) lives exactly as long as CMD; cordon exits with CMD's status.",
        epilog="example: cordon exec -- codex")
    add_scope_args(p)
    p.add_argument("--log-level", choices=tuple(LEVELS), default="warn",
                   help="proxy log level on stderr: trace|debug|info|warn|error (default warn: quiet "
                        "unless something fails; info: one line per request)")
    p.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="text lines or JSON lines on stderr (default text)")
    p.add_argument("--sandbox", choices=("auto", "required", "off"), default=None,
                   help="confine the command (Linux): auto (default: confined when the kernel allows, "
                        "else a warning), required (fail instead), off; overrides [exec] sandbox")
    p.add_argument("--egress", choices=("open", "proxy"), default=None,
                   help="proxy: the confined command may open TCP connections only to the proxy "
                        "(and --egress-port ports on 127.0.0.1); overrides [exec] egress")
    p.add_argument("--egress-port", type=int, action="append", default=[], metavar="PORT",
                   help="with --egress proxy, also let the command reach 127.0.0.1:PORT (repeatable)")
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]",
                   help="the command to run")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    from cordon.app.exec import CommandNotExecutable, CommandNotFound, ExecRequest, run_exec
    from cordon.cli.logsetup import Redactor, setup_logging, teardown_logging
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    # the proxy never logs a secret or the token; the filter is defence in depth
    sensitive: list[str] = []
    handler = setup_logging(args.log_level, args.log_format, ctx.stderr, Redactor(lambda: sensitive))
    req = ExecRequest(argv=tuple(argv), env=dict(ctx.env), paths=ctx.paths, config=args.config,
                      scope=args.scope, sensitive=sensitive.append, sandbox=args.sandbox,
                      egress=args.egress, egress_ports=tuple(args.egress_port))
    try:
        return run_exec(req, ctx.err)
    except (CommandNotFound, CommandNotExecutable) as e:
        ctx.err(f"cordon: {e.message}")      # as a shell says it; no hint line
        return e.exit_status
    finally:
        teardown_logging(handler)
