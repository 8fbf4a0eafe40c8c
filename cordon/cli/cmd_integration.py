"""`cordon integration disable codex|claude-code`: undo what `cordon setup` wrote."""

from __future__ import annotations

import argparse
from typing import Any

from cordon.app.integrations import INTEGRATIONS, disable, resolve_scope
from cordon.cli.context import Context, add_scope_args

WORDS = {
    "restored": "restored (byte-identical)",
    "removed": "removed (cordon created it)",
    "cleaned": "removed cordon's entries, kept your changes",
    "kept": "left as it is (changed since setup)",
}


def register(sub: Any, name: str) -> None:
    p: argparse.ArgumentParser = sub.add_parser(name, help="undo `cordon setup` for an agent")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    d = actions.add_parser(
        "disable", help="restore the files `cordon setup` changed",
        description="Restore every file `cordon setup NAME` changed: byte for byte when nothing "
                    "else changed it since, otherwise by taking out only cordon's entries. "
                    "Also revokes the agent's proxy token. cordon.toml and its routes stay.")
    d.add_argument("integration", choices=INTEGRATIONS)
    add_scope_args(d)
    d.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    scope = resolve_scope(ctx.paths, args.config, args.scope)
    r = disable(ctx.paths, ctx.env, args.integration, scope)
    if not r.found:
        ctx.out(f"{args.integration} is not set up in the {scope.kind} scope ({scope.config_path}): "
                "nothing to undo")
        return 0
    ctx.out(f"{args.integration}: disabled in the {scope.kind} scope")
    for c in r.changes:
        ctx.out(f"  {c.path}: {WORDS.get(c.action, c.action)}")
    if r.token_revoked:
        ctx.out(f"  proxy token '{args.integration}' revoked")
    return 0
