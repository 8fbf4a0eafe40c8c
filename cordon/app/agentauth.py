"""API keys that coding agents keep in their own files, seen by `exec` and `doctor`.

opencode keeps keys saved with `opencode auth login` in
`$XDG_DATA_HOME/opencode/auth.json` (default `~/.local/share/opencode/`), or
takes the same JSON from `OPENCODE_AUTH_CONTENT`, which replaces the file; either
wins over the provider's variable, so a key there would bypass cordon's
placeholder. For a provider a session routes, `exec` hands opencode the same
JSON with the placeholder in place of each such key (`OPENCODE_AUTH_CONTENT`);
a key for a provider no route covers is reported. Reads the file; never writes
it; no key value leaves this module except inside the child's copy of that JSON
for providers that are not routed (opencode had them already).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cordon.core.model import Route
from cordon.core.routes import PRESETS, RouteTable

OPENCODE_ENV = "OPENCODE_AUTH_CONTENT"
# opencode's provider ids -> cordon's presets
OPENCODE_PROVIDERS = {"openai": "openai", "anthropic": "anthropic", "google": "gemini",
                      "openrouter": "openrouter", "mistral": "mistral", "groq": "groq"}


@dataclass(frozen=True)
class StoredKey:
    agent: str          # "opencode"
    provider: str       # the agent's provider id
    preset: str         # cordon's preset for it
    where: str          # the file, or the variable


def opencode_auth_file(env: Mapping[str, str], home: Path) -> Path:
    data = env.get("XDG_DATA_HOME") or str(home / ".local" / "share")
    return Path(data) / "opencode" / "auth.json"


def _opencode_entries(env: Mapping[str, str], home: Path) -> tuple[dict[str, Any], str] | None:
    """opencode's auth entries as opencode itself would read them, and where from."""
    raw = env.get(OPENCODE_ENV)
    where = OPENCODE_ENV
    if not raw:
        path = opencode_auth_file(env, home)
        try:
            raw = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        where = str(path)
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return (data, where) if isinstance(data, dict) else None


def _api_keys(entries: Mapping[str, Any], where: str) -> list[StoredKey]:
    out = []
    for provider, entry in entries.items():
        preset = OPENCODE_PROVIDERS.get(str(provider).rstrip("/"))
        if preset and isinstance(entry, dict) and entry.get("type") == "api" and entry.get("key"):
            out.append(StoredKey("opencode", str(provider), preset, where))
    return out


def stored_keys(env: Mapping[str, str], home: Path) -> list[StoredKey]:
    """API keys for providers cordon knows, kept in an agent's own auth store."""
    found = _opencode_entries(env, home)
    return _api_keys(*found) if found is not None else []


@dataclass(frozen=True)
class AgentAuth:
    env: dict[str, str]                 # variables to set in the child
    replaced: tuple[StoredKey, ...]     # keys the child sees as the placeholder instead
    unrouted: tuple[StoredKey, ...]     # keys no route covers: the agent still sends them itself


def for_session(env: Mapping[str, str], home: Path, routes: Sequence[Route]) -> AgentAuth:
    """What the child needs so its own stored keys give way to the session's placeholders."""
    found = _opencode_entries(env, home)
    if found is None:
        return AgentAuth({}, (), ())
    entries, where = found
    table = RouteTable(routes)
    replaced: list[StoredKey] = []
    unrouted: list[StoredKey] = []
    out = dict(entries)
    for k in _api_keys(entries, where):
        route = table.match(PRESETS[k.preset].host)
        if route is None:
            unrouted.append(k)
            continue
        out[k.provider] = {**entries[k.provider], "key": route.auth.placeholder}
        replaced.append(k)
    child = {OPENCODE_ENV: json.dumps(out)} if replaced else {}
    return AgentAuth(child, tuple(replaced), tuple(unrouted))


def describe(k: StoredKey) -> str:
    return f"{k.agent} keeps its own {k.provider} API key in {k.where}"
