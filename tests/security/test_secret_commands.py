"""A secret command (or `op`) that cordon runs while an agent is watching gives the agent nothing:
its environment is minimal (never another route's `env` secret), its output goes through sockets
that `/proc/<pid>/fd/1` cannot open, and the agent cannot make cordon run it again by replacing the
secrets generation file. Run with `--sandbox off`: in the sandbox the agent cannot see cordon's
other children at all (tests/security/test_confinement.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from cordon.core.errors import ConfigError
from cordon.core.model import Auth, Route, SecretSpec
from cordon.proxy.secretcache import SecretCache
from cordon.store.config import load_config
from cordon.store.generation import bump_generation
from cordon.store.secrets import SecretResolver
from tests import configs
from tests.conftest import cordon_argv, subprocess_env
from tests.upstream import UpstreamServer

ENV_SECRET = "sk-env-route-SECRET-5f2a9c"
CMD_SECRET = "cmd-route-SECRET-77e1b0"

COMMAND = """
import os, pathlib, sys, time
d = pathlib.Path(sys.argv[1])
if (d / "armed").exists():          # a resolution the agent asked for (not exec's preflight)
    (d / "pid").write_text(str(os.getpid()))
    while not (d / "go").exists():  # stay alive until the agent has looked
        time.sleep(0.02)
print(os.environ.get("CMD_SECRET_SOURCE", "missing"))
"""

AGENT = """
import os, pathlib, subprocess, sys, time
d = pathlib.Path(sys.argv[1])
(d / "armed").touch()
curl = subprocess.Popen(["curl", "-sS", "-o", str(d / "answer"), "https://api.example.com/v1/x"])
while not (d / "pid").exists():
    time.sleep(0.02)
pid = int((d / "pid").read_text())
(d / "environ").write_bytes(open(f"/proc/{pid}/environ", "rb").read())
for n in (1, 2):
    try:
        fd = os.open(f"/proc/{pid}/fd/{n}", os.O_RDONLY | os.O_NONBLOCK)
        (d / f"fd{n}").write_text("opened")
        os.close(fd)
    except OSError as e:
        (d / f"fd{n}").write_text(f"refused {e.errno}")
(d / "go").touch()
sys.exit(curl.wait())
"""


def test_secret_command_exposes_neither_environment_nor_output_to_the_agent(project: Path, tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (scripts/test installs it)")
    d = tmp_path / "rendezvous"
    d.mkdir()
    (tmp_path / "command.py").write_text(COMMAND)
    with UpstreamServer("api.example.com") as up:
        configs.write(project / "cordon.toml", configs.openai(), configs.anthropic(   # CORDON_TEST_REAL_KEY
            name="example", host="api.example.com", upstream=up, secret={
                "source": "command", "command": [sys.executable, str(tmp_path / "command.py"), str(d)],
                "env": ["CMD_SECRET_SOURCE"]}))
        r = subprocess.run(cordon_argv("exec", "--sandbox", "off", "--", sys.executable, "-c", AGENT, str(d)),
                           cwd=project, capture_output=True, text=True, timeout=120,
                           env=subprocess_env({"CORDON_TEST_REAL_KEY": ENV_SECRET, "CMD_SECRET_SOURCE": CMD_SECRET}))
        assert r.returncode == 0, r.stderr
        assert up.requests[-1].header("x-api-key") == CMD_SECRET   # the request the agent caused was served
    environ = (d / "environ").read_bytes()
    assert ENV_SECRET.encode() not in environ, "another route's env secret is in the command's environment"
    assert b"CORDON_TEST_REAL_KEY" not in environ
    assert (d / "fd1").read_text().startswith("refused"), "the command's stdout could be opened through /proc"
    assert (d / "fd2").read_text().startswith("refused")


def test_a_generation_bump_does_not_run_a_secret_command_again(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    code = (f"import pathlib; p = pathlib.Path({str(runs)!r}); "
            "p.write_text(p.read_text() + 'x' if p.exists() else 'x'); print('cmd-value-123456')")
    route = Route(name="c", host="api.example.com",
                  auth=Auth(type="header", header_name="x-api-key",
                            secret=SecretSpec(source="command", command=(sys.executable, "-c", code), ttl=3600)))
    gen = tmp_path / "secrets.gen"
    bump_generation(gen)
    cache = SecretCache(SecretResolver({"PATH": "/usr/bin:/bin"}), gen)

    async def main() -> None:
        assert (await cache.get(route)).reveal() == "cmd-value-123456"
        for _ in range(3):
            bump_generation(gen)    # what any process of the user can do
            assert (await cache.get(route)).reveal() == "cmd-value-123456"

    anyio.run(main)
    assert runs.read_text() == "x", "the command ran again"


def test_a_command_cannot_be_handed_another_routes_env_secret(tmp_path: Path) -> None:
    takes_openais = {"source": "command", "command": ["sh", "-c", "echo $OPENAI_API_KEY"], "env": ["OPENAI_API_KEY"]}
    p = configs.write(tmp_path / "cordon.toml", configs.openai(env="OPENAI_API_KEY"),
                      configs.RouteSpec(name="other", host="api.example.com", header_name="x-api-key", scheme=None,
                                        secret=takes_openais))
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "OPENAI_API_KEY" in e.value.message and "openai" in e.value.message
