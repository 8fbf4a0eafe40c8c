"""Entry point: builds the parser from the command modules, maps errors to exit codes."""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
import traceback
from collections.abc import Sequence

from cordon import __version__
from cordon.cli.context import Context
from cordon.core.errors import CordonError

# command name -> module under cordon.cli; order is the order of --help
COMMANDS: tuple[tuple[str, str], ...] = (
    ("exec", "cmd_exec"),
    ("start", "cmd_start"),
    ("wait", "cmd_wait"),
    ("env", "cmd_env"),
    ("setup", "cmd_setup"),
    ("integration", "cmd_integration"),
    ("route", "cmd_route"),
    ("secret", "cmd_secret"),
    ("login", "cmd_login"),
    ("logout", "cmd_login"),
    ("token", "cmd_token"),
    ("status", "cmd_status"),
    ("doctor", "cmd_doctor"),
    ("service", "cmd_service"),
    ("hook", "cmd_hook"),
    ("trust", "cmd_trust"),
    ("untrust", "cmd_trust"),
    ("allow", "cmd_allow"),
    ("deny", "cmd_allow"),
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"cordon: error: {message}", file=sys.stderr)
        print(f"hint: run `{self.prog} --help` for usage", file=sys.stderr)
        sys.exit(2)


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The command named in argv (the first argument that is not a global flag), if known."""
    for a in argv:
        if a in ("--debug",):
            continue
        return a if any(a == name for name, _ in COMMANDS) else None
    return None


def _innermost(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser of the deepest (sub)command named in argv (`route add` for `route add --x`)."""
    for a in argv:
        subs = [x for x in parser._actions if isinstance(x, argparse._SubParsersAction)]
        if subs and a in subs[0].choices:
            parser = subs[0].choices[a]
    return parser


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `only`, just that command's module is imported.

    Importing every command module costs more than `cordon exec`'s whole start-up
    budget (some pull in cryptography, tomlkit, ...), so a named command loads
    only its own; `--help` and unknown commands load them all.
    """
    parser = _Parser(prog="cordon",
                     description="Keep API keys out of AI coding agents: a loopback proxy injects "
                                 "the real credential, the agent only holds a placeholder.")
    parser.add_argument("--version", action="version", version=f"cordon {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for internal errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, modname in COMMANDS:
        if only is not None and name != only:
            continue
        mod = importlib.import_module(f"cordon.cli.{modname}")
        mod.register(sub, name)
    return parser


def main(argv: Sequence[str] | None = None, ctx: Context | None = None) -> int:
    ctx = ctx or Context()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_chosen_command(argv))
    args, extra = parser.parse_known_args(argv)
    if extra:
        # argparse hands a subcommand's unknown options up to the top parser, whose usage
        # line would not mention them: let the command that was named say it
        _innermost(parser, argv).error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "command", None):
        parser.print_help(ctx.stdout)
        return 2
    _repair_stale_sessions(ctx)
    try:
        return int(args.run(args, ctx))
    except CordonError as e:
        ctx.err(f"cordon: error: {e.message}")
        if e.hint:
            ctx.err(f"hint: {e.hint}")
        return e.exit_status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
    except OSError as e:
        if e.errno not in _DISK_ERRORS or args.debug:
            return _internal_error(e, args, ctx)
        # a full or read-only disk is the user's to fix, not a bug (files are written atomically,
        # so what was there is still there)
        where = f" {e.filename}" if e.filename else ""
        ctx.err(f"cordon: error: cannot write{where}: {e.strerror or e}")
        ctx.err("hint: free some space (or make it writable), then run the command again; "
                "files cordon was replacing are unchanged")
        return 1
    except Exception as e:
        return _internal_error(e, args, ctx)


_DISK_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def _internal_error(e: BaseException, args: argparse.Namespace, ctx: Context) -> int:
    if args.debug:
        traceback.print_exc(file=ctx.stderr)
    else:
        ctx.err(f"cordon: internal error: {type(e).__name__}: {e}")
        ctx.err("hint: run again with --debug for the traceback, and report it")
    return 70


def _repair_stale_sessions(ctx: Context) -> None:
    """Undo what a SIGKILLed `cordon exec` left (its .env edits, its directory): every command does it.

    Usually there is nothing to repair: one directory listing answers that, before the
    session module (and what it imports) is loaded."""
    try:
        if not os.listdir(ctx.paths.sessions_dir):
            return
    except FileNotFoundError:
        return
    except OSError:
        pass   # repair_stale reports it
    from cordon.store.session import repair_stale
    try:
        repair_stale(ctx.paths)
    except OSError as e:
        ctx.err(f"cordon: warning: could not repair a stale session: {e}")


def entry() -> None:
    from cordon.app.hardening import set_non_dumpable
    set_non_dumpable()   # any cordon process may come to hold a secret or a token (secret set, start, ...)
    status = main()
    if _chosen_command(sys.argv[1:]) == "exec":
        # `cordon exec` has stopped its proxy and restored every file by now; the
        # interpreter's own finalisation (module teardown, GC) would add ~25 ms to
        # every run for nothing, so leave the way a C program would
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(status)
    sys.exit(status)
