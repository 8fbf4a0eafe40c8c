"""The coding agents people run, each doing one real non-interactive task under `cordon exec`.

Each agent is the real client (Gemini CLI, opencode and the Copilot CLI pinned in
tests/node/package.json, aider in tests/.aider-venv; scripts/test installs them)
against a network-level mock of its provider (tests/mock_agents.py: loopback TLS
playing the provider's hosts, reached through `[routes.upstream]`). The route is
the built-in preset, its secret the variable the user exported (as zero-config
makes it), so the agent sees only the placeholder. Every test checks that:
- the mock got the real key exactly once per request and never the placeholder;
- the reply reached the agent's output;
- the agent's output, cordon's log (at its chattiest, trace), every file the agent wrote under
  HOME and the project, and the environment the agent was started with never held
  the key.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import configs
from tests.conftest import REPO, cordon_argv, subprocess_env, write
from tests.mock_agents import MockProvider
from tests.mock_openai import PLACEHOLDER

pytestmark = pytest.mark.slow

SECRET = "sk-agent-REAL-e2e-7c41d9b05e"
NODE_BIN = REPO / "tests" / "node" / "node_modules" / ".bin"
AIDER = REPO / "tests" / ".aider-venv" / "bin" / "aider"


def tool(path: Path, what: str) -> str:
    """The installed client, or a skip; in CI (scripts/test installs them) a missing one fails."""
    if path.exists() and shutil.which("node") is not None:
        return str(path)
    if os.environ.get("CI"):
        pytest.fail(f"{what} is not installed at {path} (scripts/test installs it)")
    pytest.skip(f"{what} is not installed at {path} (scripts/test installs it)")


def run_agent(project: Path, var: str, *cmd: str, extra_env: dict[str, str] | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`cordon exec -- <agent>` with the user's key in `var`; the agent's own environment is
    saved to child.env first (by a shell that then execs the agent)."""
    env = subprocess_env({var: SECRET, **(extra_env or {})})
    argv = cordon_argv("exec", "--log-level", "trace", "--", "sh", "-c",
                       'env > "$CHILD_ENV_FILE.tmp" && mv "$CHILD_ENV_FILE.tmp" "$CHILD_ENV_FILE" && exec "$@"',
                       "agent", *cmd)
    env["CHILD_ENV_FILE"] = str(project.parent / "child.env")
    return subprocess.run(argv, cwd=project, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout)


def child_env(project: Path) -> dict[str, str]:
    out = {}
    for line in (project.parent / "child.env").read_text().splitlines():
        k, sep, v = line.partition("=")
        if sep:
            out[k] = v
    return out


def assert_clean(r: subprocess.CompletedProcess[str], mock: MockProvider, project: Path, home: Path,
                 placeholder_vars: tuple[str, ...]) -> None:
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-4000:])
    assert mock.reply in r.stdout, r.stdout[-2000:]
    mock.check()                                   # the real key once per request, never the placeholder
    assert SECRET not in r.stdout and SECRET not in r.stderr
    for d in (project, home):
        for f in d.rglob("*"):
            if f.is_file() and not f.is_symlink():
                assert SECRET.encode() not in f.read_bytes(), f"the key was written to {f}"
    got = child_env(project)
    assert not any(SECRET in v for v in got.values()), "the key was in the agent's environment"
    for v in placeholder_vars:
        assert got.get(v) == PLACEHOLDER, v


# --- Gemini CLI --------------------------------------------------------------------------------

def test_gemini_cli(project: Path, home: Path) -> None:
    gemini = tool(NODE_BIN / "gemini", "@google/gemini-cli")
    # no usage statistics (they go to another host, tunnelled and failing here)
    write(home / ".gemini" / "settings.json", json.dumps({"privacy": {"usageStatisticsEnabled": False}}))
    with MockProvider("gemini", ["generativelanguage.googleapis.com"], expected_key=SECRET) as mock:
        configs.write(project / "cordon.toml", configs.preset("gemini", env="GEMINI_API_KEY", upstream=mock))
        # a model named on the command line: no routing call before the turn
        r = run_agent(project, "GEMINI_API_KEY", gemini, "--skip-trust", "-m", "gemini-2.5-flash", "-p", "say hi")
        assert_clean(r, mock, project, home, ("GEMINI_API_KEY", "GOOGLE_API_KEY"))
        [q] = mock.requests                                   # one task, one model call
        assert q.header("x-goog-api-key") == SECRET and ":streamGenerateContent" in q.path


# --- aider (litellm) ---------------------------------------------------------------------------

AIDER_ARGS = ("--no-git", "--yes-always", "--no-check-update", "--no-show-model-warnings",
              "--analytics-disable", "--no-stream", "--no-show-release-notes", "--message", "say hi")
# litellm would fetch its model price list from the internet at import
AIDER_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}


@pytest.mark.parametrize(("preset", "var", "model", "hosts"), [
    ("gemini", "GEMINI_API_KEY", "gemini/gemini-2.5-flash", ["generativelanguage.googleapis.com"]),
    ("openai", "OPENAI_API_KEY", "gpt-4o-mini", ["api.openai.com"]),
    ("anthropic", "ANTHROPIC_API_KEY", "anthropic/claude-sonnet-4-5", ["api.anthropic.com"]),
])
def test_aider(project: Path, home: Path, preset: str, var: str, model: str, hosts: list[str]) -> None:
    aider = tool(AIDER, "aider-chat")
    with MockProvider(preset, hosts, expected_key=SECRET) as mock:
        configs.write(project / "cordon.toml", configs.preset(preset, env=var, upstream=mock))
        r = run_agent(project, var, aider, "--model", model, *AIDER_ARGS, extra_env=AIDER_ENV)
        assert_clean(r, mock, project, home, (var,))
        assert len(mock.requests) == 1, [q.path for q in mock.requests]      # one task, one model call
        if preset == "gemini":
            # litellm puts the key in the URL: the placeholder left it, the real key went in its place
            assert all(q.path.endswith(f"?key={SECRET}") and q.header("x-goog-api-key") is None
                       for q in mock.requests), [q.path for q in mock.requests]
            assert "key=" not in r.stderr                          # the proxy logs no query string


# --- opencode -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("preset", "var", "model"), [
    ("openai", "OPENAI_API_KEY", "openai/gpt-4o-mini"),
    ("anthropic", "ANTHROPIC_API_KEY", "anthropic/claude-sonnet-4-5"),
])
def test_opencode(project: Path, home: Path, preset: str, var: str, model: str) -> None:
    opencode = tool(NODE_BIN / "opencode", "opencode-ai")
    stored = "sk-stored-by-opencode-auth-login-41"
    provider = model.split("/")[0]
    # a key saved with `opencode auth login` wins over the variable in opencode: the session's
    # placeholder must win over it in turn
    auth = write(home / ".local" / "share" / "opencode" / "auth.json",
                 json.dumps({provider: {"type": "api", "key": stored}}))
    before = auth.read_bytes()
    hosts = [configs.preset(preset).host]
    with MockProvider(preset, hosts, expected_key=SECRET) as mock:
        configs.write(project / "cordon.toml", configs.preset(preset, env=var, upstream=mock))
        # one model call: no title for the session, no update check; no fetch of its model list
        # (tunnelled to the internet, which this machine cannot reach: seconds of waiting); npm
        # offline (in a fresh home opencode installs its plugin package, ~95 MB, into its config
        # directory)
        config = json.dumps({"autoupdate": False, "agent": {"title": {"disable": True}}})
        r = run_agent(project, var, opencode, "run", "-m", model, "say hi",
                      extra_env={"OPENCODE_CONFIG_CONTENT": config, "OPENCODE_DISABLE_MODELS_FETCH": "true",
                                 "npm_config_offline": "true"})
        assert_clean(r, mock, project, home, (var,))
        assert len(mock.requests) == 1, [q.path for q in mock.requests]
        assert all(stored not in json.dumps(q.headers) for q in mock.requests)
        assert f"opencode keeps its own {provider} API key in {auth}" in r.stderr
        assert json.loads(child_env(project)["OPENCODE_AUTH_CONTENT"])[provider]["key"] == PLACEHOLDER
        assert auth.read_bytes() == before                         # its own file is left as it was


# --- GitHub Copilot CLI ---------------------------------------------------------------------------

def test_copilot_cli(project: Path, home: Path) -> None:
    copilot = tool(NODE_BIN / "copilot", "@github/copilot")
    # api.github.com names the plan's own Copilot host (copilot_internal/user); the preset's
    # *.githubcopilot.com covers it
    hosts = ["api.github.com", "api.githubcopilot.com", "api.individual.githubcopilot.com"]
    with MockProvider("github", hosts, expected_key=SECRET) as mock:
        configs.write(project / "cordon.toml", configs.preset("github", env="GH_TOKEN", upstream=mock))
        r = run_agent(project, "GH_TOKEN", copilot, "-p", "say hi", "--allow-all-tools", "--disable-client-telemetry",
                      "-s", "--model", "gpt-4o-mini", "--no-auto-update")
        assert_clean(r, mock, project, home, ("GH_TOKEN", "GITHUB_TOKEN", "COPILOT_GITHUB_TOKEN"))
        paths = {(q.header("host"), q.path.split("?")[0]) for q in mock.requests}
        assert ("api.github.com", "/copilot_internal/user") in paths
        assert ("api.individual.githubcopilot.com", "/chat/completions") in paths


# --- activation shims -----------------------------------------------------------------------------

VERSIONS = {"gemini": "0.61.0", "opencode": "1.18.33", "copilot": "1.0.102", "aider": "0.86.2"}


def test_activation_shims_run_each_agent_under_cordon(project: Path, tmp_path: Path) -> None:
    """The shims `cordon hook` / `use cordon` put on PATH find each agent and run it under exec."""
    from cordon.app.activation import resolve_agents, write_shims
    from cordon.core.shellhooks import DEFAULT_AGENTS
    assert set(VERSIONS) <= set(DEFAULT_AGENTS)
    installed = {"gemini": NODE_BIN / "gemini", "opencode": NODE_BIN / "opencode",
                 "copilot": NODE_BIN / "copilot", "aider": AIDER}
    for name, path in installed.items():
        tool(path, name)
    shims = tmp_path / "shims"
    env = subprocess_env()
    search = os.pathsep.join([str(NODE_BIN), str(AIDER.parent), env["PATH"]])
    found, _ = resolve_agents(list(DEFAULT_AGENTS), search, shims)
    assert {a.name: a.real for a in found if a.name in VERSIONS} == {k: str(v) for k, v in installed.items()}
    write_shims(shims, found, cordon_argv())
    env["PATH"] = os.pathsep.join([str(shims), search])
    env["GEMINI_CLI_NO_RELAUNCH"] = "true"     # a version needs no second Node with a larger heap
    for name, version in VERSIONS.items():
        r = subprocess.run([name, "--version"], cwd=project, env={**env, "HOME": str(tmp_path / f"home-{name}")},
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (name, r.stderr[-2000:])
        assert version in r.stdout, (name, r.stdout)
        assert "cordon: no routes: tunnel only" in r.stderr      # it ran under `cordon exec`
