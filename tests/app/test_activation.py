"""cordon.app.activation and `cordon hook`: agents on PATH, shims on disk, enter/leave plans, the CLI."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from cordon.app.activation import STAMP_NAME, config_stamp, export_ops, resolve_agents, use_ops, write_shims
from cordon.core.shellhooks import (
    GUARD_VAR,
    RESTORE_VAR,
    STATE_VAR,
    Call,
    EvalOutput,
    Export,
    HookState,
    Keep,
    Log,
    Unset,
    is_shim_text,
    render_shim,
)
from cordon.store.paths import Paths
from tests import configs
from tests.conftest import REPO, write

OPENAI = configs.openai(keyring="openai", placeholder_env=configs.CODEX_VARS)
OPENAI_ROUTE = configs.render(OPENAI)

ENV_SOURCE = configs.anthropic(env="ANTHROPIC_API_KEY", placeholder_env=["ANTHROPIC_API_KEY", "CLAUDE_KEY"])
ENV_SOURCE_ROUTE = configs.render(ENV_SOURCE)

ME = ["/opt/cordon/bin/cordon"]


def exe(path: Path, text: str = "#!/bin/sh\necho real\n") -> Path:
    write(path, text)
    path.chmod(0o755)
    return path


@pytest.fixture
def agents_bin(tmp_path: Path) -> Path:
    b = tmp_path / "agents"
    exe(b / "codex")
    exe(b / "claude")
    return b


def env_for(home: Path, path: str, **extra: str) -> dict[str, str]:
    return {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "PATH": path, **extra}


# --- agents and shims ---------------------------------------------------------------------------

def test_resolve_agents_skips_shims_relative_entries_and_our_dir(tmp_path: Path, agents_bin: Path) -> None:
    ours = tmp_path / "ours"
    other_shims = tmp_path / "other-project-shims"
    write_shims(other_shims, [], ME)
    exe(other_shims / "codex", render_shim("codex", str(agents_bin / "codex"), ME))
    exe(ours / "claude", "#!/bin/sh\n")           # whatever is in our dir is never a target
    exe(tmp_path / "rel" / "gemini")
    path = os.pathsep.join([str(ours), str(other_shims), "rel", "", str(agents_bin)])
    found, missing = resolve_agents(["codex", "claude", "gemini", str(agents_bin / "claude")], path, ours)
    assert [(a.name, a.real) for a in found] == [("codex", str(agents_bin / "codex")),
                                                ("claude", str(agents_bin / "claude"))]
    assert missing == ["gemini"]


@pytest.mark.parametrize("bad", ["../codex", ".hidden", "-rf", "two words", ""])
def test_resolve_agents_rejects_names_that_are_not_commands(bad: str, tmp_path: Path) -> None:
    from cordon.core.errors import UsageError
    with pytest.raises(UsageError):
        resolve_agents([bad], "/usr/bin", tmp_path)


def test_write_shims_replaces_only_cordon_shims(tmp_path: Path, agents_bin: Path) -> None:
    d = tmp_path / "shims"
    found, _ = resolve_agents(["codex", "claude"], str(agents_bin), d)
    write_shims(d, found, ME)
    exe(d / "mine", "#!/bin/sh\n# not a shim\n")
    assert sorted(p.name for p in d.iterdir()) == sorted([STAMP_NAME, "claude", "codex", "mine"])
    write_shims(d, found[:1], ME)
    assert sorted(p.name for p in d.iterdir()) == sorted([STAMP_NAME, "codex", "mine"])
    text = (d / "codex").read_text()
    assert is_shim_text(text.encode()) and f"exec -- {agents_bin}/codex" in text
    assert os.access(d / "codex", os.X_OK)


def test_write_shims_reports_an_unwritable_directory(tmp_path: Path) -> None:
    from cordon.core.errors import CordonError
    blocker = write(tmp_path / "file", "")
    with pytest.raises(CordonError, match="cannot write the shims"):
        write_shims(blocker / "shims", [], ME)


# --- `use cordon` (direnv, nix shells) ----------------------------------------------------------

def test_use_for_direnv_watches_the_config_and_exports_placeholders(home: Path, tmp_path: Path,
                                                                     agents_bin: Path) -> None:
    proj = tmp_path / "proj"
    configs.write(proj / "cordon.toml", OPENAI, ENV_SOURCE)
    sub = proj / "sub"
    sub.mkdir()
    shim_dir = proj / ".direnv" / "cordon" / "bin"
    env = env_for(home, str(agents_bin), ANTHROPIC_API_KEY="real-anthropic")
    ops = use_ops(env, Paths.from_env(env, sub), "direnv", shim_dir, [], ME)
    assert Call(("PATH_add", str(shim_dir))) in ops
    assert Call(("watch_file", str(sub / "cordon.toml"))) in ops
    assert Call(("watch_file", str(proj / "cordon.toml"))) in ops
    exports = {op.name: op.value for op in ops if isinstance(op, Export)}
    # the env-sourced secret stays; its sibling placeholder is exported
    assert exports == {"OPENAI_API_KEY": "dummy-replaced-by-cordon", "CODEX_API_KEY": "dummy-replaced-by-cordon",
                       "CLAUDE_KEY": "dummy-replaced-by-cordon"}
    assert any(isinstance(op, Log) and "ANTHROPIC_API_KEY left as is" in op.message for op in ops)
    assert sorted(p.name for p in shim_dir.iterdir()) == sorted([STAMP_NAME, "claude", "codex"])


def test_use_without_config_still_shims_and_exports_nothing(home: Path, tmp_path: Path, agents_bin: Path) -> None:
    proj = tmp_path / "bare"
    proj.mkdir()
    env = env_for(home, str(agents_bin))
    ops = use_ops(env, Paths.from_env(env, proj), "bash", None, ["codex", "nope"], ME)
    path_ops = [op for op in ops if isinstance(op, Export)]
    assert len(path_ops) == 1 and path_ops[0].name == "PATH"
    shim_dir = Path(path_ops[0].value.split(os.pathsep)[0])
    assert (shim_dir / "codex").is_file() and shim_dir.is_relative_to(home / ".config" / "cordon")
    assert any(isinstance(op, Log) and op.error and "'nope'" in op.message for op in ops)


def test_use_reports_a_broken_config_but_still_shims(home: Path, tmp_path: Path, agents_bin: Path) -> None:
    proj = tmp_path / "broken"
    write(proj / "cordon.toml", "[[routes]]\nname = 1\n")
    env = env_for(home, str(agents_bin))
    ops = use_ops(env, Paths.from_env(env, proj), "direnv", proj / "s", [], ME)
    errors = [op for op in ops if isinstance(op, Log) and op.error]
    assert errors and "cordon.toml" in errors[0].message
    assert Call(("PATH_add", str(proj / "s"))) in ops


# --- prompt hooks: the transitions ----------------------------------------------------------------

def _apply(env: dict[str, str], ops: list, private: dict[str, str]) -> None:  # type: ignore[type-arg]
    """A tiny model of a shell evaluating the ops (enough to chain transitions in Python)."""
    for op in ops:
        if isinstance(op, Export):
            env[op.name] = op.value
        elif isinstance(op, Unset):
            env.pop(op.name, None)
            private.pop(op.name, None)
        elif isinstance(op, Keep):
            private[op.name] = op.value


def test_export_enter_stay_edit_move_and_leave(home: Path, tmp_path: Path, agents_bin: Path) -> None:
    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    write(a / "cordon.toml", OPENAI_ROUTE)
    write(b / "cordon.toml", ENV_SOURCE_ROUTE)
    (a / "deep" / "er").mkdir(parents=True)
    out.mkdir()
    env = env_for(home, str(agents_bin), OPENAI_API_KEY="real-openai")
    again = ["cordon", "hook", "export", "bash"]

    def step(cwd: Path) -> list:  # type: ignore[type-arg]
        return export_ops(env, Paths.from_env(env, cwd), "bash", [], ME, again)

    private: dict[str, str] = {}
    ops = step(a / "deep" / "er")
    _apply(env, ops, private)
    state = HookState.decode(env[STATE_VAR])
    assert state is not None and state.config == str(a / "cordon.toml")
    assert env["OPENAI_API_KEY"] == env["CODEX_API_KEY"] == "dummy-replaced-by-cordon"
    assert env["PATH"].split(os.pathsep)[0] == state.shims
    assert "real-openai" in private[RESTORE_VAR] and "real-openai" not in env[STATE_VAR]
    assert (Path(state.shims) / "codex").is_file()
    assert "a/cordon.toml -nt" in private[GUARD_VAR]

    # staying: only the guard is refreshed
    assert [type(op) for op in step(a)] == [Keep]

    # editing the config: leave silently, then re-run the export to enter again
    st = (a / "cordon.toml").stat()
    os.utime(a / "cordon.toml", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    ops = step(a)
    assert isinstance(ops[-1], EvalOutput) and list(ops[-1].argv) == again
    assert not any(isinstance(op, Log) for op in ops)

    # moving straight to another project: leave a, then re-run
    ops = step(b)
    assert isinstance(ops[-1], EvalOutput)
    assert any(isinstance(op, Log) and "deactivated" in op.message for op in ops)

    # leaving for a directory without a project
    ops = step(out)
    assert Unset(STATE_VAR) in ops and Export("PATH", str(agents_bin)) in ops
    assert isinstance(ops[-1], Keep) and ops[-1].name == GUARD_VAR


def test_export_outside_any_project_only_sets_the_guard(home: Path, tmp_path: Path) -> None:
    env = env_for(home, "/usr/bin")
    ops = export_ops(env, Paths.from_env(env, tmp_path), "fish", [], ME, ["x"])
    assert len(ops) == 1 and isinstance(ops[0], Keep) and f"not test -e {tmp_path}/cordon.toml" in ops[0].value


def test_export_ignores_the_user_scope_config(home: Path) -> None:
    write(home / ".config" / "cordon" / "cordon.toml", OPENAI_ROUTE)
    env = env_for(home, "/usr/bin")
    ops = export_ops(env, Paths.from_env(env, home / ".config" / "cordon"), "bash", [], ME, ["x"])
    assert [type(op) for op in ops] == [Keep]


def test_config_stamp_changes_with_content(tmp_path: Path) -> None:
    f = write(tmp_path / "c", "a")
    s1 = config_stamp(f)
    f.write_text("ab")
    assert config_stamp(f) != s1
    assert config_stamp(tmp_path / "missing") == "missing"


# --- the CLI ----------------------------------------------------------------------------------

def test_hook_direnv_prints_a_local_library_that_is_the_repo_file(cordon, home: Path) -> None:  # type: ignore[no-untyped-def]
    r = cordon("hook", "direnv", "--path")
    assert r.status == 0, r.stderr
    lib = Path(r.stdout.strip())
    assert lib.is_file() and lib.samefile(REPO / "shell-hooks" / "cordon.direnvrc")
    r = cordon("hook", "direnv")
    assert f"source {lib}" in r.stdout and "http" not in r.stdout


def test_the_library_ships_as_package_data() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "shell-hooks/*" in pyproject["tool"]["setuptools"]["package-data"]["cordon"]
    assert (REPO / "cordon" / "shell-hooks").resolve() == (REPO / "shell-hooks").resolve()


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_hook_prints_a_hook_that_calls_export_with_the_agents(cordon, shell: str) -> None:  # type: ignore[no-untyped-def]
    r = cordon("hook", shell, "codex", "my-agent")
    assert r.status == 0, r.stderr
    assert "_cordon_hook" in r.stdout and f"hook export {shell} codex my-agent" in r.stdout


def test_hook_use_and_export_run_as_commands(cordon_proc, home: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                            agents_bin: Path) -> None:
    proj = tmp_path / "p"
    write(proj / "cordon.toml", OPENAI_ROUTE)
    env = {"PATH": f"{agents_bin}{os.pathsep}{os.environ['PATH']}"}
    r = cordon_proc("hook", "use", "--shell", "direnv", "--cordon", "/x/cordon", "--shim-dir", "s", "--", "codex",
                    cwd=proj, env=env)
    assert r.returncode == 0, r.stderr
    assert f"PATH_add {proj}/s;" in r.stdout and "export OPENAI_API_KEY=dummy-replaced-by-cordon;" in r.stdout
    assert "exec /x/cordon exec --" in (proj / "s" / "codex").read_text()
    r = cordon_proc("hook", "export", "fish", cwd=proj, env=env)
    assert r.returncode == 0, r.stderr
    assert "set -gx CODEX_API_KEY dummy-replaced-by-cordon;" in r.stdout and "set -g _cordon_guard" in r.stdout
    r = cordon_proc("hook", "bash", "../x", cwd=proj, env=env)
    assert r.returncode == 0       # printing the hook checks nothing; the export does
    r = cordon_proc("hook", "export", "bash", "../x", cwd=proj, env=env)
    assert r.returncode == 2 and "'../x' is not an agent name" in r.stderr


def test_hook_export_ignores_sigint_itself(home: Path, tmp_path: Path) -> None:
    """fish cannot ignore SIGINT for a pipeline, so `cordon hook export` does it itself."""
    import subprocess
    import sys

    from tests.conftest import subprocess_env
    code = ("import os, signal, sys\nfrom cordon.cli.main import main\n"
            "main(['hook', 'export', 'fish'])\nos.kill(os.getpid(), signal.SIGINT)\n"
            "print('alive after SIGINT', file=sys.stderr)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                       env=subprocess_env(), timeout=60)
    assert r.returncode == 0 and "alive after SIGINT" in r.stderr, r.stderr
