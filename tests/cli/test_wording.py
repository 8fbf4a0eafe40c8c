"""The small things a user reads: usage lines, error wording, hidden choices."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def test_an_unknown_exec_option_shows_exec_usage(cordon_proc: Any, project: Path) -> None:
    p = cordon_proc("exec", "--bogus", "true", cwd=project)
    assert p.returncode == 2
    assert p.stderr.startswith("usage: cordon exec ")
    assert "cordon: error: unrecognized arguments: --bogus" in p.stderr
    assert "hint: run `cordon exec --help` for usage" in p.stderr


def test_an_unknown_option_of_a_nested_command_shows_its_usage(cordon_proc: Any, project: Path) -> None:
    p = cordon_proc("route", "add", "--bogus", cwd=project)
    assert p.returncode == 2
    assert p.stderr.startswith("usage: cordon route add ")
    assert "hint: run `cordon route add --help` for usage" in p.stderr


def test_a_directory_as_the_command_says_so(cordon_proc: Any, project: Path, tmp_path: Path) -> None:
    p = cordon_proc("exec", "--", str(tmp_path), cwd=project)
    assert p.returncode == 126
    assert p.stderr == f"cordon: is a directory: {tmp_path}\n"


def test_hook_lists_only_the_shells_a_user_may_choose(cordon_proc: Any, project: Path) -> None:
    p = cordon_proc("hook", "tcsh", cwd=project)
    assert p.returncode == 2
    assert "(choose from 'bash', 'zsh', 'fish', 'direnv')" in p.stderr
    assert "export" not in p.stderr and "'use'" not in p.stderr
    assert cordon_proc("hook", "export", "bash", cwd=project).returncode == 0   # still there for the hooks


def test_a_cordon_toml_that_is_a_directory_is_an_error(cordon_proc: Any, project: Path) -> None:
    (project / "cordon.toml").mkdir()
    for args in (("route", "list"), ("exec", "--", "true")):
        p = cordon_proc(*args, cwd=project)
        assert p.returncode == 1, (args, p.stdout, p.stderr)
        assert p.stderr.splitlines() == [
            f"cordon: error: {project / 'cordon.toml'} is a directory, not a file",
            "hint: rename or remove that directory: cordon reads its configuration from a file of that name"]
