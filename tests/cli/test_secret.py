"""`cordon secret set|delete|check` as a user runs them: real processes, a real pty, a real keyring.

Every test that handles a value asserts it never reaches stdout or stderr.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pexpect
import pytest

from tests.conftest import subprocess_env

pytestmark = pytest.mark.secret_service   # the CLI against the real Secret Service

SECRET = "sk-live-4b1d8e2f0a9c7e6d"


def no_leak(*outputs: str) -> None:
    for out in outputs:
        assert SECRET not in out


def setup_routes(cordon: Any, tmp_path: Path) -> None:
    key = tmp_path / "file-secret"
    key.write_text(SECRET + "\n")
    key.chmod(0o600)
    for argv in (["--preset", "openai"],
                 ["--preset", "anthropic", "--source", "env", "--var", "REAL_ANTHROPIC"],
                 ["--host", "f.example", "--source", "file", "--path", str(key)],
                 ["--host", "c.example", "--source", "command", "--command", f"printf {SECRET}"]):
        r = cordon("route", "add", *argv)
        assert r.status == 0, r.stderr


def test_set_from_stdin_then_check(cordon_proc: Any, cordon: Any, project: Path, tmp_path: Path) -> None:
    setup_routes(cordon, tmp_path)
    r = cordon_proc("secret", "set", "openai", input=SECRET + "\n")
    assert r.returncode == 0, r.stderr
    assert "stored the secret of route 'openai' in keyring cordon/openai" in r.stdout
    no_leak(r.stdout, r.stderr)
    import keyring
    assert keyring.get_password("cordon", "openai") == SECRET    # newline stripped
    r = cordon_proc("secret", "check", env={"REAL_ANTHROPIC": SECRET})
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert [ln.split()[:2] for ln in lines] == [["ok", "openai"], ["ok", "anthropic"], ["ok", "f"], ["ok", "c"]]
    no_leak(r.stdout, r.stderr)


def test_check_reports_missing_with_fixes(cordon_proc: Any, cordon: Any, project: Path, tmp_path: Path) -> None:
    setup_routes(cordon, tmp_path)
    r = cordon_proc("secret", "check")
    assert r.returncode == 1
    out = r.stdout
    assert "missing  openai" in out and "fix: run `cordon secret set openai`" in out
    assert "missing  anthropic" in out and "fix: export REAL_ANTHROPIC before starting cordon" in out
    assert "ok       f" in out and "ok       c" in out
    no_leak(r.stdout, r.stderr)
    r = cordon_proc("secret", "check", "f")
    assert r.returncode == 0 and r.stdout.startswith("ok       f")
    r = cordon_proc("secret", "check", "--json")
    assert r.returncode == 1
    data = json.loads(r.stdout)
    assert [(d["route"], d["ok"]) for d in data] == [("openai", False), ("anthropic", False), ("f", True),
                                                     ("c", True)]
    assert data[0]["hint"] == "run `cordon secret set openai`"
    no_leak(r.stdout, r.stderr)


def test_set_on_a_terminal_is_hidden(cordon: Any, project: Path) -> None:
    cordon("route", "add", "--preset", "openai")
    child = pexpect.spawn(sys.executable, ["-m", "cordon", "secret", "set", "openai"], cwd=str(project),
                          env=subprocess_env(), encoding="utf-8", timeout=30)
    child.expect(r"Secret for route 'openai' \(input hidden\): ")
    child.sendline(SECRET)
    child.expect(pexpect.EOF)
    child.close()
    out = child.before
    assert child.exitstatus == 0, out
    assert "stored the secret" in out
    no_leak(out)
    import keyring
    assert keyring.get_password("cordon", "openai") == SECRET


def test_set_replaces_and_delete_removes(cordon_proc: Any, cordon: Any, project: Path) -> None:
    cordon("route", "add", "--preset", "groq")
    assert cordon_proc("secret", "set", "groq", input="first").returncode == 0
    assert cordon_proc("secret", "set", "groq", input=SECRET).returncode == 0
    import keyring
    assert keyring.get_password("cordon", "groq") == SECRET
    r = cordon_proc("secret", "delete", "groq")
    assert r.returncode == 0 and "deleted the secret of route 'groq'" in r.stdout
    assert keyring.get_password("cordon", "groq") is None
    r = cordon_proc("secret", "delete", "groq")
    assert r.returncode == 1 and "nothing stored in keyring cordon/groq" in r.stderr
    r = cordon_proc("secret", "check", "groq")
    assert r.returncode == 1 and "missing" in r.stdout


def test_set_uses_the_routes_service_and_account(cordon_proc: Any, cordon: Any, project: Path) -> None:
    cordon("route", "add", "--host", "api.github.com", "--source", "keyring", "--service", "gh:github.com",
           "--account", "me")
    assert cordon_proc("secret", "set", "github", input=SECRET).returncode == 0
    import keyring
    assert keyring.get_password("gh:github.com", "me") == SECRET


def test_set_refuses_other_sources(cordon: Any, project: Path) -> None:
    cordon("route", "add", "--preset", "anthropic", "--source", "env", "--var", "REAL_ANTHROPIC")
    r = cordon("secret", "set", "anthropic", stdin=SECRET)
    assert r.status == 1
    assert "takes its secret from environment variable REAL_ANTHROPIC, not the keyring" in r.stderr
    assert "cordon route edit anthropic --source keyring" in r.stderr
    r = cordon("secret", "delete", "anthropic")
    assert r.status == 1 and "not the keyring" in r.stderr
    no_leak(r.stdout, r.stderr)


def test_set_errors(cordon: Any, project: Path) -> None:
    r = cordon("secret", "set", "openai", stdin=SECRET)
    assert r.status == 1 and "no cordon.toml" in r.stderr
    cordon("route", "add", "--preset", "openai")
    r = cordon("secret", "set", "nope", stdin=SECRET)
    assert r.status == 1 and "no route named 'nope' (routes: openai)" in r.stderr
    r = cordon("secret", "set", "openai", stdin="\n")
    assert r.status == 2 and "no secret given" in r.stderr
    r = cordon("secret", "set", "openai", stdin="two\nlines\n")
    assert r.status == 1 and "line break" in r.stderr
    no_leak(r.stdout, r.stderr)


def test_a_secret_in_a_readable_file_is_refused(cordon_proc: Any, cordon: Any, project: Path,
                                                tmp_path: Path) -> None:
    key = tmp_path / "k"
    key.write_text(SECRET)
    key.chmod(0o644)
    cordon("route", "add", "--host", "f.example", "--source", "file", "--path", str(key))
    r = cordon_proc("secret", "check")
    assert r.returncode == 1 and "group or others" in r.stdout and f"chmod 600 {key}" in r.stdout
    no_leak(r.stdout, r.stderr)


def test_check_with_scope_flags(cordon_proc: Any, cordon: Any, project: Path, home: Path) -> None:
    cordon("route", "add", "--preset", "mistral", "--scope", "user")
    r = cordon_proc("secret", "check", "--scope", "user")
    assert r.returncode == 1 and "missing  mistral" in r.stdout
    r = cordon_proc("secret", "check", "--scope", "project")
    assert r.returncode == 1 and f"{project / 'cordon.toml'}: no such file" in r.stderr
    assert cordon_proc("secret", "set", "mistral", "--scope", "user", input=SECRET).returncode == 0
    assert cordon_proc("secret", "check", "--scope", "user").returncode == 0
    assert os.environ["PYTHON_KEYRING_BACKEND"]  # the subprocesses used the same real keyring
