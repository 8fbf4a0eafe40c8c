"""`cordon setup [codex|claude-code]`: point an agent at the long-lived proxy of a scope."""

from __future__ import annotations

import argparse
from typing import Any

from cordon.app.integrations import INTEGRATIONS, SetupResult, prepare, resolve_scope, route_missing, setup
from cordon.cli.context import Context, add_scope_args
from cordon.core.errors import UsageError
from cordon.store.knownscopes import remember
from cordon.store.runrecord import live_run_record

LABELS = {"codex": "Codex CLI", "claude-code": "Claude Code"}


def register(sub: Any, name: str) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        name, help="set up Codex or Claude Code to use `cordon start`'s proxy",
        description="Create the scope's CA and cordon.toml (with the provider's route), build the CA "
                    "bundle, and write the agent's own settings so it goes through the proxy of "
                    "`cordon start`. Existing files are backed up to *.cordon.bak first; "
                    "`cordon integration disable` undoes it. Without an integration: only the "
                    "config, CA and bundle.")
    p.add_argument("integration", nargs="?", choices=INTEGRATIONS, help="the agent to set up")
    add_scope_args(p)
    p.add_argument("-y", "--yes", action="store_true",
                   help="ask nothing: add the provider's route (keyring secret) if it is missing")
    p.set_defaults(run=run)


def ask(ctx: Context, question: str, default: bool = True) -> bool:
    """A yes/no question on stderr; the answer from stdin (end of input: the default)."""
    ctx.stderr.write(question + (" [Y/n] " if default else " [y/N] "))
    ctx.stderr.flush()
    line = ctx.stdin.readline()
    if not line:
        ctx.stderr.write("\n")
        if not ctx.stdin.isatty():
            # no terminal and no answer: never decide for the user
            raise UsageError("cordon setup has a question and no terminal to answer it",
                             "pass --yes to accept what it proposes, or run it in a terminal")
        return default
    answer = line.strip().lower()
    return default if not answer else answer in ("y", "yes")


def run(args: argparse.Namespace, ctx: Context) -> int:
    scope = resolve_scope(ctx.paths, args.config, args.scope)
    if args.integration is None:
        res = prepare(ctx.env, scope)
        ctx.out(f"cordon {'created' if res.config_created else 'uses'} {scope.config_path}")
        ctx.out(f"CA: {res.ca_path}{' (new)' if res.ca_created else ''}")
        ctx.out(f"bundle: {res.bundle_path}")
        ctx.out("next: add routes (`cordon route add --preset openai`), or run "
                "`cordon setup codex` / `cordon setup claude-code`")
        return 0
    add = True
    preset = route_missing(scope, args.integration, ctx.paths)
    if preset is not None and not args.yes:
        add = ask(ctx, f"Add a route for {preset.host} to {scope.config_path} "
                       f"({preset.description}; the real key comes from the keyring entry "
                       f"'{preset.name}')?")
    render(ctx, setup(ctx.paths, ctx.env, args.integration, scope, add_route=add))
    remember(ctx.paths, scope.config_file)     # a known config: `route remove --delete-secret` checks it
    return 0


def render(ctx: Context, r: SetupResult) -> None:
    label = LABELS.get(r.integration, r.integration)
    ctx.out(f"{label}: set up for the {r.scope.kind} scope ({r.scope.config_path}, proxy port {r.port})")
    if r.config_created:
        ctx.out(f"  created    {r.scope.config_path}")
    if r.route_added:
        ctx.out(f"  added      route '{r.route_added}' to {r.scope.config_path}")
    if r.ca_created:
        ctx.out(f"  created    CA {r.ca_path}")
    for c in r.changes:
        extra = f"  (backup: {c.backup})" if c.backup else ""
        ctx.out(f"  {c.action:<10} {c.path}{extra}")
    for note in r.notes:
        ctx.out(f"note: {note}")
    flag = " --scope user" if r.scope.kind == "user" else ""
    rec = live_run_record(r.scope.state_dir)
    if rec is None:
        start = [f"start the proxy: `cordon start{flag}` (foreground), or `cordon service install{flag}` "
                 "(at login)"]
    elif rec.port != r.port:
        start = [f"restart `cordon start{flag}` (pid {rec.pid}): it listens on port {rec.port}, the config now "
                 f"says {r.port} (other edits of cordon.toml apply without a restart)"]
    else:
        start = []
    steps = [*r.next_steps, *start]
    if steps:
        ctx.out("next:")
    for i, step in enumerate(steps, 1):
        ctx.out(f"  {i}. {step}")
    ctx.out(f"undo: `cordon integration disable {r.integration}{flag}`")
