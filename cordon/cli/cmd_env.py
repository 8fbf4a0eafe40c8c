"""`cordon env`: the environment contract (docs/exec.md) for the scope's `cordon start`.

stdout carries only what the chosen format evaluates (`eval "$(cordon env)"`,
`cordon env --format fish | source`, a dotenv file, JSON for jq); notes go to
stderr. The proxy URL holds the scope's default token, or a client's with
--client (created if it does not exist yet). The CA and bundle are created
if missing, so the output is usable before the first `cordon start` (which
refreshes the bundle when the system roots change).
"""

from __future__ import annotations

import argparse
from typing import Any

from cordon.app.scope import ensure_ca_files, target_port
from cordon.cli.context import Context, add_scope_args
from cordon.core.errors import ConfigError
from cordon.store.scope import load_scope

FORMATS = ("shell", "fish", "dotenv", "json")


def register(sub: Any, name: str) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        name, help="print proxy and CA variables for the scope's proxy (eval-able)",
        description="Print HTTPS_PROXY (with the scope's token), NO_PROXY, the CA bundle variables "
                    "and the routes' placeholders for the scope's `cordon start`. "
                    "bash/zsh: eval \"$(cordon env)\"; fish: cordon env --format fish | source.")
    add_scope_args(p)
    p.add_argument("-f", "--format", choices=FORMATS, default="shell",
                   help="shell (bash/zsh, default), fish, dotenv or json")
    p.add_argument("--client", metavar="NAME",
                   help="use this client's token (e.g. codex) instead of the default one")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    from cordon.core.envvars import contract_vars, render
    from cordon.store.tokens import DEFAULT_TOKEN, TokenStore, validate_name

    scope = load_scope(ctx.paths, args.config, args.scope)
    port, running = target_port(scope)
    if port is None:
        raise ConfigError(f"{scope.config_path}: listen = 0 and no `cordon start` is running for this scope, "
                          "so there is no port to point clients at",
                          "start the proxy first (`cordon start`), or set a fixed port with `listen = 6790`")
    if not scope.config.tls.enabled:
        raise ConfigError(f"{scope.config_path}: [tls] enabled = false, so there is no CA to trust",
                          "remove `enabled = false` from [tls]")
    client = validate_name(args.client) if args.client else DEFAULT_TOKEN
    store = TokenStore.for_state_dir(scope.state_dir)
    existed = store.get(client) is not None
    token = store.ensure(client)
    if not existed and client != DEFAULT_TOKEN:
        ctx.err(f"cordon: created token '{client}' (see `cordon token list`)")
    ensure_ca_files(scope, ctx.env)
    values = contract_vars(ctx.env, port=port, token=token, bundle_path=scope.bundle, ca_path=scope.ca_cert,
                           routes=scope.config.routes)
    ctx.stdout.write(render(values, args.format))
    if not running:
        ctx.err(f"cordon: note: no `cordon start` is running for this scope yet; these point at "
                f"127.0.0.1:{port}")
    return 0
