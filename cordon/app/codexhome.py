"""The CODEX_HOME a `cordon exec` session gives Codex.

A project whose `.codex/` already holds Codex files (`cordon setup codex --scope
project` writes `.env`, `config.toml` and `auth.json` there) keeps it as its
Codex home, as documented; cordon adds a `.codex/.gitignore` for Codex's own state.

Any other project gets a home of its own under the user's Codex home,
`~/.codex/cordon/<dir>-<hash>/`, so the project collects none of Codex's state
(sessions, sqlite logs, the interactive UI's packages). In it, the user's
`config.toml` (model, MCP servers, profiles), `AGENTS.md`, `history.jsonl`,
`sessions/`, `prompts/`, `skills/`, `rules/` and `packages/` are symlinks to the
user's own, so they apply and grow as usual; `auth.json` is cordon's placeholder
API-key login, so interactive Codex never shows its sign-in screen (the real key
is injected by the proxy). Never touches the user's `auth.json`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cordon.store.paths import Paths, namespace_for

# the user's Codex files a session shares; directories are created in the user's home if missing
SHARED_FILES = ("config.toml", "AGENTS.md", "history.jsonl")
SHARED_DIRS = ("sessions", "prompts", "skills", "rules", "packages")
# what marks a project's .codex/ as a Codex home of its own
PROJECT_MARKERS = (".env", "config.toml", "auth.json")

GITIGNORE = """\
# Written by cordon: Codex's own state in this project-scope Codex home stays out of git.
.env
.env.cordon.bak
auth.json
history.jsonl
sessions/
log/
logs/
packages/
*.sqlite
*.sqlite-*
version.json
internal_storage.json
.cordon-*
"""


@dataclass(frozen=True)
class CodexHome:
    path: Path
    project: bool          # True: the project's own .codex (project-scope setup), used as it is


def user_codex_home(env: Mapping[str, str], paths: Paths) -> Path:
    """Where the user's own Codex keeps its files: $CODEX_HOME, else ~/.codex."""
    v = env.get("CODEX_HOME")
    if v:
        p = Path(v).expanduser()
        return p if p.is_absolute() else paths.cwd / p
    return paths.home / ".codex"


def choose(project: Path, env: Mapping[str, str], paths: Paths) -> CodexHome:
    own = project / ".codex"
    if own.is_dir() and any((own / m).exists() for m in PROJECT_MARKERS):
        return CodexHome(own, project=True)
    return CodexHome(user_codex_home(env, paths) / "cordon" / namespace_for(project), project=False)


def prepare(home: CodexHome, env: Mapping[str, str], paths: Paths, auth_json: str) -> None:
    """Make `home` ready for a session (idempotent; two sessions may run it at once)."""
    if home.project:
        _create_only(home.path / ".gitignore", GITIGNORE, 0o644)
        return
    user = user_codex_home(env, paths)
    old = os.umask(0o077)
    try:
        home.path.mkdir(parents=True, exist_ok=True, mode=0o700)
    finally:
        os.umask(old)
    for name in SHARED_DIRS:
        (user / name).mkdir(parents=True, exist_ok=True)
        _link(home.path / name, user / name)
    for name in SHARED_FILES:
        _link(home.path / name, user / name)          # may dangle: Codex creates the file through it
    _create_only(home.path / "auth.json", auth_json, 0o600)


def _link(link: Path, target: Path) -> None:
    """`link` -> `target`, replacing a stale link but never a real file or directory."""
    try:
        if os.readlink(link) == str(target):
            return
        link.unlink()
    except FileNotFoundError:
        pass
    except OSError:
        return              # a real file or directory the user put there: theirs
    with contextlib.suppress(FileExistsError):
        os.symlink(target, link)


def _create_only(path: Path, text: str, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except FileExistsError:
        return
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
