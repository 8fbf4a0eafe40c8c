"""Nothing outlives a `cordon exec` session: every process the child started is ended at teardown.

cordon becomes a child subreaper (Linux `PR_SET_CHILD_SUBREAPER`) before it starts
the child, so a descendant that double-forks or calls setsid() is re-parented to
cordon instead of to init. At teardown `end_descendants()` sends SIGTERM to every
remaining descendant, waits up to `grace` seconds, then sends SIGKILL and reaps
them. This is how Codex's background `app-server` daemon, which would otherwise
keep pointing at a dead proxy and a deleted CA bundle, ends with the session.
It must not touch any process that is not a descendant of cordon.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
GRACE = 2.0             # seconds the descendants get after SIGTERM before SIGKILL


def become_subreaper() -> bool:
    """Make orphaned descendants children of this process (Linux). False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes  # here: only `cordon exec` pays for it, once
    try:
        libc = ctypes.CDLL(None, use_errno=True)     # the process's own symbols include libc's prctl
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process visible in /proc (skipping zombies: they are gone)."""
    out: dict[int, int] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) >= 2 and fields[0] != b"Z":
            out[int(name)] = int(fields[1])
    return out


def descendants(root: int | None = None) -> list[int]:
    """Live descendants of `root` (default: this process), parents before children."""
    root = os.getpid() if root is None else root
    children: dict[int, list[int]] = {}
    for pid, ppid in _parents().items():
        children.setdefault(ppid, []).append(pid)
    out: list[int] = []
    todo = list(children.get(root, ()))
    while todo:
        pid = todo.pop(0)
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _reap(pids: set[int]) -> None:
    """Collect the exit status of those of `pids` that are our children and have ended
    (re-parented orphans included). Only these: a status another owner waits for (a
    subprocess.Popen elsewhere in cordon) is not ours to take."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def end_descendants(grace: float = GRACE) -> int:
    """TERM every descendant, wait up to `grace` s for them to go, KILL the rest; returns how
    many there were. Call it once the child itself has been waited for."""
    found = descendants()
    if not found:
        return 0
    seen = set(found)
    for pid in found:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while True:
        _reap(seen)
        left = descendants()
        seen.update(left)
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    # a descendant that ignored TERM, or one born from a TERM handler, gets KILL
    for _ in range(10):
        left = descendants()
        if not left:
            break
        seen.update(left)
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
        _reap(seen)
    _reap(seen)
    return len(found)
