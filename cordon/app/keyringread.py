"""The routes' keyring entries read in a forked child, beside the rest of the start-up.

Loading keyring costs about 40 ms of imports (`importlib_metadata`, and through
`jaraco.context` also `urllib.request`, `http.client` and `email`), and the Secret
Service backend as much again with its D-Bus session. `cordon start` and `cordon exec`
fork this child at the top of their preflight, import the proxy's modules (or make the
session's CA) meanwhile, and take its answers when they check the routes' secrets: on two
cores, the keyring's cost leaves the way to ready. The child is a fork, not a new
interpreter: what the parent has imported already is there, and it only loads keyring.

The answers serve that check only (`SecretResolver.keyring_answers`); every later read
(SIGHUP, `cordon secret set`, a value dropped from the cache) reads the keyring in the
process, as before. Where there is no answer (not Linux, a process that already runs
threads, where a fork is not safe; a backend that does not load; a child that died), the
check reads in the process, so the outcome is the same, only later.

The child is not dumpable (`cordon.app.hardening`: as every cordon process); its answers
come back over a socket, not a pipe (a pipe of a running
process can be opened through /proc/<pid>/fd by any process of the user, a socket cannot).

    start(routes, env) -> KeyringRead | None      None: no route reads the keyring
        .answers() -> {(service, account): KeyringAnswer} | None     None: read in-process
        .close()                                  stop the child if nobody asked
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Mapping, Sequence

from cordon.app.hardening import set_non_dumpable
from cordon.core.model import Route
from cordon.store.secrets import KeyringAnswer, read_keyring_entries

Entry = tuple[str, str]


def start(routes: Sequence[Route], env: Mapping[str, str]) -> KeyringRead | None:
    """A child reading every keyring entry of `routes`, forked now; None when there is none
    or a fork is not safe here."""
    entries = list(dict.fromkeys((r.auth.secret.service, r.auth.secret.account or "")
                                 for r in routes if r.auth.secret.source == "keyring"))
    if not entries or not sys.platform.startswith("linux") or threading.active_count() > 1:
        return None
    return KeyringRead(entries, env)


class KeyringRead:
    """One forked child reading `entries` (service, account)."""

    def __init__(self, entries: Sequence[Entry], env: Mapping[str, str]) -> None:
        self.entries = list(entries)
        self._sock: socket.socket | None
        self._pid: int | None
        theirs, self._sock = socket.socketpair()
        try:
            self._pid = os.fork()
        except OSError:
            theirs.close()
            self.close()
            return
        if self._pid == 0:
            _child(theirs, self._sock, self.entries, env)   # never returns
        theirs.close()

    def answers(self) -> dict[Entry, KeyringAnswer] | None:
        """Wait for the child: an answer per entry, or None (read in-process instead). No time
        limit, as for a read in the process: a keyring may be waiting for its unlock."""
        sock, pid = self._sock, self._pid
        if sock is None or pid is None:
            return None
        self._sock = self._pid = None
        try:
            chunks = []
            while chunk := sock.recv(1 << 16):
                chunks.append(chunk)
            _, status = os.waitpid(pid, 0)
        except BaseException:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            raise
        finally:
            sock.close()
        if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            return None
        try:
            got = json.loads(b"".join(chunks))
            answers = {entry: KeyringAnswer(*a) for entry, a in zip(self.entries, got, strict=True)}
        except (ValueError, TypeError):
            return None
        if not all(isinstance(a.value, str | None) and isinstance(a.error, str | None) and isinstance(a.text, str)
                   for a in answers.values()):
            return None
        return answers

    def close(self) -> None:
        """Stop the child if it still runs (a preflight that failed before asking)."""
        sock, pid = self._sock, self._pid
        self._sock = self._pid = None
        if sock is not None:
            sock.close()
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)


def _child(sock: socket.socket, parents: socket.socket, entries: list[Entry], env: Mapping[str, str]) -> None:
    """In the forked child: read, answer over `sock`, and leave without running anything of
    the parent's (no atexit, no buffered output flushed twice)."""
    code = 1
    try:
        with contextlib.suppress(BaseException):   # any failure: exit status 1, the parent reads itself
            parents.close()
            set_non_dumpable()   # as every cordon process is; said again, for a caller that is not
            answers = read_keyring_entries(entries, env)
            sock.sendall(json.dumps([list(a) for a in answers]).encode())
            code = 0
    finally:
        os._exit(code)
