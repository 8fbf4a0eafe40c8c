"""`cordon route add|edit|list|show|remove`: manage the routes of a cordon.toml.

Flags for scripts; with no flags on a terminal, `add` and `edit` ask (see
route_wizard). Edits go through `configedit`, which keeps the rest of the file.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

from cordon.app import routes as route_edits
from cordon.cli.context import Context, add_scope_args
from cordon.core.credlike import looks_like_credential
from cordon.core.errors import ConfigError, SecretError, UsageError
from cordon.core.model import Auth, Route, SecretSpec, UpstreamSpec
from cordon.core.routes import PRESETS, derive_name
from cordon.store.config import check_route, load_config
from cordon.store.configedit import route_table
from cordon.store.scope import resolve_scope

SOURCES = ("keyring", "1password", "env", "file", "command")

# flag dest -> the sources it belongs to (None: any)
ROUTE_FLAGS: dict[str, tuple[str, ...] | None] = {
    "preset": None, "host": None, "new_name": None, "auth_type": None, "header_name": None, "scheme": None,
    "username": None, "query_param": None, "source": None, "paths": None, "placeholder_env": None, "placeholder": None,
    "upstream_address": None, "upstream_ca_file": None, "upstream_scheme": None,
    "account": ("keyring",), "service": ("keyring",),
    "vault": ("1password",), "item": ("1password",), "field": ("1password",), "op_account": ("1password",),
    "var": ("env",), "path": ("file",), "secret_command": ("command",), "ttl": ("command",),
    "timeout": ("1password", "command"),
}


def register(sub: Any, name: str) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        name, help="add, edit, list, show or remove routes (hosts whose credential cordon injects)",
        description="Manage the routes in cordon.toml. `add` and `edit` take flags, or ask on a terminal.")
    p.set_defaults(run=lambda args, ctx: _usage(p, ctx))
    rs = p.add_subparsers(dest="route_cmd", metavar="ACTION", parser_class=type(p))

    add = rs.add_parser("add", help="add a route (a wizard on a terminal when no flags are given)",
                        description="Add a route. Example: cordon route add --preset openai; "
                                    "cordon route add --host api.stripe.com --source 1password "
                                    "--vault Eng --item Stripe --field key")
    _route_flags(add, creating=True)
    add.set_defaults(run=run_add)

    edit = rs.add_parser("edit", help="change a route (only the flags given change)",
                         description="Change a route; flags not given keep their value. An empty value "
                                     "(e.g. --scheme '') clears an optional setting.")
    edit.add_argument("name", help="the route to change")
    _route_flags(edit, creating=False)
    edit.set_defaults(run=run_edit)

    lst = rs.add_parser("list", help="list the routes")
    add_scope_args(lst)
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(run=run_list)

    show = rs.add_parser("show", help="show one route")
    show.add_argument("name")
    add_scope_args(show)
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(run=run_show)

    rm = rs.add_parser("remove", help="remove a route")
    rm.add_argument("name")
    add_scope_args(rm)
    rm.add_argument("--delete-secret", action="store_true",
                    help="also delete its secret from the keyring (keyring routes only); asks first "
                         "when routes of other known configs use the same entry")
    rm.add_argument("--force", action="store_true",
                    help="with --delete-secret: delete a keyring entry other configs use without asking")
    rm.set_defaults(run=run_remove)


def _usage(p: argparse.ArgumentParser, ctx: Context) -> int:
    p.print_help(ctx.stdout)
    return 2


def _route_flags(p: argparse.ArgumentParser, *, creating: bool) -> None:
    add_scope_args(p)
    g = p.add_argument_group("route")
    g.add_argument("--preset", choices=sorted(PRESETS), help="fill host, header, scheme and placeholder_env "
                                                            "for a known provider")
    g.add_argument("--host", help="exact host name, e.g. api.openai.com")
    g.add_argument("--name", dest="new_name", metavar="NAME",
                   help="route name (default: the preset's, or derived from the host)" if creating
                   else "rename the route")
    g.add_argument("--paths", action="append", metavar="PREFIX[,PREFIX]",
                   help="inject only under these path prefixes (repeat or comma-separate)")
    g.add_argument("--placeholder-env", action="append", metavar="VAR[,VAR]",
                   help="variables that hold the placeholder in children (repeat or comma-separate)")
    g.add_argument("--placeholder", help="the placeholder value (default dummy-replaced-by-cordon)")
    a = p.add_argument_group("auth")
    a.add_argument("--auth-type", choices=("header", "basic", "query"),
                   help="header (default), basic, or query (the key goes into --query-param)")
    a.add_argument("--query-param", help="query parameter that carries the key (type query; with header: "
                                         "used instead of the header when the request has it)")
    a.add_argument("--header-name", help="header that carries the credential (default Authorization)")
    a.add_argument("--scheme", help="e.g. Bearer (default for Authorization); '' for none")
    a.add_argument("--username", help="user name for basic auth")
    s = p.add_argument_group("secret")
    s.add_argument("--source", choices=SOURCES, help="where the secret comes from (default keyring)")
    s.add_argument("--account", help="keyring account (default: the route name)")
    s.add_argument("--service", help="keyring service (default cordon)")
    s.add_argument("--vault", help="1Password vault")
    s.add_argument("--item", help="1Password item")
    s.add_argument("--field", help="1Password field (default credential)")
    s.add_argument("--op-account", help="1Password account (sign-in address or ID)")
    s.add_argument("--var", help="environment variable holding the secret")
    s.add_argument("--path", help="file holding the secret (mode 0600)")
    s.add_argument("--command", dest="secret_command", metavar="COMMAND",
                   help="command printing the secret, e.g. 'pass show openai' (split like a shell, run without one)")
    s.add_argument("--ttl", type=float, help="seconds to cache the command's output")
    s.add_argument("--timeout", type=float, help="seconds before `op` or the command is given up")
    u = p.add_argument_group("upstream")
    u.add_argument("--upstream-address", metavar="HOST:PORT", help="connect here instead of the route host")
    u.add_argument("--upstream-ca-file", metavar="PEM", help="extra CA to trust for this upstream")
    u.add_argument("--upstream-scheme", choices=("https", "http"), help="http only for a local upstream")


def flags_given(args: argparse.Namespace) -> bool:
    return any(getattr(args, d, None) is not None for d in ROUTE_FLAGS)


def _split(values: list[str] | None) -> tuple[str, ...] | None:
    if values is None:
        return None
    return tuple(x.strip() for v in values for x in v.split(",") if x.strip())


def _abs(p: str, cwd: Path) -> Path:
    path = Path(p).expanduser()
    return path if path.is_absolute() else cwd / path


def build_route(args: argparse.Namespace, base: Route | None, cwd: Path) -> Route:
    if getattr(args, "account", None) and looks_like_credential(args.account):
        raise UsageError("--account looks like a secret key, not a keyring account name (it was not stored)",
                         "give a label such as `--account openai`; store the key itself with "
                         "`cordon secret set NAME` (input hidden)")
    """The route the flags describe, on top of `base` (the route being edited, or None)."""
    preset = PRESETS[args.preset] if args.preset else None
    host = args.host or (preset.host if preset else None) or (base.host if base else None)
    if not host:
        raise UsageError("a route needs a host", "pass --host api.example.com or --preset "
                         + "|".join(sorted(PRESETS)))
    name = args.new_name or (base.name if base else None) or (preset.name if preset else derive_name(host))

    old = base.auth if base else None
    # a login route keeps its auth unless other auth is asked for (upstream, host, paths may change)
    keep_login = old if old is not None and old.type == "login" and not args.auth_type and not args.source else None
    atype = args.auth_type or (old.type if old else ("basic" if args.username else "header"))
    if atype == "basic":
        header, scheme = "Authorization", None
        username = args.username if args.username is not None else (old.username if old else None)
        if not username:
            raise UsageError("basic auth needs a user name", "pass --username NAME")
    else:
        username = None
        old_header = old.header_name if old and old.type == "header" else None
        header = args.header_name or (preset.header_name if preset else None) or old_header or "Authorization"
        if args.scheme is not None:
            scheme = args.scheme or None
        elif preset and not args.header_name:
            scheme = preset.scheme
        elif old and old_header and header.lower() == old_header.lower():
            scheme = old.scheme
        else:
            scheme = "Bearer" if header.lower() == "authorization" else None

    placeholder_env = _split(args.placeholder_env)
    if placeholder_env is None:
        placeholder_env = preset.placeholder_env if preset else (old.placeholder_env if old else ())
    placeholder = args.placeholder or (old.placeholder if old else None)

    secret = keep_login.secret if keep_login else _build_secret(args, base.auth.secret if base else None, name, cwd)
    paths = _split(args.paths)
    if paths is None:
        paths = base.paths if base else ()

    up = base.upstream if base else UpstreamSpec()
    address = up.address if args.upstream_address is None else (args.upstream_address or None)
    ca_file = up.ca_file if args.upstream_ca_file is None else (
        _abs(args.upstream_ca_file, cwd) if args.upstream_ca_file else None)
    uscheme = args.upstream_scheme or up.scheme

    auth_kw: dict[str, Any] = {}
    if placeholder:
        auth_kw["placeholder"] = placeholder
    # a preset's further hosts and query parameter come with it (unless --host names another host)
    source = preset if preset is not None and not args.host else base if base is not None and not args.host else None
    more_hosts = source.more_hosts if source is not None else ()
    query_param = args.query_param or (preset.query_param if preset is not None
                                       else old.query_param if old else None)
    if atype == "query" and not query_param:
        raise UsageError("query auth needs a parameter name", "pass --query-param key")
    if atype == "basic":
        query_param = None
    route = Route(name=name, host=host, paths=paths, more_hosts=more_hosts,
                  auth=keep_login or Auth(type="basic" if atype == "basic" else "query" if atype == "query"
                                          else "header", secret=secret, header_name=header, scheme=scheme,
                                          username=username, placeholder_env=placeholder_env,
                                          query_param=query_param, **auth_kw),
                  upstream=UpstreamSpec(address=address, ca_file=ca_file,
                                        scheme="http" if uscheme == "http" else "https"))
    # the same validation as a file (reserved headers, CR/LF, host syntax, ...), without a file:line
    return check_route(route_table(route), cwd)


def _build_secret(args: argparse.Namespace, old: SecretSpec | None, name: str, cwd: Path) -> SecretSpec:
    source = args.source or (old.source if old else "keyring")
    for dest, sources in ROUTE_FLAGS.items():
        if sources is not None and getattr(args, dest, None) is not None and source not in sources:
            flag = "--" + ("command" if dest == "secret_command" else dest.replace("_", "-"))
            raise UsageError(f"{flag} does not apply to --source {source}",
                             f"{flag} is for --source {' or '.join(sources)}")
    keep = old if old is not None and old.source == source else None
    if source == "keyring":
        return SecretSpec(source="keyring",
                          account=args.account or (keep.account if keep else None) or name,
                          service=args.service or (keep.service if keep else "cordon"),
                          decode=keep.decode if keep else None)
    if source == "1password":
        vault = args.vault or (keep.vault if keep else None)
        item = args.item or (keep.item if keep else None)
        if not vault or not item:
            raise UsageError("a 1password secret needs --vault and --item", "pass --vault V --item I [--field F]")
        account = keep.account if keep else None
        if args.op_account is not None:
            account = args.op_account or None
        return SecretSpec(source="1password", vault=vault, item=item,
                          field=args.field or (keep.field if keep else None) or "credential", account=account,
                          timeout=args.timeout if args.timeout is not None else (keep.timeout if keep else 30.0))
    if source == "env":
        var = args.var or (keep.var if keep else None)
        if not var:
            raise UsageError("an env secret needs --var", "pass --var NAME_OF_VARIABLE")
        return SecretSpec(source="env", var=var)
    if source == "file":
        path = _abs(args.path, cwd) if args.path else (keep.path if keep else None)
        if path is None:
            raise UsageError("a file secret needs --path", "pass --path /path/to/secret (mode 0600)")
        return SecretSpec(source="file", path=path)
    cmd = tuple(shlex.split(args.secret_command)) if args.secret_command else (keep.command if keep else ())
    if not cmd:
        raise UsageError("a command secret needs --command", "pass --command 'pass show openai'")
    return SecretSpec(source="command", command=cmd,
                      ttl=args.ttl if args.ttl is not None else (keep.ttl if keep else 0.0),
                      timeout=args.timeout if args.timeout is not None else (keep.timeout if keep else 10.0))


def _target(args: argparse.Namespace, ctx: Context, *, creating: bool) -> Path:
    paths = ctx.paths
    scope = resolve_scope(paths, args.config, args.scope)
    if scope.config_path is None and not creating:
        raise ConfigError(f"no cordon.toml in {paths.cwd} or its parents, and no user config",
                          "add a route first: `cordon route add --preset openai`")
    return scope.config_file   # neither flag and no file yet: the project scope's, as in Cordon


def run_add(args: argparse.Namespace, ctx: Context) -> int:
    path = _target(args, ctx, creating=True)
    cwd = ctx.paths.cwd
    if not flags_given(args):
        if not ctx.stdin.isatty():
            raise UsageError("route add needs flags when stdin is not a terminal",
                             "pass e.g. --preset openai, or --host HOST --source keyring "
                             "(see `cordon route add --help`)")
        from cordon.cli.route_wizard import wizard
        args = wizard(args, ctx, None)
    route = build_route(args, None, cwd)
    created = route_edits.add(ctx.paths, path, route)
    if created:
        ctx.out(f"created {path}")
    ctx.out(f"added route '{route.name}' ({route.host}) to {path}")
    _next_step(route, args, ctx)
    return 0


def _next_step(route: Route, args: argparse.Namespace, ctx: Context) -> None:
    s = route.auth.secret
    if s.source == "keyring":
        if getattr(args, "store_secret_now", False):
            from cordon.cli.cmd_secret import store_secret
            store_secret(route, ctx)
        else:
            ctx.out(f"next: store its secret with `cordon secret set {route.name}`")
    else:
        ctx.out(f"its secret comes from {s.describe()}; check it with `cordon secret check {route.name}`")


def run_edit(args: argparse.Namespace, ctx: Context) -> int:
    path = _target(args, ctx, creating=False)
    cfg = load_config(path)
    base = cfg.route(args.name)
    if base is None:
        raise ConfigError(f"{path}: no route named '{args.name}'", "see the names with `cordon route list`")
    if not flags_given(args):
        if not ctx.stdin.isatty():
            raise UsageError("route edit needs flags when stdin is not a terminal",
                             "pass the settings to change, e.g. --scheme Token (see `cordon route edit --help`)")
        from cordon.cli.route_wizard import wizard
        args = wizard(args, ctx, base)
    route = build_route(args, base, ctx.paths.cwd)
    route_edits.edit(ctx.paths, path, args.name, route)
    ctx.out(f"updated route '{route.name}' ({route.host}) in {path}")
    return 0


def _load(args: argparse.Namespace, ctx: Context) -> tuple[Path | None, list[Route]]:
    scope = resolve_scope(ctx.paths, args.config, args.scope)
    path = scope.config_path
    if path is None or (not path.exists() and args.config is None):
        return path, []
    return path, list(scope.config.routes)


def describe_auth(route: Route) -> str:
    a = route.auth
    if a.type == "basic":
        return f"basic ({a.username})"
    if a.type == "login":
        return ("Authorization: Bearer (subscription access token)" if a.role == "api"
                else "none (refresh and revoke answered by cordon)")
    if a.type == "query":
        return f"?{a.query_param}="
    header = f"{a.header_name}: {a.scheme}" if a.scheme else a.header_name
    return f"{header} (or ?{a.query_param}=)" if a.query_param else header


def run_list(args: argparse.Namespace, ctx: Context) -> int:
    path, routes = _load(args, ctx)
    if args.json:
        ctx.out(json.dumps([route_table(r, defaults=True) for r in routes], indent=2))
        return 0
    if not routes:
        where = path if path is not None else "this directory (no cordon.toml)"
        ctx.err(f"no routes in {where}; add one with `cordon route add`")
        return 0
    rows = [("NAME", "HOST", "AUTH", "SECRET")] + [
        (r.name, ",".join(r.hosts) + (" " + ",".join(r.paths) if r.paths else ""), describe_auth(r),
         r.auth.secret.describe()) for r in routes]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        ctx.out("  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)) + "  " + row[3])
    return 0


def _find(args: argparse.Namespace, ctx: Context) -> tuple[Path, Route]:
    path, routes = _load(args, ctx)
    for r in routes:
        if r.name == args.name:
            assert path is not None
            return path, r
    where = path if path is not None else "this directory (no cordon.toml)"
    raise ConfigError(f"no route named '{args.name}' in {where}", "see the names with `cordon route list`")


def run_show(args: argparse.Namespace, ctx: Context) -> int:
    path, r = _find(args, ctx)
    if args.json:
        ctx.out(json.dumps(route_table(r, defaults=True), indent=2))
        return 0
    u = r.upstream
    lines = [
        ("name", r.name),
        ("host", ", ".join(r.hosts)),
        ("paths", ", ".join(r.paths) if r.paths else "(all)"),
        ("auth", describe_auth(r) + " <secret>" if r.auth.type == "header" else describe_auth(r)),
        ("placeholder_env", ", ".join(r.auth.placeholder_env) or "(none)"),
        ("placeholder", r.auth.placeholder),
        ("secret", r.auth.secret.describe()),
        ("upstream", f"{u.scheme}://{u.address or r.host}" + (f" (extra CA {u.ca_file})" if u.ca_file else "")),
        ("config", str(path)),
    ]
    for k, v in lines:
        ctx.out(f"{k + ':':<17}{v}")
    return 0


def _may_delete_shared(ctx: Context, path: Path, removed: Route, *, force: bool) -> bool:
    """Whether to delete `removed`'s keyring entry: warn when routes of other known configs read
    it, then ask (a terminal), take --force, or keep it."""
    users = route_edits.other_users(ctx.paths, path, removed.auth.secret)
    if not users:
        return True
    ctx.err(f"cordon: warning: {removed.auth.secret.describe()} is also used by "
            + "; ".join(f"route '{u.route}' in {u.config_path}" for u in users)
            + ": deleting it breaks " + ("that route" if len(users) == 1 else "those routes"))
    if force:
        return True
    if not ctx.stdin.isatty():
        ctx.err("hint: pass --force to delete it anyway")
        return False
    ctx.stderr.write("Delete it anyway? [y/N] ")
    ctx.stderr.flush()
    return ctx.stdin.readline().strip().lower() in ("y", "yes")


def run_remove(args: argparse.Namespace, ctx: Context) -> int:
    path, _ = _find(args, ctx)
    old = route_edits.remove(path, args.name)
    ctx.out(f"removed route '{old.name}' ({old.host}) from {path}")
    s = old.auth.secret
    if s.source == "keyring":
        if args.delete_secret and not _may_delete_shared(ctx, path, old, force=args.force):
            ctx.out(f"its secret stays in {s.describe()}")
        elif args.delete_secret:
            try:
                route_edits.delete_secret(ctx.paths, ctx.env, s)
                ctx.out(f"deleted its secret from {s.describe()}")
            except SecretError as e:
                ctx.err(f"note: {e.message}")
        else:
            ctx.out(f"its secret stays in {s.describe()} (pass --delete-secret to remove it too)")
    return 0
