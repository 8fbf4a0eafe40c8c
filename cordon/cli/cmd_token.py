"""`cordon token list|rotate|revoke`: the long-lived proxy's client tokens (tokens.toml).

`list` shows names and creation times only, never a value. A rotated client
token is first handed to that client's integration (which rewrites its proxy
URL), then written to tokens.toml, so a failed rewrite leaves the old token
working with the old files. A running `cordon start` picks the change up on
its next connection (it watches the file); clients must restart to use it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cordon.cli.context import Context, add_scope_args
from cordon.core.errors import UsageError
from cordon.store.scope import Scope, resolve_scope
from cordon.store.tokens import DEFAULT_TOKEN, TokenStore, new_token, validate_name


def token_store(args: argparse.Namespace, ctx: Context) -> tuple[Scope, TokenStore]:
    """The scope --config/--scope name, and its tokens.toml."""
    scope = resolve_scope(ctx.paths, getattr(args, "config", None), getattr(args, "scope", None))
    return scope, TokenStore.for_state_dir(scope.state_dir)


def update_client_integrations(ctx: Context, scope: Scope, client: str, token: str) -> list[Path]:
    """Rewrite `client`'s files with its new token (before tokens.toml changes).

    Returns the files rewritten ([] for a client no integration of this scope
    manages); an exception aborts the rotation before the old token stops working.
    """
    from cordon.app.integrations import on_token_rotated
    return on_token_rotated(client, token, scope=scope, env=ctx.env, paths=ctx.paths)


def register(sub: Any, name: str) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        name, help="list, rotate or revoke the proxy's client tokens",
        description="Proxy tokens of `cordon start` (tokens.toml in the scope's state directory). "
                    "Values are never printed; `cordon env` puts one into the proxy URL.")
    tsub = p.add_subparsers(dest="token_command", metavar="ACTION", required=True)

    lp = tsub.add_parser("list", help="token names and creation times (never values)")
    add_scope_args(lp)
    lp.add_argument("--json", action="store_true", help="machine-readable output")
    lp.set_defaults(run=run_list)

    rp = tsub.add_parser("rotate", help="replace a token with a new random value")
    add_scope_args(rp)
    rp.add_argument("name", nargs="?", help=f"token to rotate (default: {DEFAULT_TOKEN})")
    rp.add_argument("--all", action="store_true", help="rotate every token of the scope")
    rp.set_defaults(run=run_rotate)

    vp = tsub.add_parser("revoke", help="delete a client token (it stops working at once)")
    add_scope_args(vp)
    vp.add_argument("name", help="client token to revoke (e.g. codex)")
    vp.set_defaults(run=run_revoke)


def run_list(args: argparse.Namespace, ctx: Context) -> int:
    _, store = token_store(args, ctx)
    infos = store.list()
    if getattr(args, "json", False):
        ctx.out(json.dumps({"file": str(store.path), "tokens": [
            {"name": i.name, "created": i.created.isoformat() if i.created else None} for i in infos]}))
        return 0
    if not infos:
        ctx.err(f"no tokens yet in {store.path}")
        ctx.err("hint: `cordon start` creates the default token; `cordon env --client NAME` a client's")
        return 0
    width = max(len(i.name) for i in infos)
    ctx.out(f"{'NAME':<{width}}  CREATED")
    for i in infos:
        created = i.created.strftime("%Y-%m-%d %H:%M:%S UTC") if i.created else "-"
        ctx.out(f"{i.name:<{width}}  {created}")
    return 0


def _rotate_one(ctx: Context, scope: Scope, store: TokenStore, name: str) -> None:
    token = new_token()
    changed: Sequence[Path] = update_client_integrations(ctx, scope, name, token) if name != DEFAULT_TOKEN else []
    store.rotate(name, token)
    ctx.err(f"rotated token '{name}'")
    for path in changed:
        ctx.err(f"  updated {path}")


def run_rotate(args: argparse.Namespace, ctx: Context) -> int:
    scope, store = token_store(args, ctx)
    if args.all and args.name:
        raise UsageError("give a token name or --all, not both", "run `cordon token rotate --all`")
    if args.all:
        names = sorted({i.name for i in store.list()} | {DEFAULT_TOKEN}, key=lambda n: (n != DEFAULT_TOKEN, n))
    else:
        names = [validate_name(args.name or DEFAULT_TOKEN)]
        if names[0] != DEFAULT_TOKEN and store.get(names[0]) is None:
            store.rotate(names[0])  # raises the "no token named" error with the known names
    for name in names:
        _rotate_one(ctx, scope, store, name)
    ctx.err("hint: a running `cordon start` accepts the new value at once and refuses the old one; "
            "re-run `eval \"$(cordon env)\"` or restart clients that hold the old one")
    return 0


def run_revoke(args: argparse.Namespace, ctx: Context) -> int:
    _, store = token_store(args, ctx)
    store.revoke(validate_name(args.name))
    ctx.err(f"revoked token '{args.name}'")
    return 0
