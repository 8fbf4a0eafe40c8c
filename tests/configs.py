"""cordon.toml for tests, built instead of written out by hand.

    from tests import configs

    configs.render(configs.openai(env="REAL_KEY"))                      # one env route
    configs.render(configs.openai(keyring="openai", placeholder_env=configs.CODEX_VARS),
                   configs.anthropic(env="REAL_ANTHROPIC", upstream=up),  # reached at up.address,
                   listen=6790, policy={"unmatched": "deny"})             #   trusting up.ca_file
    configs.write(project / "cordon.toml", configs.openai(env="K"))     # the file, made

A route is a `RouteSpec`; `openai()` and `anthropic()` are the two providers most
tests use (Bearer in Authorization; `x-api-key`). The secret is `env=VAR`,
`keyring=ACCOUNT` or any `secret={...}` table (1password, file, command). An
`upstream` is anything with `address` and `ca_file` (tests/upstream.py's servers)
or a table. The text is rendered by tomli_w, so values are quoted correctly
whatever they hold. Tests of the parser and the editor keep their TOML verbatim:
there the text is the subject.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tomli_w

CODEX_VARS = ("OPENAI_API_KEY", "CODEX_API_KEY")


@dataclass(frozen=True)
class RouteSpec:
    """One `[[routes]]` table."""

    name: str = "openai"
    host: str = "api.openai.com"
    secret: Mapping[str, Any] = field(default_factory=lambda: {"source": "env", "var": "CORDON_TEST_REAL_KEY"})
    header_name: str = "Authorization"
    scheme: str | None = "Bearer"
    placeholder_env: Sequence[str] = ()
    placeholder: str | None = None
    paths: Sequence[str] = ()
    upstream: Any = None     # an object with .address and .ca_file, or a mapping
    hosts: Sequence[str] = ()          # further hosts or *.suffix patterns
    query_param: str | None = None

    def with_(self, **changes: Any) -> RouteSpec:
        return replace(self, **changes)

    def table(self) -> dict[str, Any]:
        match: dict[str, Any] = {"host": self.host}
        if self.hosts:
            match["hosts"] = list(self.hosts)
        if self.paths:
            match["paths"] = list(self.paths)
        auth: dict[str, Any] = {"type": "header", "header_name": self.header_name}
        if self.scheme is not None:
            auth["scheme"] = self.scheme
        if self.placeholder_env:
            auth["placeholder_env"] = list(self.placeholder_env)
        if self.placeholder is not None:
            auth["placeholder"] = self.placeholder
        if self.query_param is not None:
            auth["query_param"] = self.query_param
        auth["secret"] = dict(self.secret)
        t: dict[str, Any] = {"name": self.name, "match": match, "auth": auth}
        if self.upstream is not None:
            up = self.upstream
            t["upstream"] = (dict(up) if isinstance(up, Mapping)
                             else {"address": up.address, "ca_file": str(up.ca_file)})
        return t


def secret_table(env: str | None = None, keyring: str | None = None,
                 secret: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The `[routes.auth.secret]` table: from an env variable, a keyring account, or as given.

    `keyring=""` leaves the account out (it defaults to the route's name).
    """
    if sum(x is not None for x in (env, keyring, secret)) > 1:
        raise ValueError("name one of env, keyring, secret")
    if secret is not None:
        return dict(secret)
    if keyring is not None:
        return {"source": "keyring", "account": keyring} if keyring else {"source": "keyring"}
    return {"source": "env", "var": env or "CORDON_TEST_REAL_KEY"}


def openai(*, env: str | None = None, keyring: str | None = None, secret: Mapping[str, Any] | None = None,
           **kw: Any) -> RouteSpec:
    """api.openai.com, `Authorization: Bearer`."""
    return RouteSpec(secret=secret_table(env, keyring, secret), **kw)


def anthropic(*, env: str | None = None, keyring: str | None = None, secret: Mapping[str, Any] | None = None,
              **kw: Any) -> RouteSpec:
    """api.anthropic.com, `x-api-key` without a scheme."""
    kw.setdefault("name", "anthropic")
    kw.setdefault("host", "api.anthropic.com")
    kw.setdefault("header_name", "x-api-key")
    kw.setdefault("scheme", None)
    return RouteSpec(secret=secret_table(env, keyring, secret), **kw)


def preset(name: str, *, env: str | None = None, keyring: str | None = None,
           secret: Mapping[str, Any] | None = None, **kw: Any) -> RouteSpec:
    """The built-in preset `name` (cordon.core.routes.PRESETS) as a route table, as
    `cordon route add --preset` writes it."""
    from cordon.core.routes import PRESETS
    p = PRESETS[name]
    fields: dict[str, Any] = {"name": p.name, "host": p.host, "hosts": p.more_hosts, "header_name": p.header_name,
                              "scheme": p.scheme, "placeholder_env": p.placeholder_env, "query_param": p.query_param}
    fields.update(kw)
    return RouteSpec(secret=secret_table(env, keyring, secret), **fields)


def render(*routes: RouteSpec, listen: int | None = None, policy: Mapping[str, Any] | None = None,
           **top: Any) -> str:
    """A whole cordon.toml: top-level keys (`listen`, others as keyword arguments), `[policy]`, the routes."""
    doc: dict[str, Any] = {}
    if listen is not None:
        doc["listen"] = listen
    doc.update(top)
    if policy is not None:
        doc["policy"] = dict(policy)
    if routes:
        doc["routes"] = [r.table() for r in routes]
    return tomli_w.dumps(doc)


def write(path: Path, *routes: RouteSpec, **kw: Any) -> Path:
    """`render(...)` written to `path` (its folders made), and approved as `cordon allow` would
    (tests.conftest.write)."""
    from tests.conftest import write as write_text

    return write_text(path, render(*routes, **kw))
