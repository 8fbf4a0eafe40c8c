"""`cordon secret set|delete|check`: store, delete and test the secrets of routes.

The value comes from a hidden prompt on a terminal, from stdin otherwise; it is
never echoed, printed or put in an error. `check` resolves without printing values.
"""

from __future__ import annotations

import argparse
import getpass
import json
from typing import Any

from cordon.app import routes as route_edits
from cordon.cli.context import Context, add_scope_args
from cordon.core.errors import ConfigError, SecretError, UsageError
from cordon.core.model import Config, Route
from cordon.store.scope import load_scope
from cordon.store.secrets import (
    NoKeyring,
    SecretResolver,
    no_keyring_hint,
)


def register(sub: Any, name: str) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        name, help="store, delete or check route secrets",
        description="Store a route's secret in the OS keyring (set), remove it (delete), "
                    "or check that every route's secret resolves (check).")
    p.set_defaults(run=lambda args, ctx: _usage(p, ctx))
    ss = p.add_subparsers(dest="secret_cmd", metavar="ACTION", parser_class=type(p))

    s = ss.add_parser("set", help="store a route's secret in the keyring (hidden prompt, or stdin)",
                      description="Store the secret of a keyring route. On a terminal the value is read "
                                  "from a hidden prompt; otherwise from stdin (e.g. `pass show x | cordon "
                                  "secret set openai`). It is never echoed.")
    s.add_argument("name", help="the route name")
    add_scope_args(s)
    s.set_defaults(run=run_set)

    d = ss.add_parser("delete", help="delete a route's secret from the keyring")
    d.add_argument("name", help="the route name")
    add_scope_args(d)
    d.set_defaults(run=run_delete)

    c = ss.add_parser("check", help="check that route secrets resolve (values are not shown)",
                      description="Resolve every route's secret (or one route's) and report ok or missing. "
                                  "Exit status 1 if any is missing.")
    c.add_argument("name", nargs="?", help="only this route")
    add_scope_args(c)
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(run=run_check)


def _usage(p: argparse.ArgumentParser, ctx: Context) -> int:
    p.print_help(ctx.stdout)
    return 2


def _route(cfg: Config, name: str) -> Route:
    r = cfg.route(name)
    if r is None:
        names = ", ".join(x.name for x in cfg.routes) or "none"
        raise ConfigError(f"{cfg.path}: no route named '{name}' (routes: {names})",
                          f"add it with `cordon route add --name {name} --host HOST`")
    return r


def _keyring_route(cfg: Config, name: str, verb: str) -> Route:
    r = _route(cfg, name)
    s = r.auth.secret
    if s.source != "keyring":
        raise SecretError(f"route '{name}' takes its secret from {s.describe()}, not the keyring, "
                          f"so `cordon secret {verb}` does not apply",
                          f"change it at its source, or switch the route to the keyring: "
                          f"`cordon route edit {name} --source keyring`")
    return r


def read_value(ctx: Context, prompt: str) -> str:
    """The secret from a hidden prompt on a terminal, or all of stdin; never echoed."""
    if ctx.stdin.isatty():
        try:
            value = getpass.getpass(prompt)
        except EOFError:
            value = ""
    else:
        value = ctx.stdin.read()
    value = value.strip("\r\n")
    if not value.strip():
        raise UsageError("no secret given", "type or paste it at the prompt, or pipe it on stdin")
    return value


def store_secret(route: Route, ctx: Context) -> None:
    value = read_value(ctx, f"Secret for route '{route.name}' (input hidden): ")
    try:
        route_edits.store_secret(ctx.paths, ctx.env, route.auth.secret, value)
    except NoKeyring as e:
        raise SecretError(e.message, no_keyring_hint(route.name)) from None
    ctx.out(f"stored the secret of route '{route.name}' in {route.auth.secret.describe()}")


def run_set(args: argparse.Namespace, ctx: Context) -> int:
    cfg = load_scope(ctx.paths, args.config, args.scope).config
    store_secret(_keyring_route(cfg, args.name, "set"), ctx)
    return 0


def run_delete(args: argparse.Namespace, ctx: Context) -> int:
    cfg = load_scope(ctx.paths, args.config, args.scope).config
    r = _keyring_route(cfg, args.name, "delete")
    route_edits.delete_secret(ctx.paths, ctx.env, r.auth.secret)
    ctx.out(f"deleted the secret of route '{r.name}' from {r.auth.secret.describe()}")
    return 0


def run_check(args: argparse.Namespace, ctx: Context) -> int:
    cfg = load_scope(ctx.paths, args.config, args.scope).config
    routes = [_route(cfg, args.name)] if args.name else list(cfg.routes)
    results = SecretResolver(ctx.env, cfg.op_path).check(routes)
    missing = [(r, e) for r, e in results if e is not None]
    logins = {}
    if any(r.auth.type == "login" for r in routes):
        from cordon.app.logins import login_infos
        logins = {i.name: i for i in login_infos(ctx.paths, ctx.env)}
    if args.json:
        ctx.out(json.dumps([{"route": r.name, "ok": e is None, "source": r.auth.secret.describe(),
                             **({"error": e.message, "hint": e.hint} if e else {}),
                             **({"login": logins[r.auth.login].as_json()} if r.auth.login in logins else {})}
                            for r, e in results], indent=2))
        return 1 if missing else 0
    if not routes:
        ctx.err(f"no routes in {cfg.path}; add one with `cordon route add`")
        return 0
    width = max(len(r.name) for r in routes)
    for r, e in results:
        if e is None:
            ctx.out(f"ok       {r.name:<{width}}  {r.auth.secret.describe()}")
            if r.auth.login in logins and r.auth.role == "api":
                ctx.out(f"         {'':<{width}}  {logins[r.auth.login or ''].describe()}")
        else:
            ctx.out(f"missing  {r.name:<{width}}  {e.message}")
            if e.hint:
                ctx.out(f"         {'':<{width}}  fix: {e.hint}")
    return 1 if missing else 0
