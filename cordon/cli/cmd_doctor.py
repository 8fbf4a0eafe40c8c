"""`cordon doctor [--json] [--no-probes]`: one line per check, with the fix for each that is not ok."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cordon.app.doctor import Report, run_doctor, to_json
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
    report = run_doctor(ctx.paths, ctx.env, config=args.config, scope=args.scope,
                        manager=manager_or_none(ctx.paths, ctx.env), probes=not args.no_probes)
    if args.json:
        ctx.out(json.dumps(to_json(report), indent=2))
    else:
        render(report, ctx)
    return report.exit_status


def render(report: Report, ctx: Context) -> None:
    ctx.out(f"cordon doctor: {report.scope} scope, {report.config_path or 'no cordon.toml'}")
    width = max(len(c.id) for c in report.checks)
    for c in report.checks:
        ctx.out(f"{c.status:<4}  {c.id:<{width}}  {c.message}")
        if c.fix and c.status != "ok":
            ctx.out(f"{'':<4}  {'':<{width}}  fix: {c.fix}")
    n = report.counts()
    ctx.out(f"{n['ok']} ok, {plural(n['warn'], 'warning')}, {n['fail']} failed, {n['skip']} skipped")
