"""End to end: `cordon start` running, `cordon setup` done, the agents started with nothing else.

The real Codex CLI (tests/node, pinned) gets only `CODEX_HOME=<project>/.codex`
(plus PATH and HOME): everything else must come from the files setup wrote.
A Claude Code-like Node client applies `.claude/settings.local.json`'s `env`
block the way Claude Code does and calls api.anthropic.com through undici's
EnvHttpProxyAgent. Both upstreams are local mocks reached through
`[routes.upstream]`; they must see the real keys, never the placeholder.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import configs
from tests.codex_files import CODEX, QUIET_CODEX_CONFIG
from tests.conftest import NODE_MODULES, cordon_argv, subprocess_env, write
from tests.mock_openai import PLACEHOLDER, MockOpenAI
from tests.ports import reserved_port
from tests.upstream import UpstreamServer

OPENAI_KEY = "sk-proj-REAL-integrations-7c1e"
ANTHROPIC_KEY = "sk-ant-REAL-integrations-93ab"
USER_CODEX_CONFIG = "# the user's own Codex settings (kept by setup)\n" + QUIET_CODEX_CONFIG + """
[mcp_servers.local-tool]   # setup gives it an env table; Codex must still load the file
command = "true"
enabled = false
"""

CLAUDE_LIKE = r"""
// Applies the settings file's env block at start-up, as Claude Code does, then calls the API.
const fs = require('fs'), path = require('path'), { spawnSync } = require('child_process');
if (!process.env.CLAUDE_LIKE_CHILD) {
  const settings = JSON.parse(fs.readFileSync(path.join(process.cwd(), '.claude', 'settings.local.json')));
  const env = { ...process.env, ...settings.env, CLAUDE_LIKE_CHILD: '1' };
  const r = spawnSync(process.execPath, process.argv.slice(1), { env, stdio: 'inherit' });
  process.exit(r.status === null ? 1 : r.status);
}
const { setGlobalDispatcher, EnvHttpProxyAgent } = require(process.argv[2]);
setGlobalDispatcher(new EnvHttpProxyAgent());
(async () => {
  const r = await fetch('https://api.anthropic.com/v1/messages', {
    method: 'POST',
    headers: { 'x-api-key': process.env.ANTHROPIC_API_KEY, 'anthropic-version': '2023-06-01',
               'content-type': 'application/json' },
    body: JSON.stringify({ model: 'claude-mock', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] }),
  });
  console.log(r.status, process.env.ANTHROPIC_API_KEY);
})().catch(e => { console.error('fetch failed', e); process.exit(1); });
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_toml(port: int, openai: MockOpenAI, anthropic: UpstreamServer) -> str:
    return configs.render(
        configs.openai(env="REAL_OPENAI_KEY", placeholder_env=configs.CODEX_VARS, upstream=openai),
        configs.anthropic(env="REAL_ANTHROPIC_KEY", placeholder_env=["ANTHROPIC_API_KEY"], upstream=anthropic),
        listen=port)


class Started:
    def __init__(self, project: Path, home: Path, openai: MockOpenAI, anthropic: UpstreamServer,
                 proc: subprocess.Popen[str]) -> None:
        self.project, self.home, self.openai, self.anthropic, self.proc = project, home, openai, anthropic, proc


@pytest.fixture
def started(project: Path, home: Path) -> Iterator[Started]:
    if shutil.which("node") is None:
        pytest.skip("needs node")
    with MockOpenAI(expected_key=OPENAI_KEY) as openai, UpstreamServer("api.anthropic.com") as anthropic, \
            reserved_port() as port:
        write(project / "cordon.toml", config_toml(port, openai, anthropic))
        write(project / ".codex" / "config.toml", USER_CODEX_CONFIG)
        for name in ("codex", "claude-code"):
            r = subprocess.run(cordon_argv("setup", name, "--yes"), cwd=project, env=subprocess_env(),
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
        log = project.parent / "start.log"
        with log.open("w") as err:
            proc = subprocess.Popen(cordon_argv("start"), cwd=project, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err, text=True,
                                    env=subprocess_env({"REAL_OPENAI_KEY": OPENAI_KEY,
                                                        "REAL_ANTHROPIC_KEY": ANTHROPIC_KEY}))
        try:
            deadline = time.monotonic() + 60
            while "ready on" not in log.read_text():
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "cordon start did not become ready"
                time.sleep(0.05)
            yield Started(project, home, openai, anthropic, proc)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        text = log.read_text()
        assert OPENAI_KEY not in text and ANTHROPIC_KEY not in text, "a real key reached the proxy's log"


def no_secret_in(*dirs: Path) -> None:
    for d in dirs:
        for f in d.rglob("*"):
            if f.is_file():
                data = f.read_bytes()
                assert OPENAI_KEY.encode() not in data and ANTHROPIC_KEY.encode() not in data, f


@pytest.mark.slow
def test_codex_with_only_codex_home_reaches_the_mock_with_the_real_key(started: Started) -> None:
    if not CODEX.exists():
        pytest.skip("tests/node/node_modules/@openai/codex is not installed (scripts/test installs it)")
    codex_home = started.project / ".codex"
    env = {"PATH": subprocess_env()["PATH"], "HOME": str(started.home), "CODEX_HOME": str(codex_home)}
    r = subprocess.run([str(CODEX), "exec", "--skip-git-repo-check", "--color", "never", "say hi"],
                       cwd=started.project, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert started.openai.reply in r.stdout
    started.openai.check()      # every request carried exactly the real key
    assert any(q.path.startswith("/v1/responses") for q in started.openai.requests)
    assert OPENAI_KEY not in r.stdout + r.stderr
    no_secret_in(codex_home)
    assert "HTTPS_PROXY" in (codex_home / "config.toml").read_text().split("[mcp_servers.local-tool.env]")[1]


def test_claude_like_node_client_reads_settings_and_reaches_the_mock(started: Started) -> None:
    undici = NODE_MODULES / "undici"
    if not undici.is_dir():
        pytest.skip("tests/node/node_modules/undici is not installed (scripts/test installs it)")
    script = started.project.parent / "claude_like.js"
    script.write_text(CLAUDE_LIKE)
    env = {"PATH": subprocess_env()["PATH"], "HOME": str(started.home)}
    r = subprocess.run(["node", str(script), str(undici)], cwd=started.project, env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == ["200", PLACEHOLDER], "the client held only the placeholder"
    (req,) = [q for q in started.anthropic.requests if q.target.startswith("/v1/messages")]
    assert req.header("x-api-key") == ANTHROPIC_KEY
    assert req.header("authorization") is None
    settings = json.loads((started.project / ".claude" / "settings.local.json").read_text())
    assert ANTHROPIC_KEY not in json.dumps(settings)


def test_setup_again_while_the_proxy_runs(started: Started) -> None:
    before = (started.project / ".codex" / ".env").read_bytes()
    r = subprocess.run(cordon_argv("setup", "codex", "--yes"), cwd=started.project, env=subprocess_env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "start the proxy" not in r.stdout and "restart" not in r.stdout
    assert (started.project / ".codex" / ".env").read_bytes() == before
    cfg = started.project / "cordon.toml"
    cfg.write_text(re.sub(r"(?m)^listen = \d+", f"listen = {free_port()}", cfg.read_text()))
    r = subprocess.run(cordon_argv("setup", "codex", "--yes"), cwd=started.project, env=subprocess_env(),
                       capture_output=True, text=True, timeout=60)
    assert f"restart `cordon start` (pid {started.proc.pid})" in r.stdout
