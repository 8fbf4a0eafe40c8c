"""No OS keyring (a headless box, an SSH session, a container): `secret set` and the preflight
of `exec` print three ways that work for this route, ready to paste; `file` paths accept `~`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.conftest import write

NO_KEYRING = {"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
VALUE = "sk-no-keyring-test-value-77"


def expect_alternatives(stderr: str, name: str) -> None:
    assert "cordon: error: " in stderr and "Traceback" not in stderr
    assert f"hint: no OS keyring here; any one of these works for route '{name}':" in stderr
    assert f"`cordon route edit {name} --source env --var OPENAI_REAL_KEY`" in stderr
    assert f"`cordon route edit {name} --source file --path ~/.config/cordon/{name}.key`" in stderr
    assert "gnome-keyring-daemon --unlock --components=secrets" in stderr
    assert f"`cordon secret set {name}`" in stderr


def test_secret_set_without_a_keyring_offers_three_alternatives(cordon_proc: Any, project: Path) -> None:
    assert cordon_proc("route", "add", "--preset", "openai", cwd=project).returncode == 0
    p = cordon_proc("secret", "set", "openai", input=VALUE + "\n", env=NO_KEYRING, cwd=project)
    assert p.returncode == 1
    expect_alternatives(p.stderr, "openai")
    assert VALUE not in p.stdout + p.stderr


def test_exec_preflight_without_a_keyring_offers_three_alternatives(cordon_proc: Any, project: Path) -> None:
    assert cordon_proc("route", "add", "--preset", "openai", cwd=project).returncode == 0
    p = cordon_proc("exec", "--", "sh", "-c", "echo started", env=NO_KEYRING, cwd=project)
    assert p.returncode == 1 and "started" not in p.stdout
    expect_alternatives(p.stderr, "openai")


def test_the_file_alternative_works_as_printed_with_a_tilde(cordon_proc: Any, project: Path, home: Path) -> None:
    assert cordon_proc("route", "add", "--preset", "openai", cwd=project).returncode == 0
    # the shell would expand an unquoted ~; a quoted one, or one written in cordon.toml, is cordon's to expand
    p = cordon_proc("route", "edit", "openai", "--source", "file", "--path", "~/.config/cordon/openai.key",
                    cwd=project)
    assert p.returncode == 0, p.stderr
    key = write(home / ".config" / "cordon" / "openai.key", VALUE + "\n")
    os.chmod(key, 0o600)
    p = cordon_proc("secret", "check", cwd=project, env=NO_KEYRING)
    assert p.returncode == 0, p.stderr
    text = (project / "cordon.toml").read_text()
    text = text.replace(str(key), "~/.config/cordon/openai.key")
    (project / "cordon.toml").write_text(text)
    assert 'path = "~/.config/cordon/openai.key"' in text
    p = cordon_proc("secret", "check", cwd=project, env=NO_KEYRING)
    assert p.returncode == 0, p.stderr
    p = cordon_proc("route", "show", "openai", "--json", cwd=project)
    assert str(key) in p.stdout
