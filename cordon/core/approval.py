"""What of a cordon.toml the user must approve, and what changed since they did (pure).

A project file can be rewritten by anything that can write the project, an agent
included. What decides where a secret goes is fingerprinted per route: its hosts
(`host`, further `hosts` and `*.suffix` patterns), the secret source (every field that
picks the secret, a command's argv and env), the upstream (scheme and address) and the
upstream CA file (path and content digest); plus the 1Password CLI path. Other edits
(paths, placeholders, policy, comments) need no approval: they cannot send a secret
anywhere new.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from cordon.core.model import Route, SecretSpec
from cordon.core.routes import normalize_host

Fingerprint = dict[str, str]
OP_PATH_KEY = "[secrets.providers] 1password path"   # not a route name: route names hold no spaces or brackets


def secret_key(spec: SecretSpec) -> str:
    """Every field that picks the secret (not ttl or timeout)."""
    fields: dict[str, object] = {"source": spec.source}
    if spec.source == "keyring":
        fields.update(service=spec.service, account=spec.account, decode=spec.decode)
    elif spec.source == "1password":
        fields.update(vault=spec.vault, item=spec.item, field=spec.field, account=spec.account, env=spec.env)
    elif spec.source == "env":
        fields.update(var=spec.var)
    elif spec.source == "file":
        fields.update(path=str(spec.path))
    else:
        fields.update(command=spec.command, env=spec.env)
    return json.dumps(fields, sort_keys=True, default=list)


def fingerprint(route: Route, ca_digest: str | None) -> Fingerprint:
    """`ca_digest`: sha256 of the upstream CA file's content ("missing" if unreadable), None without one."""
    up = route.upstream
    return {
        "host": ",".join(normalize_host(h) for h in route.hosts),   # `hosts` and `*.suffix` patterns too
        "secret": secret_key(route.auth.secret),
        "upstream": f"{up.scheme}://{up.address or normalize_host(route.host)}",
        "ca": f"{up.ca_file}#{ca_digest}" if up.ca_file is not None else "",
    }


def changes(approved: Mapping[str, Mapping[str, str]] | None, routes: Sequence[Route],
            current: Mapping[str, Fingerprint]) -> list[str]:
    """What in `current` (name -> fingerprint, routes and OP_PATH_KEY) the user has not approved.

    Removed routes need no approval. Each item is a short phrase for a one-line error.
    """
    old = approved or {}
    by_name = {r.name: r for r in routes}
    out: list[str] = []
    for name, fp in current.items():
        prev = old.get(name)
        if name == OP_PATH_KEY:
            if prev != fp:
                out.append(f"the 1Password CLI path is now {fp['path']}")
            continue
        r = by_name[name]
        if prev is None:
            out.append(f"new route '{name}' ({', '.join(r.hosts)}, secret from {r.auth.secret.describe()})")
            continue
        what = []
        if prev.get("host") != fp["host"]:
            what.append(f"host is now {r.host}" if len(r.hosts) == 1 else f"hosts are now {', '.join(r.hosts)}")
        if prev.get("secret") != fp["secret"]:
            what.append(f"secret now from {r.auth.secret.describe()}")
        if prev.get("upstream") != fp["upstream"]:
            what.append(f"upstream is now {fp['upstream']}")
        if prev.get("ca") != fp["ca"]:
            what.append("upstream CA file changed")
        if what:
            out.append(f"route '{name}': " + ", ".join(what))
    return out
