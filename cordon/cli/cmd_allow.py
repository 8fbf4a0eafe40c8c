"""`cordon allow` / `cordon deny`: approve a project cordon.toml as it is, or withdraw the approval."""

from __future__ import annotations

import argparse
from typing import Any

from cordon.app.allow import allow, deny
from cordon.cli.context import Context, add_scope_args

HELP = {
    "allow": "approve this project's cordon.toml as it is (exec and start use only approved files)",
    "deny": "withdraw the approval of this project's cordon.toml",
}
DESCRIPTION = {
    "allow": "Approve the cordon.toml in use (the project's, or --config PATH) as it is now, as "
             "`direnv allow` does. `cordon exec` and `cordon start` refuse a project file with a "
             "route that is new, or whose host, secret source, upstream or upstream CA changed, "
             "since it was last approved: an agent that rewrites it cannot send a secret elsewhere. "
             "`cordon route add|edit` and `cordon setup` approve the routes they write themselves. "
             "(`cordon trust` is something else: it puts the CA into the OS trust store.)",
    "deny": "Withdraw the approval of the cordon.toml in use: `cordon exec` and `cordon start` "
            "refuse it until `cordon allow`.",
}


def register(sub: Any, name: str) -> None:
    p: argparse.ArgumentParser = sub.add_parser(name, help=HELP[name], description=DESCRIPTION[name])
    add_scope_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    if args.command == "deny":
        path, had = deny(ctx.paths, args.config, args.scope)
        if had:
            ctx.out(f"withdrew the approval of {path}: `cordon exec` and `cordon start` refuse it "
                    "until `cordon allow`")
        else:
            ctx.out(f"{path} was not approved: nothing to withdraw")
        return 0
    res = allow(ctx.paths, args.config, args.scope)
    if not res.needed:
        ctx.out(f"{res.path} is in cordon's own config directory: it needs no approval")
        return 0
    for change in res.changes:
        ctx.out(f"  {change}")
    names = ", ".join(f"{r.name} ({r.host}, secret from {r.auth.secret.describe()})" for r in res.routes)
    ctx.out(f"approved {res.path}" + (f": {names}" if names else " (no routes)"))
    return 0
