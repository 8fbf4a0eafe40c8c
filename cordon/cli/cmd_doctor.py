"""`cordon doctor [--json] [--no-probes]`: one line per check, with the fix for each that is not ok."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cordon.app.doctor import Check, Report, run_doctor, to_json
from cordon.app.service import manager_or_none
from cordon.cli.context import Context, add_scope_args
from cordon.core.wording import plural


def register(sub: Any, name: str) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        name, help="check the setup and prove each runtime on PATH can get through cordon",
        description="Checks the config, port, CA (files, key mode, expiry), merged bundle, every secret, "
                    "the 1Password CLI, tokens.toml, integration files and the service; then starts a "
                    "throwaway proxy and local HTTPS upstream and makes a request through it with each "
                    "runtime on PATH (curl, python ssl/requests/httpx, node, git, codex), reporting which "
                    "worked and through which trust variable. Exit status 1 when any check fails.")
    add_scope_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--no-probes", action="store_true", help="skip the live runtime probes")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    manager = manager_or_none(ctx.paths, ctx.env)
    if args.json:
        report = run_doctor(ctx.paths, ctx.env, config=args.config, scope=args.scope, manager=manager,
                            probes=not args.no_probes)
        ctx.out(json.dumps(to_json(report), indent=2))
        return report.exit_status
    # each check is printed as it finishes (the runtime probes take seconds)
    paint = _painter(ctx)
    report = run_doctor(ctx.paths, ctx.env, config=args.config, scope=args.scope, manager=manager,
                        probes=not args.no_probes,
                        on_start=lambda scope, path: _header(ctx, scope, path),
                        on_check=lambda c: _line(ctx, c, paint))
    _summary(report, ctx, paint)
    return report.exit_status


WIDTH = 24     # the id column; a longer id just pushes its message right

_COLOURS = {"ok": "32", "warn": "33", "fail": "1;31", "skip": "2"}


def _painter(ctx: Context) -> Callable[[str, str], str]:
    """Colour for a terminal; plain text under NO_COLOR (https://no-color.org), TERM=dumb or a pipe."""
    try:
        tty = ctx.stdout.isatty()
    except (AttributeError, ValueError):
        tty = False
    if not tty or ctx.env.get("NO_COLOR") or ctx.env.get("TERM") == "dumb":
        return lambda _status, text: text
    return lambda status, text: f"\x1b[{_COLOURS[status]}m{text}\x1b[0m" if status in _COLOURS else text


def _header(ctx: Context, scope: str, config_path: Path | None) -> None:
    ctx.out(f"cordon doctor: {scope} scope, {config_path or 'no cordon.toml'}")
    _flush(ctx)


def _line(ctx: Context, c: Check, paint: Callable[[str, str], str]) -> None:
    message = paint(c.status, c.message) if c.status == "fail" else c.message
    ctx.out(f"{paint(c.status, f'{c.status:<4}')}  {c.id:<{WIDTH}}  {message}")
    if c.fix and c.status != "ok":
        ctx.out(f"{'':<4}  {'':<{WIDTH}}  fix: {c.fix}")
    _flush(ctx)


def _flush(ctx: Context) -> None:
    with contextlib.suppress(OSError, ValueError):
        ctx.stdout.flush()


def _summary(report: Report, ctx: Context, paint: Callable[[str, str], str]) -> None:
    n = report.counts()
    failed = f"{n['fail']} failed"
    ctx.out(f"{n['ok']} ok, {plural(n['warn'], 'warning')}, {paint('fail', failed) if n['fail'] else failed}, "
            f"{n['skip']} skipped")
