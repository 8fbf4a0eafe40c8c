"""Real agents run confined by `cordon exec` (the default on Linux): Claude Code end to end, and
the Codex CLI's own sandbox started inside cordon's.

Claude Code (pinned in tests/node/package.json) talks to a network-level mock of the
Anthropic API (tests/mock_anthropic.py) through the session proxy, knowing only the
placeholder; the mock asserts it received the real key. The Codex CLI end to end runs
confined in tests/app/test_exec_e2e.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import configs
from tests.conftest import REPO, cordon_argv, subprocess_env, write
from tests.mock_anthropic import MockAnthropic
from tests.mock_openai import PLACEHOLDER

SECRET = "sk-ant-REAL-confined-7f3a9c"
NODE_MODULES = REPO / "tests" / "node" / "node_modules"
CLAUDE = NODE_MODULES / ".bin" / "claude"
CODEX_NATIVE = NODE_MODULES / "@openai" / "codex-linux-x64" / "vendor" / "x86_64-unknown-linux-musl" / "bin" / "codex"

pytestmark = pytest.mark.skipif(not shutil.which("bwrap"), reason="bubblewrap is missing (scripts/test installs it)")


def anthropic_route(mock: MockAnthropic) -> configs.RouteSpec:
    return configs.anthropic(placeholder_env=["ANTHROPIC_API_KEY"], upstream=mock)   # CORDON_TEST_REAL_KEY


@pytest.mark.slow
def test_claude_code_end_to_end_confined(project: Path, home: Path) -> None:
    if not CLAUDE.exists():
        pytest.skip("tests/node/node_modules/@anthropic-ai/claude-code is not installed (scripts/test installs it)")
    with MockAnthropic(expected_key=SECRET) as mock:
        configs.write(project / "cordon.toml", anthropic_route(mock), exec={"sandbox": "required"})
        env = subprocess_env({"CORDON_TEST_REAL_KEY": SECRET, "DISABLE_TELEMETRY": "1",
                              "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1"})
        r = subprocess.run(cordon_argv("exec", "--", str(CLAUDE), "-p", "say hi"), cwd=project, env=env,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stderr[-3000:]
        assert mock.reply in r.stdout
        mock.check()
        assert any(q.method == "POST" and q.path.startswith("/v1/messages") for q in mock.requests)
        assert all(q.header("x-api-key") != PLACEHOLDER for q in mock.requests)
    assert SECRET not in r.stdout + r.stderr
    claude_files = [p for p in [home / ".claude.json", *(home / ".claude").rglob("*")] if p.is_file()]
    assert claude_files, "Claude Code wrote nothing under $HOME (is $HOME writable inside?)"
    for f in claude_files:
        assert SECRET.encode() not in f.read_bytes(), f


def test_codex_own_sandbox_runs_inside_cordons(project: Path, tmp_path: Path) -> None:
    """`codex sandbox` applies the CLI's own sandbox (its bundled bubblewrap) to a command."""
    if not CODEX_NATIVE.exists():
        pytest.skip("the Codex CLI is not installed (scripts/test installs it)")
    # Codex finds its helper through a PATH alias it refuses to create under a temp directory
    # (where pytest puts the project): provide it
    bindir = tmp_path / "codex-bin"
    bindir.mkdir()
    (bindir / "codex-linux-sandbox").symlink_to(CODEX_NATIVE)
    write(project / "cordon.toml", '[exec]\nsandbox = "required"\n')
    env = subprocess_env({"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"})
    inner = "echo inside; touch outside-write 2>/dev/null && echo wrote || echo refused"
    r = subprocess.run(cordon_argv("exec", "--", str(CODEX_NATIVE), "sandbox", "--", "sh", "-c", inner),
                       cwd=project, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    # Codex's default sandbox is read-only: the write is refused by Codex's layer, inside cordon's
    assert r.stdout.split() == ["inside", "refused"], r.stdout + r.stderr[-2000:]
    assert not (project / "outside-write").exists()
