"""`cordon trust` / `cordon untrust`: the scope's CA in the OS trust store."""

from __future__ import annotations

import argparse
from typing import Any

from cordon.app.integrations import resolve_scope
from cordon.app.trust import detect_store, fingerprint, trust, untrust
from cordon.cli.context import Context, add_scope_args

HELP = {
    "trust": "add the scope's CA to the operating system's trust store",
    "untrust": "remove the scope's CA from the operating system's trust store",
}
DESCRIPTION = {
    "trust": "Add the scope's CA (created if missing) to the operating system's trust store, so "
             "programs that read only the system roots accept cordon's certificates without "
             "SSL_CERT_FILE. Debian/Ubuntu and Fedora: needs root; macOS: the login keychain.",
    "untrust": "Remove the scope's CA from the operating system's trust store again.",
}


def register(sub: Any, name: str) -> None:
    p: argparse.ArgumentParser = sub.add_parser(name, help=HELP[name], description=DESCRIPTION[name])
    add_scope_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    scope = resolve_scope(ctx.paths, args.config, args.scope)
    store = detect_store(ctx.paths.home)
    if args.command == "untrust":
        res = untrust(scope, store)
        if res.action == "absent":
            ctx.out(f"the {scope.kind} scope's CA is not in the {res.store}: nothing to remove")
        else:
            ctx.out(f"removed the {scope.kind} scope's CA from the {res.store} ({res.location})")
        return 0
    res, ca = trust(scope, store)
    fp = fingerprint(ca.cert_pem)
    if res.action == "already":
        ctx.out(f"the {scope.kind} scope's CA is already in the {res.store} ({res.location})")
    else:
        ctx.out(f"added the {scope.kind} scope's CA {ca.cert_path} to the {res.store} ({res.location})")
    ctx.out(f"SHA-256 fingerprint: {fp}")
    ctx.out(f"undo: `cordon untrust{' --scope user' if scope.kind == 'user' else ''}`")
    return 0
