"""Every cordon process that holds a secret is not dumpable: another process of the same user
(an agent) cannot read its /proc/<pid>/environ or memory. `cordon exec` was; `cordon start` (which
the user service runs) and the short commands now are too.

As root, both sides run without capabilities (util-linux `setpriv --bounding-set=-all`): root's
CAP_SYS_PTRACE would read any process, and a reader must hold every capability its target holds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import configs
from tests.conftest import cordon_argv, subprocess_env, write
from tests.startproc import READY_RE

SECRET = "sk-start-SECRET-0c9d1e"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_DUMPABLE is Linux only")


def no_caps() -> list[str]:
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and util-linux's setpriv is missing")
    return [setpriv, "--bounding-set=-all", "--"]


def read_environ(pid: int) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*no_caps(), "cat", f"/proc/{pid}/environ"], capture_output=True, timeout=30)


def wait_ready(p: subprocess.Popen[bytes]) -> None:
    assert p.stderr is not None
    seen = b""
    while not READY_RE.search(seen.decode("utf-8", "replace")):
        line = p.stderr.readline()
        assert line, seen.decode("utf-8", "replace")
        seen += line


def test_cordon_start_is_not_dumpable(project: Path) -> None:
    write(project / "cordon.toml", configs.render(configs.openai(env="REAL_KEY"), listen=0))
    env = subprocess_env({"REAL_KEY": SECRET})
    code = "import sys; print('up', flush=True); sys.stdin.read()"
    control = subprocess.Popen([*no_caps(), sys.executable, "-c", code], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, env=env)
    try:
        assert control.stdout is not None and control.stdout.readline() == b"up\n"   # past execve
        r = read_environ(control.pid)
        assert SECRET.encode() in r.stdout, "the check sees a dumpable process of the same user"
    finally:
        control.communicate(b"", timeout=30)
    p = subprocess.Popen([*no_caps(), *cordon_argv("start")], cwd=project, env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_ready(p)
        r = read_environ(p.pid)
        assert r.returncode != 0 and SECRET.encode() not in r.stdout, "cordon start's environment was readable"
    finally:
        p.terminate()
        p.communicate(timeout=30)


def wait_not_dumpable(p: subprocess.Popen[bytes], what: str) -> None:
    """Poll until the kernel refuses to show `p`'s environment (it never does for a dumpable process);
    fail if `p` ends first or 30 s pass."""
    deadline = time.monotonic() + 30
    while read_environ(p.pid).returncode == 0:
        assert p.poll() is None and time.monotonic() < deadline, f"{what} stayed dumpable"
        time.sleep(0.05)


def test_short_commands_are_not_dumpable(project: Path) -> None:
    """`cordon secret set` (waiting here for the new value on stdin) becomes not dumpable before it
    reads anything: polled until the kernel refuses, which never happens to a dumpable process."""
    write(project / "cordon.toml", KEYRING_ROUTE)
    p = subprocess.Popen([*no_caps(), *cordon_argv("secret", "set", "openai")], cwd=project,
                         env=subprocess_env({"REAL_KEY": SECRET}), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_not_dumpable(p, "cordon secret set")
    finally:
        p.communicate(b"", timeout=30)


KEYRING_ROUTE = configs.render(configs.openai(keyring=""))


def test_the_leaf_signing_child_is_not_dumpable(project: Path) -> None:
    """`cordon start`'s child that reads the CA key and signs leaves (cordon.app.leafsign), held
    here before it reads its request: not dumpable, and its environment holds no secret."""
    from cordon.app.leafsign import child_argv, child_env

    env = child_env() | {"REAL_KEY": SECRET}   # were a secret there, it could not be read either
    p = subprocess.Popen([*no_caps(), *child_argv()], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        wait_not_dumpable(p, "the signing child")
    finally:
        p.communicate(b"{}", timeout=30)
