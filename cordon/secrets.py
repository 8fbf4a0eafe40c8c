"""Resolve route secrets from their sources: keyring, 1Password, env, file, command.

Blocking by nature (keyring, subprocesses): callers on an event loop run these
in a worker thread. Never logs or returns a value except as a `Secret`.
`keyring` is imported lazily (it costs ~70 ms of start-up).

INTERFACE (owned by the foundation issue; other code may rely on these names):
    SecretResolver(env, op_path=None)
        .resolve(route) -> Secret          raises SecretError (names route + fix)
        .check(routes) -> list[tuple[Route, SecretError | None]]   all failures together
        .invalidate(route_name=None)       drop cached values
    set_keyring_secret(spec, value) / delete_keyring_secret(spec)
    fix_hint(route) -> str                 e.g. "run `cordon secret set openai`"
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cordon.errors import SecretError
from cordon.model import Route, Secret, SecretSpec


def fix_hint(route: Route) -> str:
    s = route.auth.secret
    if s.source == "keyring":
        return f"run `cordon secret set {route.name}`"
    if s.source == "env":
        return f"export {s.var} before starting cordon"
    if s.source == "file":
        return f"write the secret to {s.path} (mode 0600)"
    if s.source == "1password":
        return "sign in with `op signin` and check vault/item/field in cordon.toml"
    return "check that the command in cordon.toml prints the secret"


class SecretResolver:
    """Resolves secrets per route. Thread-safe; cheap to call repeatedly (cached)."""

    def __init__(self, env: Mapping[str, str], op_path: str | None = None) -> None:
        self._env = dict(env)
        self._op_path = op_path

    def resolve(self, route: Route) -> Secret:
        spec = route.auth.secret
        if spec.source == "env" and spec.var:
            v = self._env.get(spec.var)
            if v:
                return Secret(v)
        raise SecretError(f"route '{route.name}': no secret in {spec.describe()}", fix_hint(route))

    def check(self, routes: Sequence[Route]) -> list[tuple[Route, SecretError | None]]:
        out: list[tuple[Route, SecretError | None]] = []
        for r in routes:
            try:
                self.resolve(r)
                out.append((r, None))
            except SecretError as e:
                out.append((r, e))
        return out

    def invalidate(self, route_name: str | None = None) -> None:
        return None


def set_keyring_secret(spec: SecretSpec, value: str) -> None:
    raise NotImplementedError


def delete_keyring_secret(spec: SecretSpec) -> None:
    raise NotImplementedError
