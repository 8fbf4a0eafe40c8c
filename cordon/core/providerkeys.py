"""Provider keys cordon recognises in an environment, and the routes that keep them from a child.

Pure: given the environment and the configured routes, which built-in presets
have a real-looking key in one of their variables, and what the session must
add so none of them reaches the child in clear: a route covering the preset's
host gets the variable as a placeholder variable; a preset no route covers
gets a route of its own with the variable as an `env` secret (as zero-config
does). Never sees a value beyond comparing it with the placeholders.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cordon.core.model import DEFAULT_PLACEHOLDER, Route, SecretSpec
from cordon.core.routes import PRESETS, Preset, RouteTable


@dataclass(frozen=True)
class Protection:
    """What the session adds: `routes` (the config's, some with more placeholder
    variables, then the new ones), `added` (preset name, new route), `covered`
    (variable, the configured route that now gives it the placeholder)."""

    routes: tuple[Route, ...]
    added: tuple[tuple[str, Route], ...]
    covered: tuple[tuple[str, str], ...]


def _real(value: str, placeholders: set[str]) -> bool:
    return bool(value) and value not in placeholders


def real_keys(env: Mapping[str, str], preset: Preset, placeholders: set[str]) -> list[str]:
    """The preset's variables that hold a real-looking value, in the preset's order."""
    return [v for v in preset.placeholder_env if _real(env.get(v, ""), placeholders)]


def protect(env: Mapping[str, str], routes: Sequence[Route]) -> Protection:
    """Routes that leave no recognised provider key in the child's environment."""
    placeholders = {DEFAULT_PLACEHOLDER, *(r.auth.placeholder for r in routes)}
    table = RouteTable(routes)
    out = list(routes)
    added: list[tuple[str, Route]] = []
    covered: list[tuple[str, str]] = []
    taken = {r.name for r in routes}
    for preset in PRESETS.values():
        found = real_keys(env, preset, placeholders)
        if not found:
            continue
        owner = table.match(preset.host)
        if owner is None:
            name = preset.name if preset.name not in taken else f"{preset.name}-env"
            taken.add(name)
            route = preset.route(SecretSpec(source="env", var=found[0]), name=name)
            # a host of the preset another route covers stays with that route
            more = tuple(h for h in route.more_hosts if not any(h in r.hosts for r in routes))
            route = dataclasses.replace(route, more_hosts=more)
            out.append(route)
            added.append((preset.name, route))
            continue
        if owner.auth.type == "login":
            continue   # a subscription session drops these variables itself: they would override the login
        missing = [v for v in found if v not in owner.auth.placeholder_env
                   and not (owner.auth.secret.source == "env" and owner.auth.secret.var == v)]
        if not missing:
            continue
        i = out.index(owner)
        auth = dataclasses.replace(owner.auth, placeholder_env=(*owner.auth.placeholder_env, *missing))
        out[i] = dataclasses.replace(owner, auth=auth)
        table = RouteTable(out)
        covered += [(v, owner.name) for v in missing]
    return Protection(routes=tuple(out), added=tuple(added), covered=tuple(covered))
