"""A scope: the cordon.toml a command works on, and the state directory that belongs to it.

`resolve_scope` is the one place that turns --config/--scope (or discovery from
the working directory) into a `Scope`; every command goes through it, so
`setup`, `start`, `exec`, `status`, `doctor` and `token` agree on which state
directory (CA, tokens, run record, integration records) a config owns.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

from cordon.core.errors import ConfigError, UsageError
from cordon.core.model import Config
from cordon.store.config import load_config
from cordon.store.paths import CONFIG_NAME, Paths

Selection = Literal["project", "user", "explicit", "none"]
Kind = Literal["project", "user"]


@dataclass(frozen=True)
class Scope:
    """Where one configuration lives.

    `name` says how it was chosen (--config is "explicit"; "none" when no
    cordon.toml exists anywhere yet); `kind` is what it is: the user config or
    a project's (an explicit path to the user config is the user scope).
    `project_dir` is the project's directory (None for the user scope).
    """

    name: Selection
    kind: Kind
    config_path: Path | None
    state_dir: Path
    project_dir: Path | None
    cordon_home: Path

    @property
    def config_file(self) -> Path:
        """The cordon.toml this scope reads, or would create (./cordon.toml when there is none yet)."""
        if self.config_path is not None:
            return self.config_path
        assert self.project_dir is not None
        return self.project_dir / CONFIG_NAME

    @cached_property
    def config(self) -> Config:
        """The parsed cordon.toml (read on first use; ConfigError names the fix)."""
        if self.config_path is None:
            raise ConfigError("no cordon.toml here, in a parent directory, or in the user scope",
                              "create one with `cordon setup` or `cordon route add`, or pass --config PATH")
        return load_config(self.config_path, self.name)

    @property
    def run_record(self) -> Path:
        from cordon.store.runrecord import run_record_path
        return run_record_path(self.state_dir)

    @property
    def ca_cert(self) -> Path:
        from cordon.store.castore import ca_paths
        return self.config.tls.ca_cert_path or ca_paths(self.state_dir)[0]

    @property
    def ca_key(self) -> Path:
        from cordon.store.castore import ca_paths
        return self.config.tls.ca_key_path or ca_paths(self.state_dir)[1]

    @property
    def bundle(self) -> Path:
        from cordon.store.castore import bundle_path
        return bundle_path(self.state_dir)

    @property
    def secrets_gen_file(self) -> Path:
        """Bumped by `cordon secret set|delete` (one file for every scope: keyring entries are
        shared); a running proxy re-resolves its secrets when it changes."""
        from cordon.store.generation import generation_file
        return generation_file(self.cordon_home)


def resolve_scope(paths: Paths, config: str | None, scope: str | None, *,
                  default: Literal["discover", "project"] = "discover") -> Scope:
    """Which cordon.toml a command uses: --config, --scope, else by `default`.

    "discover": the nearest project file (this directory or a parent), else the
    user file, else nothing yet (name "none", state in this directory's project).
    "project": the nearest project file, else ./cordon.toml (which may not exist).
    """
    if config and scope:
        raise UsageError("--config and --scope cannot be used together", "pass only one of them")
    name: Selection
    path: Path | None
    if config:
        p = Path(config)
        path, name = (p if p.is_absolute() else paths.cwd / p), "explicit"
    elif scope == "user":
        path, name = paths.user_config, "user"
    elif scope == "project" or default == "project":
        path, name = (paths.find_project_config() or paths.cwd / CONFIG_NAME), "project"
    else:
        path, name = paths.find_project_config(), "project"
        if path is None and paths.user_config.exists():
            path, name = paths.user_config, "user"
        elif path is None:
            name = "none"
    state_dir = paths.state_dir_for_config(path, name)
    if path is None:
        return Scope(name, "project", None, state_dir, paths.cwd, paths.cordon_home)
    path = path.resolve()
    kind: Kind = "user" if name == "user" or path == paths.user_config.resolve() else "project"
    return Scope(name, kind, path, state_dir, None if kind == "user" else path.parent, paths.cordon_home)


def load_scope(paths: Paths, config: str | None, scope: str | None) -> Scope:
    """`resolve_scope` for a command that needs an existing, valid config (parsed now)."""
    sc = resolve_scope(paths, config, scope)
    sc.config  # noqa: B018 (parse now: a bad file fails before anything starts)
    return sc
