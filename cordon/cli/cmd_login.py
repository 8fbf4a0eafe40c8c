"""`cordon login` / `cordon logout`: a subscription login (Codex ChatGPT, Claude Pro/Max) into cordon and back."""

from __future__ import annotations

import argparse
from typing import Any

from cordon.cli.context import Context, add_scope_args

HELP = {
    "login": "import a Codex (ChatGPT) or Claude (Pro/Max) subscription login; the agent gets placeholders",
    "logout": "give a subscription login back to its client (current tokens) and forget it",
}
DESCRIPTION = {
    "login": "Move the real OAuth tokens of an existing Codex 'Sign in with ChatGPT' or Claude Pro/Max "
             "login into cordon's secret store (the OS keyring), rewrite the client's own credential file "
             "with placeholders, and add the routes that inject the real access token (`codex`, "
             "`codex-auth`, `claude`, `claude-auth`). From then on run the client under `cordon exec`; "
             "cordon refreshes the tokens itself. `cordon logout NAME` undoes it.",
    "logout": "Write the current real tokens back to the client's credential file (where `cordon login` "
              "found them, or --to PATH), remove them from cordon's store and remove the login's routes.",
}


def register(sub: Any, name: str) -> None:
    p: argparse.ArgumentParser = sub.add_parser(name, help=HELP[name], description=DESCRIPTION[name])
    p.add_argument("client", choices=("codex", "claude"), help="which client's login")
    if name == "login":
        p.add_argument("--from", dest="source", metavar="PATH",
                       help="the client's credential file (default: $CODEX_HOME/auth.json or ~/.codex/auth.json; "
                            "~/.claude/.credentials.json)")
    else:
        p.add_argument("--to", dest="target", metavar="PATH",
                       help="write the login here instead of where it came from")
    add_scope_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    from cordon.app import logins
    name = args.client
    if args.command == "logout":
        out = logins.logout(name, env=ctx.env, paths=ctx.paths, target=args.target, config=args.config,
                            scope=args.scope)
        ctx.out(f"wrote the current {name} login back to {out.client_file}; cordon no longer holds it")
        if out.routes_removed:
            ctx.out(f"removed routes: {', '.join(out.routes_removed)}")
        ctx.out(f"the {name} client now uses its own login again, outside cordon")
        return 0
    res = logins.login(name, env=ctx.env, paths=ctx.paths, source=args.source, config=args.config,
                       scope=args.scope)
    info = res.login.summary()
    plan = f", plan {info['plan']}" if info.get("plan") else ""
    ctx.out(f"{'replaced' if res.replaced else 'stored'} the {name} login in cordon's secret store{plan}")
    ctx.out(f"rewrote {res.client_file} with placeholders: {name} run outside cordon is now logged out "
            "(it cannot spend the refresh token behind cordon's back)")
    if res.also_rewritten is not None:
        ctx.out(f"rewrote {res.also_rewritten} with placeholders too: it held the same login")
    if res.routes_added:
        ctx.out(f"added routes {', '.join(res.routes_added)} to {res.config_path}")
    ctx.out(f"use it: `cordon exec -- {name}`; undo: `cordon logout {name}` (writes the current tokens back)")
    return 0
