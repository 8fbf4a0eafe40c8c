"""Process hardening for every cordon process that holds a secret or a proxy token.

`set_non_dumpable`: prctl(PR_SET_DUMPABLE, 0), so other processes of the same user
(an agent, the commands it starts) can neither ptrace this one, read its memory, nor
open its /proc/<pid>/environ, /proc/<pid>/mem or /proc/<pid>/fd/*; no core dump is
written either. The kernel resets the flag on execve, so children stay debuggable.
"""

from __future__ import annotations

import sys

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def set_non_dumpable() -> bool:
    """True when the flag is set (Linux only; elsewhere a no-op returning False)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False
