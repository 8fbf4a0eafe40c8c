"""Nothing outlives a `cordon exec` session: daemons the child leaves behind (double fork,
setsid, SIGTERM ignored) are ended at teardown, and nothing that is not a descendant is."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cordon.app import reaper
from tests.conftest import cordon_argv, subprocess_env

# the classic daemon: fork, setsid, fork again, the parent exits; the grandchild holds a lock on
# a file for as long as it lives (a lock is visible from outside a sandbox's pid namespace, a pid is not)
DAEMON = textwrap.dedent("""\
    import fcntl, os, signal, sys, time
    lock, ignore_term = sys.argv[1], sys.argv[2] == "1"
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    if ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(lock + ".starting", lock + ".ready")
    while True:
        time.sleep(1)
""")


def held(lock: Path) -> bool:
    """Whether some process still holds the daemon's lock."""
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def run_with_daemon(project: Path, tmp_path: Path, ignore_term: str, sandbox: str, exit_code: int = 0):  # type: ignore[no-untyped-def]
    lock = tmp_path / "daemon.lock"
    (tmp_path / "daemon.lock.starting").write_text("")
    script = tmp_path / "daemon.py"
    script.write_text(DAEMON)
    # the child starts the daemon, waits until it holds its lock, and exits: the daemon is an orphan by then
    cmd = (f'"{sys.executable}" "{script}" "{lock}" {ignore_term}; '
           f'while [ ! -e "{lock}.ready" ]; do sleep 0.01; done; exit {exit_code}')
    r = subprocess.run(cordon_argv("exec", "--sandbox", sandbox, "--", "sh", "-c", cmd), cwd=project,
                       env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert (tmp_path / "daemon.lock.ready").exists(), r.stderr
    return r, lock


@pytest.mark.parametrize("sandbox", ["off", "auto"])
@pytest.mark.parametrize("ignore_term", ["0", "1"])
def test_a_daemon_the_child_started_ends_with_the_session(project: Path, tmp_path: Path, ignore_term: str,
                                                         sandbox: str) -> None:
    r, lock = run_with_daemon(project, tmp_path, ignore_term, sandbox)
    assert r.returncode == 0, r.stderr
    assert not held(lock), "the daemon outlived the session"


def test_the_session_exit_status_is_the_childs_even_with_a_daemon_left(project: Path, tmp_path: Path) -> None:
    r, lock = run_with_daemon(project, tmp_path, "0", "off", exit_code=7)
    assert r.returncode == 7, r.stderr
    assert not held(lock)


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
