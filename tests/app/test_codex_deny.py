"""The real Codex CLI under `[policy] unmatched = "deny"`, with its model discovery on (the
default): the discovery request to chatgpt.com gets an HTTP 403 inside TLS, which Codex takes as
final, instead of a refused CONNECT, which it retries with backoff for about nine seconds."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.codex_files import SECRET, codex_available, route_toml
from tests.conftest import cordon_argv, subprocess_env, write
from tests.mock_openai import MockOpenAI

# the user's config as Codex ships it: model discovery left on
CONFIG = "check_for_update_on_startup = false\n[analytics]\nenabled = false\n[features]\nplugins = false\n"


@pytest.mark.slow
def test_codex_under_deny_gets_a_final_answer_for_model_discovery(project: Path, home: Path) -> None:
    codex = codex_available()
    if codex is None:
        pytest.skip("tests/node/node_modules/@openai/codex is not installed (scripts/test installs it)")
    write(home / ".codex" / "config.toml", CONFIG)
    with MockOpenAI(expected_key=SECRET) as mock:
        write(project / "cordon.toml", '[policy]\nunmatched = "deny"\n' + route_toml(mock))
        r = subprocess.run(cordon_argv("exec", "--log-level", "info", "--", codex, "exec", "--skip-git-repo-check",
                                       "--color", "never", "say hi"),
                           cwd=project, env=subprocess_env({"CORDON_TEST_REAL_KEY": SECRET}),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-3000:]
        assert mock.reply in r.stdout
        mock.check()
    lines = [ln for ln in r.stderr.splitlines() if "cordon.proxy:" in ln and "host=chatgpt.com" in ln]
    assert lines, "Codex asked for its models"
    # every discovery attempt got an HTTP answer; none was a refused CONNECT (what Codex retries)
    assert all("method=GET status=403" in ln for ln in lines), lines
    assert not [ln for ln in r.stderr.splitlines() if "method=CONNECT status=403" in ln]
    assert SECRET not in r.stdout + r.stderr
