"""Landlock scoping (Linux >= 6.12, ABI 6): the one thing bubblewrap cannot hide.

A D-Bus session bus on an abstract unix socket (`unix:abstract=...`, what
`dbus-launch` and `dbus-run-session` listen on) has no path to mount over, and
abstract names are per network namespace. A Landlock domain with
LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET may connect only to abstract sockets made
inside the same domain, so the child keeps its own and loses every outside one.
Direct syscalls through ctypes (numbers are the same on every architecture).
Never raises: callers ask `abi()` first and get False back from `restrict_thread`.
"""

from __future__ import annotations

import ctypes
import sys

_SYS_CREATE_RULESET = 444
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1 << 0
_PR_SET_NO_NEW_PRIVS = 38
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
SCOPE_ABI = 6                    # the first ABI with `scoped` in the ruleset attribute


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64),
                ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def abi() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is missing or disabled."""
    libc = _libc()
    if libc is None:
        return 0
    try:
        v = int(libc.syscall(_SYS_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION))
    except (AttributeError, OSError):
        return 0
    return max(v, 0)


def restrict_thread(scoped: int = SCOPE_ABSTRACT_UNIX_SOCKET) -> bool:
    """Put the calling thread (and every process it forks from now on) in a scoped domain.

    Sets no_new_privs first, as Landlock requires of an unprivileged caller; both
    are per thread, so a thread made for one spawn leaves the rest of cordon as it was.
    """
    libc = _libc()
    if libc is None:
        return False
    attr = _RulesetAttr(0, 0, scoped)
    try:
        fd = int(libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.sizeof(attr), 0))
        if fd < 0:
            return False
        try:
            if int(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) != 0:
                return False
            return int(libc.syscall(_SYS_RESTRICT_SELF, fd, 0)) == 0
        finally:
            import os
            os.close(fd)
    except (AttributeError, OSError):
        return False
