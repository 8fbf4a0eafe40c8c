"""Activation: shims on PATH plus exported placeholders, for direnv, prompt hooks and nix shells.

Finds the agents on PATH, writes one shim per agent, reads the routes'
placeholders, and returns the operations `cordon.core.shellhooks` renders. It
starts no process and no proxy: each shim runs `cordon exec`, so the proxy
lives exactly as long as the agent. It never reads a secret.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cordon.core.envvars import placeholder_vars
from cordon.core.errors import ConfigError, CordonError, UsageError
from cordon.core.model import Config
from cordon.core.shellhooks import (
    DEFAULT_AGENTS,
    GUARD_VAR,
    STATE_VAR,
    Call,
    EvalOutput,
    Export,
    Guard,
    HookState,
    Keep,
    Log,
    Op,
    enter_ops,
    is_shim_text,
    leave_ops,
    path_prepend,
    render_guard,
    render_shim,
)
from cordon.store.atomic import atomic_write
from cordon.store.config import load_config
from cordon.store.paths import CONFIG_NAME, Paths
from cordon.store.scope import resolve_scope

STAMP_NAME = ".cordon-stamp"  # touched after each activation; the prompt hook's guard compares against it


@dataclass(frozen=True)
class Agent:
    name: str   # the shim's file name
    real: str   # absolute path of the binary the shim runs


# --- finding agents and writing shims ----------------------------------------------------------

def _is_shim(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return is_shim_text(f.read(256))
    except OSError:
        return False


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _check_name(name: str) -> None:
    if not name or "/" in name or name.startswith((".", "-")) or any(c.isspace() for c in name):
        raise UsageError(f"'{name}' is not an agent name",
                         "give a command name found on PATH (e.g. codex) or an absolute path")


def resolve_agents(names: Sequence[str], path_value: str, shim_dir: Path) -> tuple[list[Agent], list[str]]:
    """Absolute paths of `names` on PATH, skipping `shim_dir`, relative entries and any cordon shim.

    Returns (found, not found). An absolute name is taken as is. Skipping every
    cordon shim (not only ours) means a shim never runs another project's shim.
    """
    ours = os.path.realpath(shim_dir)
    dirs = [d for d in path_value.split(os.pathsep)
            if d and os.path.isabs(d) and os.path.realpath(d) != ours]
    found: list[Agent] = []
    missing: list[str] = []
    seen: set[str] = set()
    for name in names:
        if os.path.isabs(name):
            p = Path(name)
            _check_name(p.name)
            if _executable(p) and not _is_shim(p):
                agent: Agent | None = Agent(p.name, str(p))
            else:
                agent = None
        else:
            _check_name(name)
            agent = next((Agent(name, os.path.join(d, name)) for d in dirs
                          if _executable(Path(d, name)) and not _is_shim(Path(d, name))), None)
        if agent is None:
            missing.append(name)
        elif agent.name not in seen:
            seen.add(agent.name)
            found.append(agent)
    return found, missing


def write_shims(shim_dir: Path, agents: Sequence[Agent], cordon_argv: Sequence[str]) -> None:
    """Make `shim_dir` hold exactly one shim per agent; other cordon shims there are removed."""
    try:
        _write_shims(shim_dir, agents, cordon_argv)
    except OSError as e:
        raise CordonError(f"cannot write the shims in {shim_dir}: {e.strerror or e}",
                          "check that the directory (or its parent) is writable") from None


def _write_shims(shim_dir: Path, agents: Sequence[Agent], cordon_argv: Sequence[str]) -> None:
    shim_dir.mkdir(parents=True, exist_ok=True)
    wanted = {a.name: render_shim(a.name, a.real, cordon_argv) for a in agents}
    for entry in shim_dir.iterdir():
        if entry.name not in wanted and entry.is_file() and _is_shim(entry):
            entry.unlink()
    for name, text in wanted.items():
        p = shim_dir / name
        try:
            same = p.read_text(encoding="utf-8") == text and os.access(p, os.X_OK)
        except (OSError, UnicodeDecodeError):
            same = False
        if not same:
            atomic_write(p, text, mode=0o755)
    stamp = shim_dir / STAMP_NAME
    stamp.touch()
    os.utime(stamp)


# --- config ------------------------------------------------------------------------------------

def placeholders_for(config: Config) -> tuple[dict[str, str], list[str]]:
    """The routes' placeholders to export, and the names left alone.

    A variable that is a route's `env` secret source is left alone: replacing
    it in the shell would hand `cordon exec` the placeholder as the secret.
    """
    sources = {r.auth.secret.var for r in config.routes if r.auth.secret.source == "env" and r.auth.secret.var}
    wanted = placeholder_vars(config.routes)
    keep = {k: v for k, v in wanted.items()
            if k not in sources and k != "PATH" and not k.startswith("CORDON_")}
    return keep, sorted(set(wanted) - set(keep))


def config_stamp(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return "missing"
    return f"{st.st_mtime_ns}:{st.st_size}"


def _load_placeholders(path: Path, scope: str) -> tuple[dict[str, str], list[Op]]:
    try:
        config = load_config(path, scope)
    except ConfigError as e:
        return {}, [Log(f"{e.message} (no placeholders exported; `cordon exec` will report it too)",
                        error=True)]
    values, skipped = placeholders_for(config)
    logs: list[Op] = [Log(f"{n} left as is: a route reads its secret from it") for n in skipped]
    return values, logs


def _agents_message(agents: Sequence[Agent], missing: Sequence[str], explicit: bool) -> list[Op]:
    ops: list[Op] = []
    if explicit:
        ops += [Log(f"no '{m}' on PATH: no shim for it", error=True) for m in missing]
    elif not agents:
        ops.append(Log(f"none of {', '.join(DEFAULT_AGENTS)} is on PATH: no shims yet "
                       "(name agents explicitly, or re-activate after installing one)"))
    return ops


def _summary(agents: Sequence[Agent], placeholders: Mapping[str, str]) -> str:
    shims = ", ".join(a.name for a in agents) or "none"
    ph = ", ".join(placeholders) or "none"
    return f"shims: {shims}; placeholders: {ph}"


# --- direnv and nix shells: `use cordon` -----------------------------------------------------

def use_ops(env: Mapping[str, str], paths: Paths, shell: str, shim_dir: Path | None,
            agent_names: Sequence[str], cordon_argv: Sequence[str]) -> list[Op]:
    """One-shot activation for a shell that undoes itself (direnv) or simply ends (nix develop).

    For direnv the shim directory goes through `PATH_add` and the config files
    through `watch_file`, so editing or creating cordon.toml re-runs `.envrc`.
    """
    sc = resolve_scope(paths, None, None)
    cfg, scope = sc.config_path, sc.name
    shim_dir = shim_dir or _hook_shim_dir(paths, cfg.parent if cfg and scope == "project" else paths.cwd)
    ops: list[Op] = []
    placeholders: dict[str, str] = {}
    if cfg is not None:
        placeholders, logs = _load_placeholders(cfg, scope)
        ops += logs
    else:
        ops.append(Log("no cordon.toml: agents run with zero-config routes (see `cordon exec --help`)"))
    names = list(agent_names) or list(DEFAULT_AGENTS)
    agents, missing = resolve_agents(names, env.get("PATH", ""), shim_dir)
    write_shims(shim_dir, agents, cordon_argv)
    ops += _agents_message(agents, missing, explicit=bool(agent_names))
    if shell == "direnv":
        ops.append(Call(("PATH_add", str(shim_dir))))
        watched = [paths.cwd / CONFIG_NAME]
        if cfg is not None and cfg != watched[0]:
            watched.append(cfg)
        ops += [Call(("watch_file", str(w))) for w in watched]
    else:
        ops.append(Export("PATH", path_prepend(env.get("PATH", ""), str(shim_dir))))
    ops += [Export(k, v) for k, v in placeholders.items()]
    ops.append(Log(_summary(agents, placeholders)))
    return ops


# --- prompt hooks: `cordon hook export SHELL` -----------------------------------------------

def _hook_shim_dir(paths: Paths, project_dir: Path) -> Path:
    """Prompt hooks keep shims in cordon's per-project state, not in the user's tree."""
    return paths.state_dir("project", project_dir) / "shims"


def _project_config(paths: Paths) -> Path | None:
    """The nearest cordon.toml above the working directory; the user-scope file does not count."""
    found = paths.find_project_config()
    if found is not None and found.resolve() == paths.user_config.resolve():
        return None
    return found


def _logical_pwd(env: Mapping[str, str], cwd: Path) -> str:
    """$PWD as the shell sees it (symlinks kept), when it names the working directory."""
    pwd = env.get("PWD", "")
    with contextlib.suppress(OSError):
        if pwd and os.path.isabs(pwd) and os.path.samefile(pwd, cwd):
            return pwd
    return str(cwd)


def _guard(env: Mapping[str, str], paths: Paths, shell: str, state: HookState | None) -> Keep:
    """Skip cordon until the directory changes, a closer cordon.toml appears, or the config changes."""
    here = paths.cwd.resolve()
    stop = Path(state.config).parent if state else None
    absent: list[str] = []
    for d in (here, *here.parents):
        if stop is not None and d == stop:
            break
        absent.append(str(d / CONFIG_NAME))
    unchanged = ((state.config, str(Path(state.shims) / STAMP_NAME)),) if state else ()
    g = Guard(pwd=_logical_pwd(env, paths.cwd), absent=tuple(absent), unchanged=unchanged)
    return Keep(GUARD_VAR, render_guard(g, shell))


def export_ops(env: Mapping[str, str], paths: Paths, shell: str, agent_names: Sequence[str],
               cordon_argv: Sequence[str], export_argv: Sequence[str]) -> list[Op]:
    """What the prompt hook evaluates now: nothing, enter, leave, or leave then enter again.

    Leaving and entering happen in two evaluations (the leave ends by re-running
    this command), because the values to restore live in a private shell
    variable this process cannot see; the second run reads the restored env.
    """
    state = HookState.decode(env.get(STATE_VAR))
    target = _project_config(paths)
    if state is not None:
        if target is not None and str(target) == state.config and config_stamp(target) == state.stamp:
            return [_guard(env, paths, shell, state)]
        moving = target is None or str(target) != state.config
        ops = leave_ops(env, state, f"deactivated {Path(state.config).parent}" if moving else None)
        if target is not None:
            return [*ops, EvalOutput(tuple(export_argv))]
        return [*ops, _guard(env, paths, shell, None)]
    if target is None:
        return [_guard(env, paths, shell, None)]

    shim_dir = _hook_shim_dir(paths, target.parent)
    stamp = config_stamp(target)   # read before the config, so an edit in between triggers a reload
    placeholders, ops = _load_placeholders(target, "project")
    names = list(agent_names) or list(DEFAULT_AGENTS)
    agents, missing = resolve_agents(names, env.get("PATH", ""), shim_dir)
    write_shims(shim_dir, agents, cordon_argv)
    ops += _agents_message(agents, missing, explicit=bool(agent_names))
    state = HookState(config=str(target), shims=str(shim_dir), vars=tuple(placeholders), stamp=stamp)
    ops += enter_ops(env, state, placeholders, shell,
                     f"activated {target.parent} ({_summary(agents, placeholders)})")
    ops.append(_guard(env, paths, shell, state))
    return ops
