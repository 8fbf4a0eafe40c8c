"""Root's user namespace inside the sandbox (docs/confinement.md).

Root keeps its powers over its own files and processes (apt, chown, an agent's
own sandbox), but in a user namespace of its own with every uid and gid mapped
to itself: there its capabilities no longer reach the mount namespace that holds
the masks, and any mount namespace it makes locks them. util-linux `unshare`
makes the namespace inside the sandbox; cordon, outside and still root, writes
its id maps (a process cannot map ranges into its own namespace); a shell
waits for them before it becomes the command.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

FULL_RANGE = "0 0 4294967295\n"
MAP_TIMEOUT = 10.0
# the map is empty until written, and `read` fails on an empty file; gid_map is written first.
# Bounded (some seconds): if cordon dies before it maps the ids, the shell gives up rather than
# spin on, holding the terminal and cordon's pipes (125: the command never ran).
WAIT = ('i=0; until read -r _ _ _ </proc/self/uid_map; do i=$((i+1)); [ "$i" -lt 100000 ] || exit 125; done; '
        'exec "$@"')


def prefix(unshare: str) -> list[str]:
    """The argv that runs the rest of a command line in a new user namespace, once mapped."""
    # --keep-caps: the shell runs before its ids are mapped, and under no_new_privs an exec could
    # not give root its capabilities back; kept as ambient, they pass through to the command.
    # -p: a shell that reads its real uid before the maps are written (unmapped: 65534) and its
    # effective uid after (0) sees a set-uid start and would reset both to 65534 for good (dash,
    # bash); privileged mode keeps the ids it was given
    return [unshare, "--user", "--keep-caps", "--", "/bin/sh", "-p", "-c", WAIT, "cordon-sandbox"]


def map_ids(find: Callable[[], int | None], alive: Callable[[], bool]) -> bool:
    """Map every id to itself for the process `find` names, once it is in a user namespace other
    than ours; False when it ended first or never got there (the caller ends the sandbox)."""
    ours = os.readlink("/proc/self/ns/user")
    deadline = time.monotonic() + MAP_TIMEOUT
    while time.monotonic() < deadline and alive():
        pid = find()
        if pid is not None:
            try:
                if os.readlink(f"/proc/{pid}/ns/user") != ours:
                    for name in ("gid_map", "uid_map"):
                        with open(f"/proc/{pid}/{name}", "w") as f:
                            f.write(FULL_RANGE)
                    return True
            except OSError:
                pass                   # not there yet, or between two execs
        time.sleep(0.0005)
    return False
