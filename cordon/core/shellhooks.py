"""What the shell hooks, the direnv library and the shims say, rendered per shell.

Pure: values in, text out. Activation is a list of small operations (export,
unset, keep a private shell variable, log, ...) that `render` turns into code
for bash, zsh, fish or direnv's bash; all quoting happens here, never in the
shell (direnv's `BashEscape` is the model). Reading PATH, the config and the
disk belongs to `cordon.app.activation`; printing belongs to the CLI.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath

from cordon.core.envvars import quote_fish, quote_sh

PATH_SEP = ":"   # every shell rendered here (bash, zsh, fish, direnv) runs on a POSIX system

# words every one of these shells reads literally, so they need no quotes (readability only)
_SAFE = re.compile(r"[A-Za-z0-9_+=:,./-]+")

SHELLS = ("bash", "zsh", "fish")
RENDER_TARGETS = (*SHELLS, "direnv")
DEFAULT_AGENTS = ("codex", "claude", "gemini", "opencode", "aider", "copilot")

STATE_VAR = "CORDON_HOOK"        # exported: which project is active (names only, never values)
RESTORE_VAR = "_cordon_restore"  # private shell variable: how to put the old values back
GUARD_VAR = "_cordon_guard"      # private shell variable: true while nothing needs re-evaluating
SHIM_MARKER = "# cordon-shim: "  # second line of every shim; stale shims are found by it


# --- quoting ---------------------------------------------------------------------------------

def quote(value: str, shell: str) -> str:
    """One word for `shell` that evaluates to exactly `value` (no expansion of any kind).

    bash, zsh and direnv share POSIX single quotes; fish's single quotes treat
    backslash and quote specially, so those are escaped. NUL cannot be passed.
    """
    if shell not in (*RENDER_TARGETS, "sh"):
        raise ValueError(f"unknown shell {shell!r} (use one of: {', '.join(RENDER_TARGETS)})")
    if "\x00" in value:
        raise ValueError("a shell word cannot hold a NUL byte")
    if _SAFE.fullmatch(value):
        return value
    return quote_fish(value) if shell == "fish" else quote_sh(value)


def command_line(argv: Sequence[str], shell: str) -> str:
    return " ".join(quote(a, shell) for a in argv)


# --- operations ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Export:
    """Set and export an environment variable (PATH is split into a list for fish)."""

    name: str
    value: str


@dataclass(frozen=True)
class Unset:
    """Remove an environment variable or a private shell variable."""

    name: str


@dataclass(frozen=True)
class Keep:
    """Set a private (not exported) shell variable: children never see it."""

    name: str
    value: str


@dataclass(frozen=True)
class EvalVar:
    """Evaluate the code held in a private shell variable, if it is set."""

    name: str


@dataclass(frozen=True)
class Call:
    """Run a command or shell function (direnv's PATH_add, watch_file)."""

    argv: tuple[str, ...]


@dataclass(frozen=True)
class EvalOutput:
    """Evaluate what a command prints (the hook re-running itself after leaving a project)."""

    argv: tuple[str, ...]


@dataclass(frozen=True)
class Log:
    message: str
    error: bool = False


Op = Export | Unset | Keep | EvalVar | Call | EvalOutput | Log


def _render_op(op: Op, shell: str) -> str:
    fish = shell == "fish"
    if isinstance(op, Export):
        if fish:
            if op.name == "PATH":  # fish keeps PATH as a list; direnv does the same split
                return "set -gx PATH " + " ".join(quote(p, shell) for p in op.value.split(PATH_SEP)) + ";"
            return f"set -gx {op.name} {quote(op.value, shell)};"
        return f"export {op.name}={quote(op.value, shell)};"
    if isinstance(op, Unset):
        return f"set -e -g {op.name};" if fish else f"unset {op.name};"
    if isinstance(op, Keep):
        # no `typeset`/`declare`: inside the hook function those would make the variable local
        return f"set -g {op.name} {quote(op.value, shell)};" if fish else f"{op.name}={quote(op.value, shell)};"
    if isinstance(op, EvalVar):
        if fish:
            return f"set -q {op.name}; and eval ${op.name};"
        return f'eval "${{{op.name}-}}";'
    if isinstance(op, Call):
        return command_line(op.argv, shell) + ";"
    if isinstance(op, EvalOutput):
        if fish:
            return command_line(op.argv, shell) + " | source;"
        return f'eval "$({command_line(op.argv, shell)})";'
    if shell == "direnv":
        return f"{'log_error' if op.error else 'log_status'} {quote('cordon: ' + op.message, shell)};"
    return f"printf '%s\\n' {quote('cordon: ' + op.message, shell)} >&2;"


def render(ops: Sequence[Op], shell: str) -> str:
    """The operations as code for `shell` (bash, zsh, fish, or direnv's bash), one per line."""
    if shell not in RENDER_TARGETS:
        raise ValueError(f"unknown shell {shell!r} (use one of: {', '.join(RENDER_TARGETS)})")
    for op in ops:
        if isinstance(op, Export | Unset | Keep | EvalVar) and not _is_name(op.name):
            raise ValueError(f"not a valid variable name: {op.name!r}")
    return "".join(_render_op(op, shell) + "\n" for op in ops)


def _is_name(name: str) -> bool:
    return bool(name) and (name[0].isalpha() or name[0] == "_") and all(
        c.isascii() and (c.isalnum() or c == "_") for c in name)


# --- the re-evaluation guard -----------------------------------------------------------------

@dataclass(frozen=True)
class Guard:
    """When the hook may skip calling cordon: same directory, no new config, config unchanged.

    It is code the prompt hook evaluates before each prompt, so it only uses
    shell builtins (`[[`/`test`, `-e`, `-nt`): a few stat calls, no process.
    """

    pwd: str
    absent: tuple[str, ...] = ()                 # files whose appearance means a new project
    unchanged: tuple[tuple[str, str], ...] = ()  # (file, stamp): re-evaluate when file is newer


def render_guard(guard: Guard, shell: str) -> str:
    if shell == "fish":
        parts = [f'test "$PWD" = {quote(guard.pwd, shell)}']
        parts += [f"not test -e {quote(p, shell)}" for p in guard.absent]
        for f, stamp in guard.unchanged:
            parts += [f"test -e {quote(f, shell)}", f"not test {quote(f, shell)} -nt {quote(stamp, shell)}"]
        return "; and ".join(parts)
    conds = [f"$PWD == {quote(guard.pwd, shell)}"]
    conds += [f"! -e {quote(p, shell)}" for p in guard.absent]
    for f, stamp in guard.unchanged:
        conds += [f"-e {quote(f, shell)}", f"! {quote(f, shell)} -nt {quote(stamp, shell)}"]
    return "[[ " + " && ".join(conds) + " ]]"


# --- what is active: the exported state --------------------------------------------------------

@dataclass(frozen=True)
class HookState:
    """Kept in CORDON_HOOK so the hook (and a subshell) knows what to undo. Names only."""

    config: str
    shims: str
    vars: tuple[str, ...]
    stamp: str  # "<mtime_ns>:<size>" of the config when activated

    def encode(self) -> str:
        return json.dumps({"config": self.config, "shims": self.shims, "vars": list(self.vars),
                           "stamp": self.stamp}, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str | None) -> HookState | None:
        """None for an absent or unreadable value (then nothing is undone but the hook recovers)."""
        if not text:
            return None
        try:
            d = json.loads(text)
            state = cls(config=str(d["config"]), shims=str(d["shims"]),
                        vars=tuple(str(v) for v in d["vars"]), stamp=str(d["stamp"]))
        except (ValueError, KeyError, TypeError):
            return None
        return state if all(_is_name(v) for v in state.vars) else None


# --- PATH edits --------------------------------------------------------------------------------

def path_prepend(path_value: str, entry: str) -> str:
    """`entry` first, and no other copy of it (so re-activation never stacks it twice)."""
    rest = [p for p in path_value.split(PATH_SEP) if p != entry] if path_value else []
    return PATH_SEP.join([entry, *rest])


def path_remove(path_value: str, entry: str) -> str:
    """PATH minus the first copy of `entry`; every other change the user made is kept."""
    parts = path_value.split(PATH_SEP) if path_value else []
    if entry in parts:
        parts.remove(entry)
    return PATH_SEP.join(parts)


# --- plans: enter and leave a project ----------------------------------------------------------

def restore_ops(env: Mapping[str, str], names: Sequence[str]) -> list[Op]:
    """Operations that put `names` back as they are in `env` (set, or unset)."""
    ops: list[Op] = []
    for n in names:
        ops.append(Export(n, env[n]) if n in env else Unset(n))
    return ops


def enter_ops(env: Mapping[str, str], state: HookState, placeholders: Mapping[str, str],
              shell: str, message: str) -> list[Op]:
    """Activate: remember the old values privately, put the shims first on PATH, export placeholders.

    The old values may be real keys the user had exported; they go into a
    private shell variable (never exported, so no agent inherits them) and
    come back on leaving.
    """
    restore = render(restore_ops(env, state.vars), shell)
    ops: list[Op] = [Keep(RESTORE_VAR, restore),
                     Export("PATH", path_prepend(env.get("PATH", ""), state.shims)),
                     Export(STATE_VAR, state.encode())]
    ops += [Export(n, placeholders[n]) for n in state.vars]
    ops.append(Log(message))
    return ops


def leave_ops(env: Mapping[str, str], state: HookState, message: str | None) -> list[Op]:
    """Deactivate: drop the shim directory from PATH, unset the placeholders, restore old values."""
    ops: list[Op] = [Export("PATH", path_remove(env.get("PATH", ""), state.shims))]
    ops += [Unset(n) for n in state.vars]
    ops += [EvalVar(RESTORE_VAR), Unset(RESTORE_VAR), Unset(STATE_VAR)]
    if message:
        ops.append(Log(message))
    return ops


# --- hooks -------------------------------------------------------------------------------------

def render_hook(shell: str, export_argv: Sequence[str]) -> str:
    """The prompt hook for `shell`; `export_argv` prints what to evaluate (`cordon hook export SHELL`).

    Sourcing it twice installs it once; it keeps `$?`; SIGINT is ignored while
    the printed code is evaluated so Ctrl-C cannot leave half an activation.
    """
    cmd = command_line(export_argv, shell)
    if shell == "bash":
        return f"""\
_cordon_hook() {{
  local _cordon_status=$? _cordon_int
  if ! eval "${{{GUARD_VAR}:-false}}"; then
    _cordon_int=$(trap -p SIGINT)
    trap -- '' SIGINT
    eval "$({cmd})"
    eval "${{_cordon_int:-trap - SIGINT}}"
  fi
  return $_cordon_status
}}
if [[ "$(declare -p PROMPT_COMMAND 2>/dev/null)" != *_cordon_hook* ]]; then
  if [[ "$(declare -p PROMPT_COMMAND 2>&1)" == "declare -a"* ]]; then
    PROMPT_COMMAND=(_cordon_hook "${{PROMPT_COMMAND[@]}}")
  else
    # shellcheck disable=SC2128,SC2178  # the string form of PROMPT_COMMAND
    PROMPT_COMMAND="_cordon_hook${{PROMPT_COMMAND:+;$PROMPT_COMMAND}}"
  fi
fi
"""
    if shell == "zsh":
        return f"""\
_cordon_hook() {{
  local _cordon_status=$? _cordon_out
  if ! eval "${{{GUARD_VAR}:-false}}"; then
    # zsh resets ignored signals in $(...), so capture first (cordon ignores SIGINT itself)
    _cordon_out="$({cmd})"
    setopt localoptions localtraps
    trap -- '' INT
    eval "$_cordon_out"
  fi
  return $_cordon_status
}}
typeset -ag precmd_functions chpwd_functions
if (( ! ${{precmd_functions[(I)_cordon_hook]}} )); then
  precmd_functions=(_cordon_hook $precmd_functions)
fi
if (( ! ${{chpwd_functions[(I)_cordon_hook]}} )); then
  chpwd_functions=(_cordon_hook $chpwd_functions)
fi
"""
    if shell == "fish":
        # fish has no SIG_IGN for a pipeline; `cordon hook export` ignores SIGINT itself.
        # Redefining a function replaces it and its event bindings: sourcing twice is harmless.
        return f"""\
function _cordon_hook --on-event fish_prompt --on-variable PWD
    set -l _cordon_status $status
    if not set -q {GUARD_VAR}; or not eval ${GUARD_VAR}
        {cmd} | source
    end
    return $_cordon_status
end
"""
    raise ValueError(f"no prompt hook for {shell!r} (use one of: {', '.join(SHELLS)})")


def render_direnv_snippet(library: str, cordon_bin: str | None, version: str) -> str:
    """The lines `cordon hook direnv` prints for ~/.config/direnv/direnvrc."""
    lines = [f"# cordon {version}: `use cordon [AGENT...]` in an .envrc (library: {library})"]
    if cordon_bin:
        lines.append(f"cordon_bin={quote(cordon_bin, 'direnv')}")
    lines.append(f"source {quote(library, 'direnv')}")
    return "\n".join(lines) + "\n"


# --- shims -------------------------------------------------------------------------------------

def render_shim(name: str, real: str, cordon_argv: Sequence[str]) -> str:
    """A POSIX sh script that runs `real` (an absolute path fixed now) under `cordon exec`.

    The path is fixed when the shim is written, so a shim never finds itself on
    PATH, whatever PATH holds later. If the binary goes away the shim says how
    to refresh instead of failing with a bare "not found".
    """
    if not PurePath(real).is_absolute():
        raise ValueError(f"shim target must be an absolute path: {real!r}")
    q = quote(real, "sh")
    gone = quote(f"cordon: {real} is gone; refresh the shims (`direnv reload`, or leave and re-enter "
                 f"the directory)", "sh")
    return (
        "#!/bin/sh\n"
        f"{SHIM_MARKER}{name} -> {_one_line(real)} (rewritten on each activation; edits are lost)\n"
        f"if [ ! -x {q} ]; then\n"
        f"  printf '%s\\n' {gone} >&2\n"
        "  exit 127\n"
        "fi\n"
        "# direnv keeps the values it replaced in DIRENV_DIFF, real keys included: not for the agent\n"
        "unset DIRENV_DIFF\n"
        f"exec {command_line(cordon_argv, 'sh')} exec -- {q} \"$@\"\n"
    )


def _one_line(text: str) -> str:
    return text.replace("\n", "\\n").replace("\r", "\\r")


def is_shim_text(head: bytes) -> bool:
    """True for the first bytes of a file written by `render_shim`."""
    lines = head.split(b"\n", 2)
    return len(lines) >= 2 and lines[0] == b"#!/bin/sh" and lines[1].startswith(SHIM_MARKER.encode())
