"""Nothing outlives a `cordon exec` session: daemons the child leaves behind (double fork,
setsid, SIGTERM ignored) are ended at teardown, and nothing that is not a descendant is.

Unconfined, cordon's subreaper ends them; confined, the sandbox's pid namespace does (its
init's exit kills every process in it). The daemon is found on the host by a marker in its
command line, since a pid seen inside the namespace means nothing outside it."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cordon.app import reaper
from tests.conftest import cordon_argv, subprocess_env

# the classic daemon: fork, setsid, fork again, the parent exits; the grandchild writes its pid
DAEMON = textwrap.dedent("""\
    import os, signal, sys, time
    out, ignore_term = sys.argv[1], sys.argv[2] == "1"   # argv[3]: a marker the test looks for
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    if ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(out + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(out + ".tmp", out)
    while True:
        time.sleep(1)
""")


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False


def with_marker(marker: str) -> list[int]:
    """Host pids of live processes whose command line holds `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if marker.encode() in f.read() and alive(int(entry)):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def run_daemon_session(project: Path, tmp_path: Path, ignore_term: str, sandbox: str,
                       tail: str = "") -> tuple[subprocess.CompletedProcess[str], str]:
    """`cordon exec` a child that starts the daemon, waits until it runs, then exits (`tail`)."""
    pidfile = tmp_path / "daemon.pid"
    script = tmp_path / "daemon.py"
    script.write_text(DAEMON)
    marker = f"cordon-reaper-test-{secrets.token_hex(8)}"
    cmd = (f'"{sys.executable}" "{script}" "{pidfile}" {ignore_term} {marker}; '
           f'while [ ! -e "{pidfile}" ]; do sleep 0.01; done{tail}')
    r = subprocess.run(cordon_argv("exec", "--sandbox", sandbox, "--", "sh", "-c", cmd), cwd=project,
                       env=subprocess_env(), capture_output=True, text=True, timeout=60)
    wait_for(pidfile)
    return r, marker


def wait_for(path: Path) -> int:
    for _ in range(500):
        if path.exists():
            return int(path.read_text())
        time.sleep(0.01)
    raise AssertionError(f"{path} never appeared")


@pytest.mark.parametrize("sandbox", ["off", "auto"])
@pytest.mark.parametrize("ignore_term", ["0", "1"])
def test_a_daemon_the_child_started_ends_with_the_session(project: Path, tmp_path: Path, ignore_term: str,
                                                          sandbox: str) -> None:
    r, marker = run_daemon_session(project, tmp_path, ignore_term, sandbox)
    try:
        assert r.returncode == 0, r.stderr
        assert not with_marker(marker), "the daemon outlived the session"
    finally:
        for pid in with_marker(marker):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("sandbox", ["off", "auto"])
def test_the_session_exit_status_is_the_childs_even_with_a_daemon_left(project: Path, tmp_path: Path,
                                                                       sandbox: str) -> None:
    r, marker = run_daemon_session(project, tmp_path, "0", sandbox, tail="; exit 7")
    try:
        assert r.returncode == 7, r.stderr
        assert not with_marker(marker)
    finally:
        for pid in with_marker(marker):
            os.kill(pid, signal.SIGKILL)


def test_processes_that_are_not_descendants_are_left_alone(tmp_path: Path) -> None:
    """end_descendants() ends this process's descendants only: a sibling keeps running."""
    sibling = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        # run the reaper in a child process, whose only descendant is a sleep of its own
        code = textwrap.dedent("""\
            import subprocess, sys
            from cordon.app import reaper
            assert reaper.become_subreaper()
            p = subprocess.Popen(["sleep", "60"])
            n = reaper.end_descendants(grace=2)
            print(n, p.poll() is not None)
        """)
        r = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["1", "True"]
        assert sibling.poll() is None
    finally:
        sibling.kill()
        sibling.wait()


def test_descendants_lists_parents_before_children() -> None:
    p = subprocess.Popen(["sh", "-c", "sleep 60 & wait"])
    try:
        for _ in range(500):
            found = reaper.descendants(p.pid)
            if found:
                break
            time.sleep(0.01)
        assert len(found) == 1                            # sh's sleep
        assert p.pid in reaper.descendants()
        assert reaper.descendants().index(p.pid) < reaper.descendants().index(found[0])
    finally:
        for pid in reaper.descendants(p.pid):
            os.kill(pid, signal.SIGKILL)
        p.kill()
        p.wait()
