"""`cordon status [--json] [--quiet]`: is the proxy running, per scope and service, and how is it doing."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cordon.app.service import manager_or_none
from cordon.app.status import ScopeStatus, gather, to_json
from cordon.cli.context import Context, add_scope_args
from cordon.core.wording import plural


def register(sub: Any, name: str) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        name, help="show whether the proxy runs, its routes' counts, CA expiry and secrets",
        description="Per scope (and per installed service): running or not, pid, port, uptime, version, "
                    "every route with its request and error counts since start, the CA's expiry and "
                    "whether each route's secret resolves (never its value). Without --config/--scope "
                    "the first scope shown is the one other commands would use.")
    add_scope_args(p)
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON")
    out.add_argument("-q", "--quiet", action="store_true",
                     help="print nothing; exit 0 when the proxy runs, 1 when not")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    scopes = gather(ctx.paths, ctx.env, config=args.config, scope=args.scope,
                    manager=manager_or_none(ctx.paths, ctx.env), check_secrets=not args.quiet)
    status = 0 if scopes[0].running else 1
    if args.quiet:
        return status
    from cordon.app.logins import login_infos
    logins = login_infos(ctx.paths, ctx.env)
    if args.json:
        ctx.out(json.dumps({"running": scopes[0].running, "scopes": [to_json(s) for s in scopes],
                            "logins": [i.as_json() for i in logins]}, indent=2))
        return status
    for i, st in enumerate(scopes):
        if i:
            ctx.out()
        _render(st, ctx)
    if logins:
        ctx.out()
        ctx.out("subscription logins (cordon login):")
        for info in logins:
            ctx.out(f"  {info.name}: {info.describe()}")
    return status


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{d}d{h}h" if d else f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _render(st: ScopeStatus, ctx: Context) -> None:
    ctx.out(f"{st.scope} scope: {st.config_path}")
    if st.config_error:
        ctx.out(f"  config:  {st.config_error}")
    if st.running:
        up = _uptime(st.uptime_s)
        ctx.out(f"  proxy:   running, pid {st.pid}, port {st.port}" + (f", up {up}" if up else "")
                + (f", cordon {st.version}" if st.version else ""))
    else:
        ctx.out("  proxy:   not running" + (f" (listen = {st.port}; start it with `cordon start`)"
                                           if st.port is not None and not st.config_error else ""))
    for note in st.notes:
        ctx.out(f"           {note}")
    if st.service is not None and st.service.installed:
        pid = f", pid {st.service.pid}" if st.service.pid and st.service.active else ""
        ctx.out(f"  service: {st.service_name} ({st.service.manager} {st.service.unit}): {st.service.state}{pid}")
    elif st.service_note:
        ctx.out(f"  service: {st.service_note}")
    elif st.service_name:
        ctx.out(f"  service: not installed (`cordon service install` would name it {st.service_name})")
    if st.ca is not None:
        if not st.ca.exists:
            ctx.out(f"  CA:      not created yet ({st.ca.cert_path})")
        elif st.ca.problem:
            ctx.out(f"  CA:      {st.ca.problem}")
        else:
            assert st.ca.not_after is not None and st.ca.days_left is not None
            left = plural(st.ca.days_left, "day")
            ctx.out(f"  CA:      {st.ca.cert_path}, expires {st.ca.not_after:%Y-%m-%d} ({left})")
    if not st.routes:
        if not st.config_error:
            ctx.out("  routes:  none")
        return
    ctx.out("  routes:")
    wn = max(len(r.name) for r in st.routes)
    wh = max(len(r.host) for r in st.routes)
    secrets = [f"secret ok ({r.secret_source})" if r.secret_ok else f"secret FAILS: {r.secret_error}"
               for r in st.routes]
    ws = max(len(s) for s in secrets)
    for r, secret in zip(st.routes, secrets, strict=True):
        counts = (f"  {plural(r.requests, 'request')}, {plural(r.errors or 0, 'error')}"
                  if r.requests is not None else "")
        ctx.out(f"    {r.name:<{wn}}  {r.host:<{wh}}  {secret:<{ws}}{counts}".rstrip())
        if r.secret_fix and not r.secret_ok:
            ctx.out(f"    {'':<{wn}}  {'':<{wh}}  fix: {r.secret_fix}")
