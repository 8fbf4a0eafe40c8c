"""What cordon exposes to the machine and the network: its proxy is reachable on 127.0.0.1 only,
and its commands talk to nothing but loopback (no telemetry, no update checks, no DNS) — the
only outbound connections are the upstreams a client asked the proxy for."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests import configs
from tests.conftest import REPO, cordon_argv
from tests.proxy_harness import running_proxy
from tests.upstream import UpstreamServer

NETLOG = Path(__file__).resolve().parent / "netlog"


def test_proxy_listens_on_127_0_0_1_only() -> None:
    with running_proxy([]) as px:
        with socket.create_connection(("127.0.0.1", px.port), timeout=5):
            pass
        for other in ("127.0.0.2", "::1"):
            fam = socket.AF_INET6 if ":" in other else socket.AF_INET
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.settimeout(5)
            try:
                assert s.connect_ex((other, px.port)) != 0, f"the proxy answers on {other}"
            except OSError:
                pass   # no such address family here: not reachable either
            finally:
                s.close()
        listeners = [ln.split() for ln in Path("/proc/net/tcp").read_text().splitlines()[1:]]
        mine = [ln for ln in listeners if ln[3] == "0A" and int(ln[1].split(":")[1], 16) == px.port]
        assert [ln[1].split(":")[0] for ln in mine] == ["0100007F"], "bound to something other than 127.0.0.1"


def _destinations(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _loopback(line: str) -> bool:
    kind, rest = line.split(" ", 1)
    if kind == "getaddrinfo":
        return rest.strip("b'\"") in ("localhost", "127.0.0.1", "::1", "None")
    family, rest = rest.split(" ", 1)
    if family == "AF_UNIX":
        return True          # D-Bus (the keyring), the session's own sockets
    return rest.startswith(("('127.", "('::1'", "('localhost'"))


def test_commands_talk_to_loopback_only(home: Path, project: Path, tmp_path: Path) -> None:
    """setup, route, secret, env, status, exec (with a client request through the proxy): every socket
    cordon opens goes to loopback or a local Unix socket."""
    with UpstreamServer("api.openai.com") as up:
        configs.write(project / "cordon.toml", configs.openai(upstream=up))   # CORDON_TEST_REAL_KEY
        log = tmp_path / "net.log"
        env = dict(os.environ)
        env.update({"PYTHONPATH": f"{NETLOG}{os.pathsep}{REPO}", "CORDON_TEST_REAL_KEY": "sk-real-0123456789abcd"})
        client = ("curl -sS --fail -o /dev/null https://api.openai.com/v1/models" if _have("curl")
                  else "true")
        for args in (("route", "list"), ("setup", "codex", "--scope", "project"), ("env", "--format", "json"),
                     ("status",), ("secret", "check"), ("exec", "--", "sh", "-c", client)):
            env["CORDON_TEST_NETLOG"] = str(log)
            r = subprocess.run(cordon_argv(*args), cwd=project, env=env, stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=60)
            assert r.returncode in (0, 1), (args, r.stderr)   # status/secret check may report problems
        if _have("curl"):
            assert up.requests, "the client request did not go through cordon"
        lines = _destinations(log)
        assert lines, "the network hook logged nothing (is it loaded?)"
        outside = [ln for ln in lines if not _loopback(ln)]
        assert outside == [], outside


def _have(prog: str) -> bool:
    import shutil
    return shutil.which(prog) is not None


@pytest.mark.parametrize("line,ok", [("connect AF_INET ('127.0.0.1', 1)", True),
                                     ("connect AF_INET ('93.184.216.34', 443)", False),
                                     ("getaddrinfo 'api.openai.com'", False), ("connect AF_UNIX '/run/bus'", True)])
def test_the_loopback_check_itself(line: str, ok: bool) -> None:
    assert _loopback(line) == ok
