"""Real clients under `cordon exec`, against a local mock of the OpenAI API.

The mock plays api.openai.com on 127.0.0.1 (reached through `[routes.upstream]
address` with its throwaway CA in `ca_file`); it asserts it received the real key
and never the placeholder. The clients know only the placeholder: the Codex CLI
(pinned in tests/node/package.json, installed by scripts/test), curl, the Python
`openai` SDK and Node `fetch` with undici's EnvHttpProxyAgent.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.codex_files import QUIET_CODEX_CONFIG, SECRET, codex_available, route_toml
from tests.conftest import NODE_MODULES, cordon_argv, subprocess_env, write
from tests.mock_openai import PLACEHOLDER, MockOpenAI


@pytest.fixture(params=["426"])
def mock(request: pytest.FixtureRequest) -> Iterator[MockOpenAI]:
    with MockOpenAI(expected_key=SECRET, ws=request.param) as m:
        yield m


@pytest.fixture
def e2e(project: Path, mock: MockOpenAI) -> Path:
    write(project / "cordon.toml", route_toml(mock))
    write(project / ".codex" / "config.toml", QUIET_CODEX_CONFIG)
    return project


# confined wherever bubblewrap is installed (scripts/test installs it): the clients must work in the sandbox
CONFINED = ("--sandbox", "required") if sys.platform.startswith("linux") and shutil.which("bwrap") else ()


def run_exec(project: Path, *cmd: str, timeout: float = 90, level: str = "debug") -> subprocess.CompletedProcess[str]:
    return subprocess.run(cordon_argv("exec", "--log-level", level, *CONFINED, "--", *cmd), cwd=project,
                          env=subprocess_env({"CORDON_TEST_REAL_KEY": SECRET}), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


def assert_no_leak(r: subprocess.CompletedProcess[str], *dirs: Path) -> None:
    assert SECRET not in r.stdout, "the real secret reached the child's stdout"
    assert SECRET not in r.stderr, "the real secret reached stderr or the proxy's log"
    for d in dirs:
        for f in d.rglob("*"):
            if f.is_file():
                assert SECRET.encode() not in f.read_bytes(), f


@pytest.mark.slow
@pytest.mark.parametrize("mock", ["426", "serve"], indirect=True)
def test_codex_cli_end_to_end(e2e: Path, mock: MockOpenAI) -> None:
    codex = codex_available()
    if codex is None:
        pytest.skip("tests/node/node_modules/@openai/codex is not installed (scripts/test installs it)")
    r = run_exec(e2e, codex, "exec", "--skip-git-repo-check", "--color", "never", "say hi")
    assert r.returncode == 0, r.stderr[-3000:]
    assert mock.reply in r.stdout
    mock.check()
    paths = {q.path.split("?")[0] for q in mock.requests}
    if mock.ws == "426":
        # the upgrade got 426 and Codex fell back to HTTPS at once
        assert any((q.header("upgrade") or "").lower() == "websocket" for q in mock.requests)
        assert "/v1/responses" in paths and any(q.method == "POST" for q in mock.requests)
    else:
        assert any('"response.create"' in m for m in mock.ws_messages)   # the turn went over the WebSocket
    assert_no_leak(r, e2e / ".codex")
    assert not (e2e / ".codex" / ".env").exists()      # created for the session, removed after it


def test_curl_under_exec(e2e: Path, mock: MockOpenAI) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (scripts/test installs it)")
    script = ('curl -sS --fail-with-body -H "Authorization: Bearer $OPENAI_API_KEY" '
              '-H "content-type: application/json" '
              '-d \'{"model":"gpt-mock","stream":true,"messages":[{"role":"user","content":"hi"}]}\' '
              'https://api.openai.com/v1/chat/completions')
    r = run_exec(e2e, "sh", "-c", f'printf %s "$HTTPS_PROXY" > proxy-url; {script}', level="trace")
    assert r.returncode == 0, r.stderr
    assert "chat.completion.chunk" in r.stdout and "[DONE]" in r.stdout
    assert "api.openai.com" in r.stderr                        # the log (at its chattiest) said something
    token = (e2e / "proxy-url").read_text().split("cordon:", 1)[1].split("@", 1)[0]
    assert len(token) >= 40 and token not in r.stderr          # ... but never the proxy token
    mock.check()
    assert_no_leak(r)


OPENAI_SDK = """
import os
from openai import OpenAI
assert os.environ["OPENAI_API_KEY"] == "PLACEHOLDER"
client = OpenAI()
resp = client.responses.create(model="gpt-mock", input="say hi")
print("responses:", resp.output_text)
text = ""
for chunk in client.chat.completions.create(model="gpt-mock", stream=True,
                                             messages=[{"role": "user", "content": "hi"}]):
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
print("chat:", text.strip())
with client.responses.stream(model="gpt-mock", input="say hi") as stream:
    final = stream.get_final_response()
print("stream:", final.output_text)
""".replace("PLACEHOLDER", PLACEHOLDER)


def test_openai_python_sdk_under_exec(e2e: Path, mock: MockOpenAI) -> None:
    r = run_exec(e2e, sys.executable, "-c", OPENAI_SDK)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.splitlines() == [f"responses: {mock.reply}", f"chat: {mock.reply}", f"stream: {mock.reply}"]
    mock.check()
    assert len(mock.requests) == 3
    assert_no_leak(r)


NODE_FETCH = """
const { setGlobalDispatcher, EnvHttpProxyAgent } = require(process.argv[1]);
setGlobalDispatcher(new EnvHttpProxyAgent());
(async () => {
  const r = await fetch('https://api.openai.com/v1/responses', {
    method: 'POST',
    headers: { authorization: 'Bearer ' + process.env.OPENAI_API_KEY, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-mock', input: 'say hi' }),
  });
  const j = await r.json();
  console.log(r.status, j.output[0].content[0].text);
})().catch(e => { console.error('fetch failed', e); process.exit(1); });
"""


def test_node_fetch_with_undici_agent_under_exec(e2e: Path, mock: MockOpenAI) -> None:
    undici = NODE_MODULES / "undici"
    if shutil.which("node") is None or not undici.is_dir():
        pytest.skip("node or tests/node/node_modules/undici is missing (scripts/test installs them)")
    r = run_exec(e2e, "node", "-e", NODE_FETCH, str(undici))
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == f"200 {mock.reply}"
    mock.check()
    assert_no_leak(r)
