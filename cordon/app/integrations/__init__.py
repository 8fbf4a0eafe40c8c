"""`cordon setup codex|claude-code` and `cordon integration disable`: orchestration.

Prepares a scope for a long-lived proxy (`cordon start` on `listen`): its CA,
its `cordon.toml` with the provider's route, the merged bundle and a client
token; then asks the integration module which files it wants and applies them
through `cordon.store.userfiles` (backups, exact undo). Prints nothing: the CLI renders the
returned result. Never starts a proxy and never touches the OS trust store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from cordon.app.integrations import envcontract, scaffold
from cordon.core.errors import CordonError, UsageError
from cordon.core.model import Config
from cordon.core.routes import PRESETS, Preset, normalize_host
from cordon.store import scope as store_scope
from cordon.store.config import load_config
from cordon.store.paths import Paths
from cordon.store.scope import Scope
from cordon.store.userfiles import (
    Change,
    Record,
    apply_target,
    decode_text,
    delete_record,
    load_record,
    read_bytes,
    remove_empty_dirs,
    save_record,
    undo_file,
)


def resolve_scope(paths: Paths, config: str | None, scope: str | None) -> Scope:
    """Setup's scope: the project by default (cordon.toml here or in the nearest parent that has one)."""
    return store_scope.resolve_scope(paths, config, scope, default="project")


def _module(name: str) -> ModuleType:
    from cordon.app.integrations import claude_code, codex
    mods = {"codex": codex, "claude-code": claude_code}
    if name not in mods:
        raise UsageError(f"unknown integration '{name}'", "use one of: " + ", ".join(mods))
    return mods[name]


INTEGRATIONS = ("codex", "claude-code")


LOGIN_OF = {"codex": "codex", "claude-code": "claude"}   # integration -> its subscription login


def preset_for(name: str) -> Preset:
    return PRESETS[_module(name).PRESET]


def route_missing(scope: Scope, name: str, paths: Paths | None = None) -> Preset | None:
    """The preset whose route setup would add (None: the config already has a route for its host,
    or cordon holds the client's subscription login, whose own routes setup adds)."""
    preset = preset_for(name)
    if paths is not None:
        from cordon.app.logins import held_logins
        if LOGIN_OF.get(name) in held_logins(paths):
            return None
    if not scope.config_file.is_file():
        return preset
    cfg = load_config(scope.config_file, scope.kind)
    hosts = {normalize_host(r.host) for r in cfg.routes}
    return None if normalize_host(preset.host) in hosts else preset


@dataclass(frozen=True)
class IntegrationContext:
    """What an integration module builds its files from."""

    scope: Scope
    config: Config
    env: Mapping[str, str]
    paths: Paths
    vars: Mapping[str, str]          # the env contract for this client (token in the proxy URLs)
    proxy_vars: Mapping[str, str]    # only the proxy and CA variables (no placeholders)


@dataclass
class SetupResult:
    integration: str
    scope: Scope
    port: int
    ca_path: Path
    ca_created: bool
    config_created: bool
    route_added: str | None
    route_name: str | None
    changes: list[Change] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class DisableResult:
    integration: str
    scope: Scope
    found: bool
    changes: list[Change] = field(default_factory=list)
    token_revoked: bool = False


def setup(paths: Paths, env: Mapping[str, str], name: str, scope: Scope, *, add_route: bool,
          token: str | None = None, command: str | None = None) -> SetupResult:
    """Everything `cordon setup <name>` does; idempotent (a repeat changes no byte).

    `token` replaces the client's token from tokens.toml (used while it is being rotated);
    `command` is the command a refusal's hint tells the user to run again.
    """
    mod = _module(name)
    preset = preset_for(name)
    preflight(paths, env, name, scope, command)
    from cordon.app.logins import ensure_login_routes, held_logins
    login = LOGIN_OF.get(name)
    if login in held_logins(paths):
        # subscription mode: the login's routes, not an API-key route that would override the login
        ensure_login_routes(paths, scope.config_file, login or "")
        add_route = False
    config_created, route_added = scaffold.ensure_config(scope.config_file, preset, add_route=add_route)
    if route_added:
        from cordon.app.allow import approve_written
        approve_written(paths, scope.config_file, [route_added])
    cfg = load_config(scope.config_file, scope.kind)
    if cfg.listen == 0:
        raise CordonError(f"{scope.config_file}: listen = 0 picks a new port on every start, so "
                          f"{name} cannot be pointed at it",
                          "set a fixed port, e.g. listen = 6790")
    material = scaffold.ensure_ca_and_bundle(cfg, scope.state_dir, env)
    if token is None:
        token = scaffold.client_token(scope.state_dir, mod.TOKEN)
    vars_ = envcontract.contract_vars(port=cfg.listen, token=token, bundle_path=material.bundle_path,
                                      ca_path=material.ca_path, routes=cfg.routes, env=env)
    ctx = IntegrationContext(scope=scope, config=cfg, env=env, paths=paths, vars=vars_,
                  proxy_vars=envcontract.without_placeholders(vars_, cfg.routes))
    record = load_record(scope.state_dir, name) or Record(name, scope.kind)
    changes = [apply_target(t, record, lambda: save_record(scope.state_dir, record)) for t in mod.targets(ctx)]
    save_record(scope.state_dir, record)
    route = next((r for r in cfg.routes if normalize_host(r.host) == preset.host), None)
    result = SetupResult(integration=name, scope=scope, port=cfg.listen, ca_path=material.ca_path,
                         ca_created=material.ca_created, config_created=config_created,
                         route_added=route_added, route_name=route.name if route else None,
                         changes=changes)
    result.notes = list(mod.notes(ctx))
    result.next_steps = [*mod.next_steps(ctx), *scaffold.secret_steps(cfg, env, route)]
    return result


def preflight(paths: Paths, env: Mapping[str, str], name: str, scope: Scope,
              command: str | None = None) -> None:
    """Refuse before writing anything if one of the agent's files cannot be edited."""
    files = _module(name).files(scope, env, paths)
    not_during_a_session(paths, [p for p, _ in files], command or f"cordon setup {name}{_scope_flag(scope)}")
    for path, editor in files:
        editor.check(decode_text(path, read_bytes(path)))


def _scope_flag(scope: Scope) -> str:
    return " --scope user" if scope.kind == "user" else ""


def not_during_a_session(paths: Paths, files: Iterable[Path], command: str) -> None:
    """Refuse while a `cordon exec` session has its own values in one of these files.

    The session restores the file as it found it when it ends, which would undo
    (or, for `disable`, bring back) whatever this command changed in the meantime.
    """
    from cordon.store.userfiles import holders_of
    for path in files:
        ids = holders_of(paths, path)
        if ids:
            raise CordonError(f"a running `cordon exec` session ({ids[-1]}) has its proxy settings in {path}",
                              f"run `{command}` again after that session has ended")


def is_set_up(scope: Scope, name: str) -> bool:
    return load_record(scope.state_dir, name) is not None


def on_token_rotated(client: str, token: str, *, scope: Scope, env: Mapping[str, str],
                     paths: Paths) -> list[Path]:
    """`cordon token rotate <client>`: rewrite that client's files with the new token first.

    Returns the files changed ([] for a client no integration of this scope manages).
    """
    if client not in INTEGRATIONS or scope.config_file is None or not scope.config_file.is_file():
        return []
    if not is_set_up(scope, client):
        return []
    result = setup(paths, env, client, scope, add_route=False, token=token,
                   command=f"cordon token rotate {client}{_scope_flag(scope)}")
    return [c.path for c in result.changes if c.action in ("created", "updated")]


def disable(paths: Paths, env: Mapping[str, str], name: str, scope: Scope) -> DisableResult:
    """Undo `setup`: restore each file exactly, or take out only cordon's entries."""
    mod = _module(name)
    record = load_record(scope.state_dir, name)
    result = DisableResult(integration=name, scope=scope, found=record is not None)
    if record is None:
        return result
    not_during_a_session(paths, record.files, f"cordon integration disable {name}{_scope_flag(scope)}")
    editors = {e.kind: e for _, e in mod.files(scope, env, paths)}
    for rec in record.files.values():
        result.changes.append(undo_file(rec, editors[rec.kind]))
    remove_empty_dirs(record)
    delete_record(scope.state_dir, name)
    result.token_revoked = scaffold.revoke_token(scope.state_dir, mod.TOKEN)
    return result


@dataclass
class PrepareResult:
    scope: Scope
    config_created: bool
    ca_path: Path
    ca_created: bool
    bundle_path: Path


def prepare(env: Mapping[str, str], scope: Scope) -> PrepareResult:
    """`cordon setup` with no integration: cordon.toml, CA, bundle and the default token."""
    created = not scope.config_file.exists()
    if created:
        scaffold.ensure_config(scope.config_file, PRESETS["openai"], add_route=False)
    cfg = load_config(scope.config_file, scope.kind)
    material = scaffold.ensure_ca_and_bundle(cfg, scope.state_dir, env)
    scaffold.client_token(scope.state_dir, "default")
    return PrepareResult(scope=scope, config_created=created, ca_path=material.ca_path,
                         ca_created=material.ca_created, bundle_path=material.bundle_path)
