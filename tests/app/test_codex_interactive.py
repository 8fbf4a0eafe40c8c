"""Interactive Codex (its TUI, through a real terminal) under `cordon exec`, as people use it:
no sign-in screen, the user's own ~/.codex settings, AGENTS.md and history apply, the project
collects none of Codex's state, and nothing (Codex's app-server daemon included) outlives the
session, so a second run in the same project works just like the first.

The real Codex CLI from tests/node talks to a local mock of the OpenAI API (tests/mock_openai.py)
through the session's proxy; the mock checks it received the real key.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pexpect
import pyte
import pytest

from tests.codex_files import QUIET_CODEX_CONFIG, SECRET, codex_available, route_toml
from tests.conftest import subprocess_env, write
from tests.mock_openai import PLACEHOLDER, MockOpenAI

USER_MODEL = "gpt-user-picked"
AGENTS_MARK = "AGENTS-MARK-7c1e: answer in haiku"


def processes_under(path: Path) -> list[str]:
    """Command lines of running processes that mention `path` (Codex's app-server daemon runs
    from the Codex home's packages/ directory)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open(f"/proc/{pid}/stat", "rb") as f:
                zombie = f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
        except OSError:
            continue
        if str(path) in cmd and not zombie:
            out.append(cmd)
    return out


class Screen:
    """The terminal as a user sees it (pyte keeps the cells): a TUI redraws what it likes between
    two keys, so what was typed is looked for on the screen, not in the byte stream. A pexpect
    `logfile_read`, so it sees every byte pexpect reads; `log` gets a copy."""

    def __init__(self, rows: int, cols: int, log: IO[str]) -> None:
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.Stream(self.screen)
        self.log = log

    def write(self, data: str) -> None:
        self.stream.feed(data)
        self.log.write(data)

    def flush(self) -> None:
        self.log.flush()

    def close(self) -> None:
        self.log.close()

    def shows(self, text: str) -> bool:
        return any(text in line for line in self.screen.display)


def wait_until_shown(child: pexpect.spawn, screen: Screen, text: str, timeout: float = 60) -> None:
    """Read the terminal until `text` is on the screen: then the TUI has taken those keys."""
    deadline = time.monotonic() + timeout
    while not screen.shows(text):
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} never appeared on the screen:\n" + "\n".join(screen.screen.display))
        try:
            child.read_nonblocking(65536, timeout=0.2)
        except pexpect.TIMEOUT:
            pass


def one_run(project: Path, sandbox: str) -> tuple[int, str]:
    codex = codex_available()
    assert codex is not None
    child = pexpect.spawn(sys.executable, ["-m", "cordon", "exec", "--sandbox", sandbox, "--", codex],
                          cwd=str(project), env=subprocess_env({"CORDON_TEST_REAL_KEY": SECRET,
                                                                "TERM": "xterm-256color"}),
                          encoding="utf-8", timeout=60, dimensions=(40, 120))
    screen = Screen(40, 120, open(os.environ.get("CODEX_TTY_LOG", os.devnull), "a"))  # noqa: SIM115
    child.logfile_read = screen
    seen: list[str] = []
    try:
        # a git repository Codex has not seen yet: it asks once whether to trust it (and saves
        # the answer in the user's config.toml), then shows the composer, not a sign-in screen
        # (the TUI moves the cursor between words: match single words)
        # the composer is ready when its status line names the model (the user's choice)
        if child.expect(["Trust", USER_MODEL]) == 0:
            seen.append(child.before)
            child.expect("continue")                  # "enter continue": the dialog takes keys now
            child.send("\r")
            child.expect(USER_MODEL)
        seen.append(child.before)
        child.send("say hi")
        wait_until_shown(child, screen, "say hi")     # sent at once with Enter, it reads as a paste
        child.send("\r")
        child.expect("Hello")                         # the mock's reply, rendered word by word
        child.expect("upstream")
        child.expect("Worked for")
        child.send("/quit")
        wait_until_shown(child, screen, "/quit")
        child.send("\r")
        child.expect(pexpect.EOF, timeout=30)
        seen.append(child.before)
    finally:
        child.close(force=True)
        screen.close()
    return int(child.exitstatus if child.exitstatus is not None else 128 + (child.signalstatus or 0)), "".join(seen)


@pytest.mark.slow
@pytest.mark.parametrize("sandbox", ["off", "auto"])
def test_interactive_codex_twice_in_a_row(project: Path, home: Path, sandbox: str) -> None:
    if codex_available() is None:
        pytest.skip("tests/node/node_modules/@openai/codex is not installed (scripts/test installs it)")
    user = home / ".codex"
    write(user / "config.toml", f'model = "{USER_MODEL}"\n' + QUIET_CODEX_CONFIG)
    write(user / "AGENTS.md", AGENTS_MARK + "\n")
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    with MockOpenAI(expected_key=SECRET) as mock:
        write(project / "cordon.toml", route_toml(mock))
        for run in (1, 2):
            status, screen = one_run(project, sandbox)
            assert status == 0, (run, screen[-2000:])
            assert "Sign in" not in screen and "sign in" not in screen
            # nothing of the session is left running: Codex's app-server daemon included
            assert processes_under(user) == [], run
        mock.check()
        bodies = [json.loads(r.body) for r in mock.requests if r.method == "POST" and r.path == "/v1/responses"]
    assert len(bodies) >= 2
    assert all(b.get("model") == USER_MODEL for b in bodies), "the user's ~/.codex/config.toml applies"
    assert any(AGENTS_MARK in json.dumps(b) for b in bodies), "the user's ~/.codex/AGENTS.md applies"
    assert "say hi" in (user / "history.jsonl").read_text(), "the user's history grows"
    assert any((user / "sessions").rglob("*.jsonl")), "the user's sessions keep the conversation"
    # the project holds nothing of Codex's: git sees only cordon.toml
    status_lines = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=project,
                                  capture_output=True, text=True, check=True).stdout.splitlines()
    assert status_lines == ["?? cordon.toml"], status_lines
    # the session's Codex home holds the placeholder login, never the real key
    [session_home] = (user / "cordon").iterdir()
    auth = json.loads((session_home / "auth.json").read_text())
    assert auth == {"auth_mode": "apikey", "OPENAI_API_KEY": PLACEHOLDER}
    for f in [*session_home.rglob("*"), *user.rglob("*")]:
        if f.is_file() and not f.is_symlink():
            assert SECRET.encode() not in f.read_bytes(), f
