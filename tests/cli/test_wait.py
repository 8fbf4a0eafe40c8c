"""`cordon wait`: succeeds once /health answers, times out with a clear message otherwise."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

from cordon.store.paths import Paths
from tests.conftest import cordon_argv, subprocess_env, write
from tests.startproc import started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_times_out_naming_the_port(project: Path, cordon_proc) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    write(project / "cordon.toml", f"listen = {port}\n")
    p = cordon_proc("wait", "--timeout", "0.3", cwd=project)
    assert p.returncode == 1
    assert f"cordon: error: no healthy cordon proxy on 127.0.0.1:{port} after 0.3 s" in p.stderr
    assert "hint: start it with `cordon start`" in p.stderr
    assert p.stdout == ""


def test_ready_proxy_returns_at_once(project: Path, cordon_proc) -> None:  # type: ignore[no-untyped-def]
    write(project / "cordon.toml", "listen = 0\n")       # the port is only in the run record
    with started(cwd=project) as sp:
        p = cordon_proc("wait", "--timeout", "10", cwd=project)
        assert p.returncode == 0, p.stderr
        assert f"127.0.0.1:{sp.port}" in p.stderr and p.stdout == ""
        q = cordon_proc("wait", "--quiet", "--config", str(project / "cordon.toml"), cwd=project.parent)
        assert q.returncode == 0 and q.stderr == ""


def test_waits_for_a_proxy_that_starts_later(project: Path) -> None:
    write(project / "cordon.toml", "listen = 0\n")
    waiter = subprocess.Popen(cordon_argv("wait", "--timeout", "60"), env=subprocess_env(), cwd=project,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        try:
            waiter.wait(0.5)
            raise AssertionError("cordon wait returned before any proxy ran")
        except subprocess.TimeoutExpired:
            pass
        with started(cwd=project) as sp:
            _out, err = waiter.communicate(timeout=60)
            assert waiter.returncode == 0, err
            assert f"127.0.0.1:{sp.port}" in err
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.communicate()


def test_stale_record_is_ignored(project: Path, cordon_proc) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    write(project / "cordon.toml", f"listen = {port}\n")
    dead = subprocess.Popen(["true"])
    dead.wait()
    state = Paths.from_env(cwd=project).state_dir("project", project)
    write(state / "proxy.json", json.dumps({"pid": dead.pid, "port": 1}))
    p = cordon_proc("wait", "--timeout", "0.2", cwd=project)
    assert p.returncode == 1 and f"127.0.0.1:{port}" in p.stderr


def test_bad_timeout_and_missing_config(project: Path, cordon_proc) -> None:  # type: ignore[no-untyped-def]
    write(project / "cordon.toml", "listen = 1\n")
    p = cordon_proc("wait", "--timeout", "-1", cwd=project)
    assert p.returncode == 2 and "--timeout" in p.stderr
    p = cordon_proc("wait", "--scope", "user", cwd=project)
    assert p.returncode == 1 and "cordon.toml" in p.stderr
