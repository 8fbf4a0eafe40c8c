"""`cordon service install|uninstall|start|stop|status [NAME]`: `cordon start` as a user service."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from cordon.app.service import (
    Manager,
    ServiceState,
    build_spec,
    install_warnings,
    manager_for,
    require_installed,
    select_target,
)
from cordon.cli.context import Context, add_scope_args
from cordon.core.errors import CordonError
from cordon.store.config import load_config
from cordon.store.scope import resolve_scope

ACTIONS = ("install", "uninstall", "start", "stop", "status")


def register(sub: Any, name: str) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        name, help="run `cordon start` as a systemd user unit or launchd agent",
        description="Install `cordon start --config PATH` as a user service (systemd on Linux, launchd on "
                    "macOS) that starts at login and restarts on failure. NAME defaults to the scope's "
                    "name: `user`, or `<dirname>-<hash8>` for a project. Several named instances can run "
                    "side by side (each needs its own `listen` port).")
    p.add_argument("action", choices=ACTIONS, help="what to do")
    p.add_argument("name", nargs="?", metavar="NAME", help="service instance name")
    add_scope_args(p)
    p.add_argument("--print", dest="print_only", action="store_true",
                   help="install: print the unit (or plist) instead of installing it")
    p.set_defaults(run=run)


def _describe(st: ServiceState) -> str:
    pid = f" (pid {st.pid})" if st.pid and st.active else ""
    return f"{st.state}{pid}"


def run(args: argparse.Namespace, ctx: Context) -> int:
    paths = ctx.paths
    name, config_path = select_target(paths, args.name, resolve_scope(paths, args.config, args.scope).config_path)
    manager = manager_for(paths, ctx.env)
    if args.action == "install" and args.print_only:
        spec = build_spec(paths, ctx.env, name, config_path)
        ctx.stdout.write(manager.render(spec).decode())
        return 0
    if args.action == "status" and not args.name and not args.config and not args.scope:
        manager.ensure_available(None)
        return _status_all(manager, ctx)
    manager.ensure_available(config_path)
    if args.action == "install":
        return _install(manager, ctx, name, config_path)
    require_installed(manager, name)
    if args.action == "uninstall":
        path = manager.uninstall(name)
        ctx.out(f"removed service '{name}' ({path})")
    elif args.action == "start":
        manager.start(name)
        ctx.out(f"service '{name}': {_describe(manager.state(name))}")
    elif args.action == "stop":
        manager.stop(name)
        ctx.out(f"service '{name}': {_describe(manager.state(name))}")
    else:
        st = manager.state(name)
        ctx.out(f"service '{name}' ({st.unit}): {_describe(st)}")
        ctx.out(f"  file:   {st.path}")
        ctx.out(f"  config: {st.config_path or '?'}")
        return 0 if st.active else 1
    return 0


def _install(manager: Manager, ctx: Context, name: str, config_path: Path) -> int:
    if not config_path.is_file():
        raise CordonError(f"{config_path}: no such file",
                          "a service runs an existing cordon.toml: create one with `cordon setup` "
                          "or `cordon route add`, or pass --config PATH")
    config = load_config(config_path)
    spec = build_spec(ctx.paths, ctx.env, name, config_path)

    def listen_of(p: Path) -> int | None:
        try:
            return load_config(p).listen
        except CordonError:
            return None

    env_vars = [(r.name, r.auth.secret.var or "?") for r in config.routes if r.auth.secret.source == "env"]
    warnings = install_warnings(manager, spec, env_vars, config.listen, listen_of)
    path = manager.install(spec)
    st = manager.state(name)
    ctx.out(f"installed service '{name}' ({st.unit}): {_describe(st)}")
    ctx.out(f"  file: {path}")
    ctx.out(f"  runs: {' '.join(shlex.quote(a) for a in spec.argv)}")
    for w in warnings:
        ctx.err(f"warning: {w}")
    if manager.kind == "systemd":
        ctx.out("It starts with your user session; `loginctl enable-linger` keeps it running after logout.")
    else:
        ctx.out("It starts at login and restarts if it fails.")
    return 0


def _status_all(manager: Manager, ctx: Context) -> int:
    names = manager.installed_names()
    if not names:
        ctx.out("no cordon services are installed")
        return 0
    rows = [manager.state(n) for n in names]
    width = max(len(n) for n in names)
    for st in rows:
        ctx.out(f"{st.name:<{width}}  {_describe(st):<24} {st.config_path or '?'}")
    return 0 if all(st.active for st in rows) else 1


