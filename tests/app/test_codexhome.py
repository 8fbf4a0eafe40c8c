"""The CODEX_HOME of a `cordon exec` session (cordon.app.codexhome): a project keeps its own
`.codex` when it has one (project-scope setup), with Codex's state git-ignored; otherwise the
session's home lives under the user's ~/.codex, links the user's settings and history, and
holds a placeholder login, never the user's own."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests import configs
from tests.conftest import write
from tests.mock_openai import PLACEHOLDER

REAL = "sk-codexhome-REAL-value-0042"
ROUTE = configs.render(configs.openai(env="CODEXHOME_REAL_KEY", placeholder_env=configs.CODEX_VARS))
# what Codex leaves in its home while it runs
STATE = ('mkdir -p "$CODEX_HOME/sessions/2026" "$CODEX_HOME/packages/x" "$CODEX_HOME/log"; '
         'echo s > "$CODEX_HOME/sessions/2026/a.jsonl"; echo l > "$CODEX_HOME/logs_1.sqlite"; '
         'echo p > "$CODEX_HOME/packages/x/ui.js"; echo h >> "$CODEX_HOME/history.jsonl"; '
         'echo "$CODEX_HOME"')


def git_status(project: Path) -> list[str]:
    return sorted(subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=project,
                                 capture_output=True, text=True, check=True).stdout.splitlines())


def test_a_project_with_its_own_codex_home_keeps_it_and_git_ignores_codex_state(cordon_proc: Any,
                                                                                project: Path) -> None:
    write(project / "cordon.toml", ROUTE)
    write(project / ".codex" / "config.toml", 'model = "team-model"\n')
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    r = cordon_proc("exec", "--", "sh", "-c", STATE, env={"CODEXHOME_REAL_KEY": REAL}, cwd=project)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(project / ".codex")
    assert git_status(project) == ["?? .codex/.gitignore", "?? .codex/config.toml", "?? cordon.toml"]


def test_a_project_without_one_gets_a_home_under_the_users(cordon_proc: Any, project: Path, home: Path) -> None:
    write(project / "cordon.toml", ROUTE)
    user = home / ".codex"
    write(user / "config.toml", 'model = "mine"\n')
    write(user / "AGENTS.md", "be brief\n")
    write(user / "auth.json", json.dumps({"auth_mode": "chatgpt", "tokens": {"access_token": "user-own"}}))
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    r = cordon_proc("exec", "--", "sh", "-c",
                    STATE + '; cat "$CODEX_HOME/config.toml" "$CODEX_HOME/AGENTS.md" "$CODEX_HOME/auth.json"',
                    env={"CODEXHOME_REAL_KEY": REAL}, cwd=project)
    assert r.returncode == 0, r.stderr
    codex_home = Path(r.stdout.splitlines()[0])
    assert codex_home.parent == user / "cordon" and codex_home.name.startswith("proj-")
    assert 'model = "mine"' in r.stdout and "be brief" in r.stdout       # the user's settings apply
    assert json.loads(r.stdout.split("be brief\n", 1)[1]) == {"auth_mode": "apikey", "OPENAI_API_KEY": PLACEHOLDER}
    assert "user-own" not in r.stdout and REAL not in r.stdout            # the user's login stays theirs
    assert git_status(project) == ["?? cordon.toml"]                       # the project collects nothing
    assert (user / "history.jsonl").read_text() == "h\n"                  # shared with the user's Codex
    assert (user / "sessions" / "2026" / "a.jsonl").exists()
    assert (codex_home / "logs_1.sqlite").exists()                          # Codex's own state: in its home
    assert json.loads((user / "auth.json").read_text())["auth_mode"] == "chatgpt"


def test_zero_config_sessions_get_the_placeholder_login_too(cordon_proc: Any, project: Path, home: Path) -> None:
    r = cordon_proc("exec", "--", "sh", "-c", 'echo "$CODEX_HOME"; cat "$CODEX_HOME/auth.json"',
                    env={"OPENAI_API_KEY": REAL}, cwd=project)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert Path(lines[0]).parent == home / ".codex" / "cordon"
    assert json.loads("\n".join(lines[1:])) == {"auth_mode": "apikey", "OPENAI_API_KEY": PLACEHOLDER}
    assert REAL not in r.stdout
