"""`cordon allow` / `cordon deny`: approve a project cordon.toml as it is, or withdraw that.

Like `direnv allow`: `cordon exec` and `cordon start` use a cordon.toml outside
cordon's config directory only as the user last approved it (store/approvals).
Not to be confused with `cordon trust` (app/trust.py), which puts a scope's CA
into the operating system's trust store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cordon.core.errors import ConfigError
from cordon.core.model import Route
from cordon.store import approvals
from cordon.store.config import load_config
from cordon.store.paths import Paths
from cordon.store.scope import Scope, resolve_scope


@dataclass(frozen=True)
class AllowResult:
    path: Path
    needed: bool                 # False: cordon's own file, approval does not apply
    changes: tuple[str, ...]     # what was not approved before
    routes: tuple[Route, ...]    # every route now approved


def _scope(paths: Paths, config: str | None, scope: str | None) -> Scope:
    sc = resolve_scope(paths, config, scope)
    if sc.config_path is None:
        raise ConfigError("no cordon.toml here, in a parent directory, or in the user scope",
                          "pass --config PATH, or run it in the project's directory")
    return sc


def allow(paths: Paths, config: str | None = None, scope: str | None = None) -> AllowResult:
    cfg = _scope(paths, config, scope).config
    assert cfg.path is not None
    if not approvals.needs_approval(paths.cordon_home, cfg):
        return AllowResult(cfg.path, False, (), cfg.routes)
    before = approvals.unapproved(paths.cordon_home, cfg)
    approvals.approve(paths.cordon_home, cfg)
    return AllowResult(cfg.path, True, tuple(before), cfg.routes)


def deny(paths: Paths, config: str | None = None, scope: str | None = None) -> tuple[Path, bool]:
    """(the file, whether an approval was withdrawn). The file need not parse."""
    path = _scope(paths, config, scope).config_file
    return path, approvals.revoke(paths.cordon_home, path)


def approve_written(paths: Paths, path: Path, names: list[str]) -> None:
    """After cordon itself wrote routes `names` into `path`: approve those, nothing else."""
    cfg = load_config(path, "explicit")
    if approvals.needs_approval(paths.cordon_home, cfg):
        approvals.approve(paths.cordon_home, cfg, names)
