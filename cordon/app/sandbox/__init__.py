"""Confinement of `cordon exec`'s child (docs/confinement.md).

bubblewrap puts the child in its own mount and pid namespaces: the keyring's
files and bus socket, every secret's files and cordon's own directory are
mounted over, and /proc shows only the sandbox's processes (so not cordon's
environ, memory or descriptors). Landlock scoping cuts the abstract unix
sockets a mount cannot cover. `--egress proxy` adds a network namespace whose
only ways out are relays to the proxy and the listed loopback ports.
Never prints: an unavailable sandbox is a `SandboxUnavailable` with why and how.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cordon.app.sandbox.hidden import Mask, build_mask
from cordon.core.errors import CordonError, UsageError
from cordon.core.model import Config, Route
from cordon.store.paths import Paths

# bwrap's monitor process must outlive a terminal's Ctrl-C and cordon's forwarded signals
# (it would die and orphan the child): it ignores them, and the child gets them back as defaults
SIGNALS = "INT,QUIT,TERM,HUP"
INNER = Path(__file__).with_name("inner.py")
PROC_KNOBS = [a for p in ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus")
              for a in ("--ro-bind-try", p, p)]
OFF_HINT = "or pass --sandbox off (or set [exec] sandbox = \"off\") to run unconfined"


class SandboxUnavailable(CordonError):
    """Confinement cannot be set up here; `message` says why, `hint` how to enable it."""


@dataclass(frozen=True)
class Sandbox:
    bwrap: str
    env_cmd: str
    mask: Mask
    landlock: bool
    egress_ports: tuple[int, ...] | None      # None: the host's network; else relayed loopback ports
    unshare: str | None = None                # root: util-linux unshare, for its user namespace (userns.py)

    def _inner(self, helper_fd: int | None, ports: str) -> list[str]:
        """The steps between bwrap and the command: the egress listeners, root's user namespace."""
        from cordon.app.sandbox import userns
        steps = [] if self.egress_ports is None else [sys.executable, "-I", "-S", str(INNER), str(helper_fd),
                                                      ports, "--"]
        return steps + (userns.prefix(self.unshare) if self.unshare else [])

    def command(self, argv: Sequence[str], expose: Sequence[tuple[str, bool]] = (),
                helper_fd: int | None = None, proxy_port: int | None = None,
                seccomp_fd: int | None = None) -> list[str]:
        """The argv that runs `argv` confined (a list for Popen, no shell)."""
        cmd = [self.env_cmd, f"--ignore-signal={SIGNALS}", self.bwrap,
               *_namespace_args(self.egress_ports is not None, self.unshare is not None)]
        if seccomp_fd is not None:
            cmd += ["--seccomp", str(seccomp_fd)]
        for d in self.mask.dirs:
            cmd += ["--tmpfs", d]
        for f in self.mask.files:
            cmd += ["--ro-bind", "/dev/null", f]
        for path, writable in expose:
            cmd += ["--bind" if writable else "--ro-bind", path, path]
        for d in self.mask.dirs:
            cmd += ["--remount-ro", d]
        cmd.append("--")
        ports = ",".join(str(p) for p in (proxy_port, *(self.egress_ports or ())))
        return [*cmd, *self._inner(helper_fd, ports), self.env_cmd, f"--default-signal={SIGNALS}", "--", *argv]

    def child_env(self, env: Mapping[str, str]) -> dict[str, str]:
        return {k: v for k, v in env.items() if k not in self.mask.drop_env}

    def popen(self, argv: Sequence[str], env: Mapping[str, str], expose: Sequence[tuple[str, bool]] = (),
              helper_fd: int | None = None, proxy_port: int | None = None) -> SandboxedProcess:
        from cordon.app.sandbox import seccomp
        filt = seccomp.filter_fd()
        try:
            cmd = self.command(argv, expose, helper_fd, proxy_port, filt)
            fds = (filt,) if helper_fd is None else (filt, helper_fd)
            proc = _spawn(cmd, self.child_env(env), fds, self.landlock)
        finally:
            os.close(filt)
        if self.unshare is not None:
            from cordon.app.sandbox import userns
            if not userns.map_ids(lambda: _inner_pid(proc.pid), lambda: proc.poll() is None):
                proc.kill()          # never let it run unmapped (it would wait forever anyway)
        return proc


def _namespace_args(net: bool, root: bool) -> list[str]:
    # --bind / / keeps everything the agent works with (project, $HOME, /tmp, caches) writable;
    # a fresh /dev has no disks (root could read them raw). Root keeps its capabilities only
    # until userns.py moves it into a user namespace of its own, where they no longer reach
    # the mounts that hide the secrets; anyone else keeps none.
    # /sys and, for root, the kernel's knobs in /proc read-only: root's writes there (core_pattern,
    # uevent_helper, sysrq, cgroups) would act outside the sandbox. Being locked, the knobs also keep
    # root from mounting a proc of its own, which would give /proc/sys back writable (so, as root, an
    # agent's own sandbox that mounts /proc cannot start). Anyone else cannot write them anyway, and
    # keeps nested sandboxes.
    args = ["--bind", "/", "/", "--ro-bind", "/sys", "/sys", "--dev", "/dev", "--tmpfs", "/dev/shm",
            "--unshare-pid", "--proc", "/proc", *(PROC_KNOBS if root else ()), "--unshare-ipc"]
    if not root:
        args += ["--cap-drop", "ALL"]
    return [*args, "--unshare-net"] if net else args


class SandboxedProcess(subprocess.Popen[bytes]):
    """bwrap's monitor, whose signals go to the confined command inside.

    The monitor ignores INT/QUIT/TERM/HUP; the command is the first child of
    the sandbox's pid 1 (bwrap's reaper), found through /proc. SIGKILL goes to
    that pid 1, which takes the whole pid namespace with it. (Not bwrap's
    --die-with-parent: its parent-death signal follows the thread that spawned
    bwrap, and the Landlock spawn thread ends at once.)
    """

    def send_signal(self, sig: int) -> None:
        if self.returncode is not None:
            return
        if sig == signal.SIGKILL:
            init = _first_child(self.pid)
            try:
                os.kill(init if init is not None else self.pid, sig)
            except ProcessLookupError:
                pass
            return
        deadline = time.monotonic() + 1.0
        while True:
            pid = _inner_pid(self.pid)
            if pid is not None:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
                return
            if self.poll() is not None:
                return
            if time.monotonic() > deadline:     # the command never started: end the sandbox
                self.send_signal(signal.SIGKILL)
                return
            time.sleep(0.005)


def _first_child(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = f.read().split()
    except OSError:
        return None
    return int(kids[0]) if kids else None


def _inner_pid(monitor: int) -> int | None:
    init = _first_child(monitor)
    return None if init is None else _first_child(init)


def _spawn(cmd: list[str], env: Mapping[str, str], pass_fds: Sequence[int], landlock: bool) -> SandboxedProcess:
    """Popen from a thread of its own when Landlock is on: the domain (and no_new_privs) bind the
    calling thread and what it forks, and that thread ends here; cordon's others stay free."""
    if not landlock:
        return SandboxedProcess(cmd, env=dict(env), pass_fds=tuple(pass_fds))
    from cordon.app.sandbox import landlock as ll
    out: list[SandboxedProcess | BaseException] = []

    def run() -> None:
        try:
            if not ll.restrict_thread():
                raise CordonError("cannot start the sandbox: Landlock refused the scope it reported",
                                  OFF_HINT)
            out.append(SandboxedProcess(cmd, env=dict(env), pass_fds=tuple(pass_fds)))
        except BaseException as e:       # handed to the caller's thread
            out.append(e)
    # not anyio's worker pool: a pooled thread would carry the domain into later keyring lookups
    t = threading.Thread(target=run, name="cordon-sandbox-spawn")  # noqa: TID251 (joined at once)
    t.start()
    t.join()
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


def check_format(exe: str) -> None:
    """OSError(ENOEXEC) for a file execve would refuse, as an unconfined run reports it.

    Inside the sandbox, `env` (execvp) would hand such a file to /bin/sh instead.
    Formats registered with binfmt_misc are left to the kernel.
    """
    import errno
    try:
        with open(exe, "rb") as f:
            head = f.read(7)
    except OSError:
        return                                  # execve will say what is wrong
    # ELF: the magic, then a known class, byte order and version (e_ident, System V ABI)
    elf = head[:4] == b"\x7fELF" and len(head) == 7 and head[4] in (1, 2) and head[5] in (1, 2) and head[6] == 1
    if elf or head.startswith(b"#!") or _binfmt_misc():
        return
    raise OSError(errno.ENOEXEC, os.strerror(errno.ENOEXEC), exe)


def _binfmt_misc() -> bool:
    try:
        return any(n not in ("register", "status") for n in os.listdir("/proc/sys/fs/binfmt_misc"))
    except OSError:
        return False


# --- deciding -------------------------------------------------------------------------------------

def prepare(mode: str, egress: str, egress_ports: Sequence[int], config: Config, routes: Sequence[Route],
            env: Mapping[str, str], paths: Paths) -> Sandbox | None:
    """The sandbox for this session, None under `off`; SandboxUnavailable when it cannot be had.

    Checks what needs no process; the probe that runs bwrap is `Probe`'s.
    """
    if mode == "off":
        return None
    if not sys.platform.startswith("linux"):
        raise SandboxUnavailable("confinement is implemented on Linux only",
                                 f"see docs/confinement.md for macOS; {OFF_HINT}")
    search = env.get("PATH", os.defpath)
    bwrap = shutil.which("bwrap", path=search)
    if bwrap is None:
        raise SandboxUnavailable("bubblewrap (bwrap) is not on PATH",
                                 f"install it (Debian/Ubuntu: apt install bubblewrap; Fedora: dnf install "
                                 f"bubblewrap), {OFF_HINT}")
    env_cmd = shutil.which("env", path=search) or "/usr/bin/env"
    mask = build_mask(config, routes, env, paths)
    from cordon.app.sandbox import landlock as ll
    scope = ll.abi() >= ll.SCOPE_ABI
    if mask.abstract_bus and not scope:
        raise SandboxUnavailable("the keyring's D-Bus session bus is an abstract socket, which only Landlock "
                                 "scoping (Linux 6.12+) can hide, and this kernel lacks it",
                                 f"use a bus on a path socket (a systemd user session's), {OFF_HINT}")
    unshare = None
    if os.geteuid() == 0:
        unshare = shutil.which("unshare", path=search)
        if unshare is None:
            raise SandboxUnavailable("util-linux's unshare is not on PATH (root's sandbox needs it)",
                                     f"install util-linux, {OFF_HINT}")
    return Sandbox(bwrap=bwrap, env_cmd=env_cmd, mask=mask, landlock=scope,
                   egress_ports=tuple(egress_ports) if egress == "proxy" else None, unshare=unshare)


class Probe:
    """`true` run in the same namespaces, while the session starts: user namespaces may be off,
    a container may forbid them, AppArmor may deny bwrap, GNU env may lack --ignore-signal;
    bwrap's own message says which. `result` waits for it; `close` ends it if never asked."""

    def __init__(self, box: Sandbox, mode: str, env: Mapping[str, str], say: Any) -> None:
        self.box, self.mode, self.say = box, mode, say
        # the egress hand-over is left out (it needs cordon's end of the socket pair)
        # without the egress hand-over (it needs cordon's end of the socket pair), and root's step
        # without the wait for the id maps (nobody writes them): `unshare` itself is what may fail
        from cordon.app.sandbox import seccomp
        userns = [box.unshare, "--user", "--"] if box.unshare else []
        filt = seccomp.filter_fd()
        cmd = [box.env_cmd, f"--ignore-signal={SIGNALS}", box.bwrap,
               *_namespace_args(box.egress_ports is not None, box.unshare is not None), "--seccomp", str(filt),
               "--", *userns, box.env_cmd, f"--default-signal={SIGNALS}", "true"]
        self._proc: subprocess.Popen[bytes] | None = None
        self._error: SandboxUnavailable | None = None
        try:
            self._proc = subprocess.Popen(cmd, env={"PATH": env.get("PATH", os.defpath)}, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, pass_fds=(filt,))
        except OSError as e:
            self._error = SandboxUnavailable(f"bubblewrap could not run: {e.strerror}", OFF_HINT)
        finally:
            os.close(filt)

    def result(self) -> Sandbox | None:
        """The sandbox; None under `auto` when the probe failed (said once); raises under `required`."""
        if self._proc is not None:
            try:
                _, err = self._proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                self.close()
                err = b"bwrap did not finish within 10 s"
            code, self._proc = self._proc.returncode, None
            if code != 0:
                lines = err.decode(errors="replace").strip().splitlines()
                why = lines[-1] if lines else f"exit status {code}"
                self._error = SandboxUnavailable(
                    f"bubblewrap cannot create the sandbox here ({why})",
                    "allow unprivileged user namespaces (sysctl user.max_user_namespaces, "
                    "kernel.unprivileged_userns_clone; on Ubuntu an AppArmor profile for bwrap), " + OFF_HINT)
        if self._error is None:
            return self.box
        _unavailable(self._error, self.mode, self.say)
        return None

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.communicate()
            self._proc = None


def _unavailable(e: SandboxUnavailable, mode: str, say: Any) -> None:
    if mode == "required":
        raise e
    say(f"cordon: warning: running unconfined: {e.message}; to confine it: {e.hint}")


def choose(mode: str | None, egress: str | None, egress_ports: Sequence[int], config: Config,
           routes: Sequence[Route], env: Mapping[str, str], paths: Paths, say: Any) -> Probe | None:
    """The command line's choice over `[exec]`'s, its probe started; under `auto`, one line on
    stderr when it falls back (here, or from `Probe.result`)."""
    settings = config.exec
    mode = mode or settings.sandbox
    bad = [p for p in egress_ports if not 0 < p < 65536]
    if bad:
        raise UsageError(f"--egress-port {bad[0]} is not a port number", "give a port from 1 to 65535")
    ports = tuple(dict.fromkeys((*settings.egress_ports, *egress_ports)))
    egress = egress or settings.egress
    if egress == "proxy":
        # the limit is the sandbox's network namespace: without one, no limit, so never a silent fallback
        if mode == "off":
            raise UsageError("--egress proxy needs the sandbox, and it is off",
                             'drop --sandbox off (or [exec] sandbox = "off"), or the egress limit')
        mode = "required"
    try:
        box = prepare(mode, egress, ports, config, routes, env, paths)
    except SandboxUnavailable as e:
        _unavailable(e, mode, say)
        return None
    return None if box is None else Probe(box, mode, env, say)


async def start(tg: Any, probe: Probe, expose: Sequence[tuple[str, bool]],
                proxy_port: int) -> Any:
    """The sandbox's spawn function once the probe passed, with what it needs beside the child
    (the egress relay) started in `tg`; None to run unconfined."""
    box = probe.result()
    if box is None:
        return None
    relay = None
    if box.egress_ports is not None:
        from cordon.proxy.relay import EgressRelay
        relay = EgressRelay()
        tg.start_soon(relay.run, (proxy_port, *box.egress_ports))

    def spawn(argv: Sequence[str], exe: str, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        check_format(exe)
        if relay is None:
            return box.popen(argv, env, expose)
        try:
            return box.popen(argv, env, expose, relay.child_fd, proxy_port)
        finally:
            relay.spawned()
    return spawn


def availability(env: Mapping[str, str], paths: Paths) -> SandboxUnavailable | None:
    """Whether `cordon exec` could confine a command here (for `cordon doctor`): the same checks and
    probe, with no routes (so nothing of the user's is touched) and the waiting done now."""
    try:
        box = prepare("required", "open", (), Config(), (), env, paths)
    except SandboxUnavailable as e:
        return e
    assert box is not None
    try:
        Probe(box, "required", env, print).result()
    except SandboxUnavailable as e:
        return e
    return None
