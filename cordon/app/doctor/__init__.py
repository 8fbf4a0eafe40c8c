"""`cordon doctor`: every check for one scope, in order, as data the CLI renders.

Static checks live in `checks`, the live runtime probes (a real proxy and a
local HTTPS upstream, requests made by curl, python, node, git, codex) in
`probes`. The report's exit status is 1 when any check failed. Nothing here
prints, and no secret or token value enters a check's message or details.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cordon.app.doctor.checks import (
    Check,
    bundle_file,
    ca_files,
    check_agent_keys,
    check_approved,
    check_bundle,
    check_ca,
    check_config,
    check_integration,
    check_live_config,
    check_logins,
    check_op,
    check_port,
    check_sandbox,
    check_secrets,
    check_service,
    check_tokens,
    check_upstream_ca_files,
    integration_files,
)
from cordon.app.service import Manager, default_name, names_for_config
from cordon.core.errors import CordonError
from cordon.store import castore
from cordon.store.paths import Paths
from cordon.store.scope import resolve_scope
from cordon.store.tokens import TokenStore

__all__ = ["Check", "Report", "run_doctor", "to_json"]


@dataclass(frozen=True)
class Report:
    scope: str
    config_path: Path | None
    state_dir: Path
    checks: tuple[Check, ...]

    @property
    def failed(self) -> bool:
        return any(c.status == "fail" for c in self.checks)

    @property
    def exit_status(self) -> int:
        return 1 if self.failed else 0

    def counts(self) -> dict[str, int]:
        out = {"ok": 0, "warn": 0, "fail": 0, "skip": 0}
        for c in self.checks:
            out[c.status] += 1
        return out


def _tokens(state_dir: Path) -> list[str]:
    try:
        return list(TokenStore.for_state_dir(state_dir).load().values())
    except CordonError:
        return []


class _Checks(list[Check]):
    """The report's checks; each one is also handed to `on_check` as soon as it is added."""

    def __init__(self, on_check: Callable[[Check], None] | None) -> None:
        super().__init__()
        self.on_check = on_check
        self.told: set[int] = set()

    def tell(self, c: Check) -> None:
        if self.on_check is not None and id(c) not in self.told:
            self.told.add(id(c))
            self.on_check(c)

    def append(self, c: Check) -> None:
        super().append(c)
        self.tell(c)

    def __iadd__(self, cs: Iterable[Check]) -> _Checks:  # type: ignore[override,misc]
        for c in cs:
            self.append(c)
        return self


def run_doctor(paths: Paths, env: Mapping[str, str], *, config: str | None, scope: str | None,
               manager: Manager | None, probes: bool = True, now: dt.datetime | None = None,
               on_start: Callable[[str, Path | None], None] | None = None,
               on_check: Callable[[Check], None] | None = None) -> Report:
    """Every check, in order. `on_start(scope, config_path)` first and `on_check(check)` as each
    one finishes let a terminal show progress (the probes take seconds)."""
    now = now or dt.datetime.now(dt.UTC)
    sc = resolve_scope(paths, config, scope)
    config_path, sel_scope, state_dir = sc.config_path, sc.name, sc.state_dir
    if on_start is not None:
        on_start(sel_scope, config_path)
    found, cfg = check_config(config_path, sel_scope)
    checks = _Checks(on_check)
    checks += found
    if cfg is not None:
        checks.append(check_port(cfg, state_dir))
        approved = check_approved(cfg, paths.cordon_home)
        if approved is not None:
            checks.append(approved)
    checks += check_live_config(state_dir)
    checks += check_ca(cfg, state_dir, now)
    ca_cert, _ = ca_files(cfg, state_dir)
    bundle = bundle_file(state_dir)
    checks.append(check_bundle(bundle, ca_cert, castore.system_roots()))
    if cfg is not None:
        checks += check_secrets(cfg, env)
        checks += check_upstream_ca_files(cfg)
        checks += check_op(cfg, env)
    checks += check_logins(paths, env)
    checks.append(check_sandbox(cfg, env, paths))
    if config_path is not None and cfg is not None:
        checks.append(check_tokens(state_dir))
        tokens = _tokens(state_dir)
        for f in integration_files(config_path, sc.kind, paths.home, env):
            checks.append(check_integration(f, cfg.listen, tokens, bundle, ca_cert))
        named = names_for_config(manager, config_path) if manager is not None else []
        checks.append(check_service(manager, named[0] if named else default_name(paths, config_path)))
    checks += check_agent_keys(cfg, env, paths.home)
    if probes:
        from cordon.app.doctor.probes import run_probes  # imports anyio and the proxy only when needed
        checks += run_probes(env, on_check=checks.tell)
    return Report(scope=sel_scope, config_path=config_path, state_dir=state_dir, checks=tuple(checks))


def to_json(report: Report) -> dict[str, Any]:
    return {
        "ok": not report.failed,
        "scope": report.scope,
        "config": str(report.config_path) if report.config_path else None,
        "state_dir": str(report.state_dir),
        "summary": report.counts(),
        "checks": [{"id": c.id, "status": c.status, "message": c.message, "fix": c.fix,
                    "details": dict(c.details)} for c in report.checks],
    }
