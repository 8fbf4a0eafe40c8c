"""One activation scenario, run in real interactive shells: bash, zsh and fish with
`cordon hook`, and bash and fish with direnv and `use cordon` (after `direnv allow`).

The scenario: note the environment, enter a cordon project, run `codex` (a fake
agent on PATH that calls a local HTTPS upstream through the proxy with curl),
leave, note the environment again. The upstream must have seen the real key
(kept in a file keyring), the agent only the placeholder, and the environment
after leaving must be exactly the one before, including the user's own
OPENAI_API_KEY, which no agent may see.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pexpect
import pytest

from cordon.core.shellhooks import quote
from tests import configs
from tests.conftest import REPO, cordon_argv, subprocess_env, write
from tests.upstream import UpstreamServer

SECRET = "sk-real-activation-5f0c-DO-NOT-LEAK"
USER_KEY = "sk-users-own-shell-key-DO-NOT-LEAK"
PLACEHOLDER = "dummy-replaced-by-cordon"
# the shell's own bookkeeping, which changes with every cd or prompt
VOLATILE = {"PWD", "OLDPWD", "_", "SHLVL", "COLUMNS", "LINES"}

VARIANTS = {
    # name: (shell, activation)
    "bash": ("bash", "hook"),
    "zsh": ("zsh", "hook"),
    "fish": ("fish", "hook"),
    "direnv-bash": ("bash", "direnv"),
    "direnv-fish": ("fish", "direnv"),
}

DUMPENV = f"""\
#!{sys.executable}
import json, os, sys
with open(sys.argv[1], "w") as f:
    json.dump(dict(os.environ), f)
"""

FAKE_CODEX = f"""\
#!{sys.executable}
# A stand-in agent: records what it was given, then calls the API the way codex would
# (through HTTPS_PROXY, trusting the bundle in SSL_CERT_FILE/CURL_CA_BUNDLE) with curl.
import json, os, subprocess, sys
out = sys.argv[1]
r = subprocess.run(["curl", "-sS", "--fail", "-H", "Authorization: Bearer " + os.environ.get("OPENAI_API_KEY", ""),
                    "https://api.openai.com/echo"], capture_output=True, text=True)
with open(out, "w") as f:
    json.dump({{"argv": sys.argv[2:], "env": dict(os.environ), "curl_status": r.returncode,
               "curl_stdout": r.stdout, "curl_stderr": r.stderr}}, f)
"""


@dataclass
class World:
    home: Path
    bin: Path
    proj: Path
    outside: Path
    results: Path
    env: dict[str, str]


def _need(*binaries: str) -> None:
    for b in binaries:
        if shutil.which(b) is None:
            pytest.skip(f"{b} is not installed (scripts/test installs it)")


@pytest.fixture
def world(home: Path, tmp_path: Path, up: UpstreamServer) -> World:
    b = tmp_path / "bin"
    for name, text in {"cordon": f'#!/bin/sh\nexec {sys.executable} -m cordon "$@"\n',
                       "dumpenv": DUMPENV, "codex": FAKE_CODEX}.items():
        write(b / name, text).chmod(0o755)
    proj = tmp_path / "proj"
    configs.write(proj / "cordon.toml", configs.openai(keyring="openai", placeholder_env=configs.CODEX_VARS,
                                                       upstream=up))
    (proj / "sub").mkdir()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    results = tmp_path / "results"
    results.mkdir()
    env = subprocess_env({
        "PATH": f"{b}{os.pathsep}{os.environ['PATH']}",
        "TERM": "dumb",
        "OPENAI_API_KEY": USER_KEY,        # the user's own key, exported before anything
    })
    for v in ("DIRENV_DIFF", "DIRENV_DIR", "DIRENV_FILE", "DIRENV_WATCHES", "CORDON_HOOK", "PROMPT_COMMAND",
              "ZDOTDIR", "BASH_ENV", "ENV"):
        env.pop(v, None)
    r = subprocess.run([*cordon_argv("secret", "set", "openai")], input=SECRET, capture_output=True, text=True,
                       env=env, cwd=proj, timeout=60)
    assert r.returncode == 0, r.stderr
    return World(home=home, bin=b, proj=proj, outside=outside, results=results, env=env)


# --- the shells ------------------------------------------------------------------------------------

def _rc(world: World, shell: str, activation: str) -> tuple[list[str], dict[str, str]]:
    """argv and env for an interactive shell whose rc file installs the activation (twice)."""
    rcdir = world.home / f"rc-{shell}"
    rcdir.mkdir()
    env = dict(world.env)
    if activation == "direnv":
        write(world.home / ".config" / "direnv" / "direnvrc",
              subprocess.run(["cordon", "hook", "direnv"], capture_output=True, text=True, env=env,
                             check=True, timeout=60).stdout)
        write(world.proj / ".envrc", "use cordon\n")
        install = {"bash": 'eval "$(direnv hook bash)"', "zsh": 'eval "$(direnv hook zsh)"',
                   "fish": "direnv hook fish | source"}[shell]
    else:
        install = {"bash": 'eval "$(cordon hook bash)"', "zsh": 'eval "$(cordon hook zsh)"',
                   "fish": "cordon hook fish | source"}[shell]
    if shell == "bash":
        write(rcdir / "rc", f"PS1='READY> '\n{install}\n{install}\n")
        return ["bash", "--noprofile", "--rcfile", str(rcdir / "rc"), "-i"], env
    if shell == "zsh":
        write(rcdir / ".zshrc", f"PROMPT='READY> '\nunsetopt zle\n{install}\n{install}\n")
        env["ZDOTDIR"] = str(rcdir)
        return ["zsh", "-i"], env
    write(rcdir / "rc.fish", f"function fish_prompt; echo -n 'READY> '; end\n"
                             f"function fish_greeting; end\n{install}\n{install}\n")
    return ["fish", "--no-config", "-i", "-C", f"source {quote(str(rcdir / 'rc.fish'), 'fish')}"], env


class Shell:
    """Types lines into an interactive shell and waits for each to finish."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.p = pexpect.spawn(argv[0], argv[1:], env=env, cwd=str(cwd), encoding="utf-8", timeout=90,
                               dimensions=(50, 400))
        self.n = 0
        self.p.expect("READY> ")

    def run(self, line: str) -> str:
        self.n += 1
        # the marker is split in the typed line, so only the output of echo matches it
        self.p.sendline(f'{line}; echo "DO""NE-{self.n}"')
        self.p.expect(f"DONE-{self.n}")
        out = self.p.before or ""
        self.p.expect("READY> ")
        return out

    def close(self) -> None:
        self.p.sendline("exit")
        self.p.expect(pexpect.EOF)
        self.p.close()


def _env(path: Path) -> dict[str, str]:
    data: dict[str, str] = json.loads(path.read_text())
    return data


def _stable(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in VOLATILE}


@pytest.mark.network_tools
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_activation_scenario(variant: str, world: World, up: UpstreamServer) -> None:
    shell, activation = VARIANTS[variant]
    _need(shell, "curl", *(["direnv"] if activation == "direnv" else []))
    argv, env = _rc(world, shell, activation)
    q = lambda p: quote(str(p), shell)  # noqa: E731
    res = world.results
    sh = Shell(argv, env, world.outside)
    try:
        sh.run(f"dumpenv {q(res / 'before.json')}")
        sh.run(f"cd {q(world.proj / 'sub')}")
        if activation == "direnv":
            sh.run("direnv allow ..")
            sh.run("true")                       # the next prompt loads the .envrc
        sh.run(f"dumpenv {q(res / 'inside.json')}")
        sh.run(f"codex {q(res / 'agent.json')} 'arg one' \"it's\"")
        sh.run(f"cd {q(world.outside)}")
        sh.run(f"dumpenv {q(res / 'after.json')}")
    finally:
        sh.close()

    before, inside, after = (_env(res / f"{n}.json") for n in ("before", "inside", "after"))
    # inside: our shims first on PATH, the placeholders exported, the user's key nowhere exported
    shim_dir = Path(inside["PATH"].split(os.pathsep)[0])
    assert (shim_dir / "codex").is_file() and shim_dir != world.bin
    assert inside["PATH"].split(os.pathsep)[1:] == before["PATH"].split(os.pathsep)
    assert inside["OPENAI_API_KEY"] == inside["CODEX_API_KEY"] == PLACEHOLDER
    # the agent ran under cordon exec, with placeholders, and never saw either key
    agent: dict[str, Any] = json.loads((res / "agent.json").read_text())
    assert agent["argv"] == ["arg one", "it's"]
    assert agent["env"]["OPENAI_API_KEY"] == agent["env"]["CODEX_API_KEY"] == PLACEHOLDER
    assert agent["env"].get("CORDON_SESSION") and agent["env"].get("HTTPS_PROXY", "").startswith("http://")
    assert "DIRENV_DIFF" not in agent["env"]
    leaked = [k for k, v in agent["env"].items() if SECRET in v or USER_KEY in v]
    assert not leaked, f"a key reached the agent in {leaked}"
    assert agent["curl_status"] == 0, agent["curl_stderr"]
    # the upstream got the real key, from the keyring, through the proxy
    seen = [r for r in up.requests if r.path == "/echo"]
    assert [r.header("authorization") for r in seen] == [f"Bearer {SECRET}"]
    assert SECRET not in agent["curl_stdout"]
    # after leaving: exactly the environment we started with
    assert _stable(after) == _stable(before)
    assert after["OPENAI_API_KEY"] == USER_KEY and "CODEX_API_KEY" not in after


def test_direnv_library_passes_shellcheck() -> None:
    _need("shellcheck")
    r = subprocess.run(["shellcheck", str(REPO / "shell-hooks" / "cordon.direnvrc")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_printed_bash_hook_passes_shellcheck(tmp_path: Path) -> None:
    _need("shellcheck")
    hook = subprocess.run(cordon_argv("hook", "bash"), capture_output=True, text=True, env=subprocess_env(),
                          check=True, timeout=60).stdout
    f = write(tmp_path / "hook.bash", hook)
    r = subprocess.run(["shellcheck", "-s", "bash", str(f)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
