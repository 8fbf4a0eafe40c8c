"""The env contract (docs/exec.md) for a client of the long-lived proxy.

Takes the table from `cordon.core.envvars` (the one definition `cordon env` and
`exec` use) and only selects from it: a file that outlives a session gets no
session marker and no CODEX_HOME.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from cordon.core import envvars
from cordon.core.model import Route

# variables that describe one `cordon exec` session, never written into a client's files
SESSION_ONLY = frozenset({"CODEX_HOME", envvars.SESSION_VAR})


def contract_vars(*, port: int, token: str, bundle_path: Path, ca_path: Path,
                  routes: Iterable[Route], env: Mapping[str, str]) -> dict[str, str]:
    out = envvars.contract_vars(env, port=port, token=token, bundle_path=bundle_path, ca_path=ca_path,
                                routes=tuple(routes))
    return {k: v for k, v in out.items() if k not in SESSION_ONLY}


def without_placeholders(vars_: Mapping[str, str], routes: Iterable[Route]) -> dict[str, str]:
    """Only the proxy and CA variables (what an MCP server needs; its own keys are left alone)."""
    names = {n for r in routes for n in r.auth.placeholder_env}
    return {k: v for k, v in vars_.items() if k not in names}
