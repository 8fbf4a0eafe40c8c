"""The one secret cache: each secret is read once per session, and again only when it changed.

`SecretCache` implements `cordon.core.model.Resolver` in front of a blocking
`SecretReader` (keyring, `op`, subprocesses). Before the event loop runs
(`cordon exec`'s and `cordon start`'s preflight) `resolve()` is called directly;
the proxy then calls `get()`, which reads a stale value in a worker thread so a
lookup never blocks the event loop. A value read at preflight serves the
requests that follow. A change made by another process is noticed this way:

- generation file: `cordon secret set|delete` call `bump_generation(path)`,
  which atomically replaces the file; any change of its (inode, mtime, size)
  drops every cached value but those of `command` and `1password` sources, so
  the next request re-resolves. Those two are kept (`cordon secret set|delete`
  only change keyring entries): any process of the user can replace the file,
  and it must not make cordon run a secret command or `op` again at will. The path is
  `ProxySettings.secrets_gen_file`; callers use `cordon.store.generation.generation_file(paths.cordon_home)`
  (one file for all scopes: keyring entries are shared by every scope).
  Once `watch()` runs inside the event loop, an inotify watch
  (`cordon.proxy.filewatch`) reports the change and a cached value costs no
  system call; where that is not available, each request `stat()`s the file.
- `file` sources: the secret file's own (inode, mtime, size) is watched too,
  by inotify after `watch()` when the path has no symlink in it (a secret
  mount that swaps a symlink elsewhere is only seen by `stat()`), else by a
  `stat()` per request.
- `command` sources: a value lives `spec.ttl` seconds (0: resolved per request).
- in-process: `SecretCache.invalidate(route_name=None)` (SIGHUP of `cordon start`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread

from cordon.core.model import Route, Secret, SecretReader
from cordon.proxy.filewatch import FileWatch

Sig = tuple[int, int, int] | None
RUNS_A_PROGRAM = frozenset({"command", "1password"})   # not re-resolved on a generation bump


def _sig(path: Path | None) -> Sig:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


@dataclass
class _Entry:
    secret: Secret
    expires: float | None     # monotonic deadline, None: until invalidated
    file_sig: Sig
    file_path: Path | None = None   # a `file` source's path
    source: str = ""                # the spec's source ("keyring", "command", ...)


class SecretCache:
    """Per-route cache in front of a blocking reader (see module docstring); a `Resolver`."""

    def __init__(self, reader: SecretReader, gen_file: Path | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.reader = reader
        self.gen_file = gen_file
        self._clock = clock
        self._gen = _sig(gen_file)
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, anyio.Lock] = {}          # requests wait on the loop, not in threads
        self._guard = threading.Lock()
        self._reads: dict[str, threading.Lock] = {}      # one read of a route at a time
        self._watch: FileWatch | None = None
        self._watching_files = False                 # watch() ran: watch `file` sources as they are cached
        self._file_watches: dict[Path, FileWatch] = {}
        self.listeners: list[Callable[[], None]] = []   # told when the generation file changes

    @property
    def watching(self) -> bool:
        """True while changes to the generation file arrive by inotify (no stat per request)."""
        return self._watch is not None and self._watch.active

    def watch(self) -> bool:
        """Start watching the generation file from the running event loop; False: stat per request.

        From now on `file` sources are watched too, each once its value is cached.
        """
        self._watching_files = True
        if self.gen_file is None:
            return False
        if self._watch is None:
            self._watch = FileWatch(self.gen_file, self._check_generation, lambda: None)
        if self._watch.start():
            self._check_generation()   # a change between __init__ and now
        return self._watch.active

    def unwatch(self) -> None:
        self._watching_files = False
        if self._watch is not None:
            self._watch.stop()
        for w in self._file_watches.values():
            w.stop()
        self._file_watches.clear()

    def _watch_file(self, path: Path) -> None:
        if path in self._file_watches:
            return
        try:
            plain = os.path.realpath(path) == os.path.abspath(path)
        except OSError:
            plain = False
        if not plain:
            return   # a symlink may be swapped in a directory no watch covers: stat() per request

        def changed() -> None:
            for name, e in list(self._entries.items()):
                if e.file_path == path:
                    self.invalidate(name)

        w = FileWatch(path, changed, lambda: None)
        if w.start():
            self._file_watches[path] = w

    def _check_generation(self) -> None:
        g = _sig(self.gen_file)
        if g != self._gen:
            self._gen = g
            for name, e in list(self._entries.items()):
                if e.source not in RUNS_A_PROGRAM:
                    del self._entries[name]
            for fn in self.listeners:
                fn()

    def poll(self) -> None:
        """Notice a generation change now when no inotify watch reports it (callers outside `get`)."""
        if self.gen_file is not None and not self.watching:
            self._check_generation()

    def invalidate(self, route_name: str | None = None) -> None:
        if route_name is None:
            self._entries.clear()
        else:
            self._entries.pop(route_name, None)

    def _fresh(self, route: Route) -> Secret | None:
        e = self._entries.get(route.name)
        if e is None:
            return None
        if e.expires is not None and self._clock() >= e.expires:
            return None
        if e.file_path is not None:
            w = self._file_watches.get(e.file_path)
            if (w is None or not w.active) and _sig(e.file_path) != e.file_sig:
                return None
        return e.secret

    def _check(self, route: Route) -> Secret | None:
        if self.gen_file is not None and not self.watching:
            self._check_generation()
        return self._fresh(route)

    def resolve(self, route: Route) -> Secret:
        """The route's secret, read now if not fresh (blocking); raises what the reader raises
        (SecretError). Thread-safe: concurrent callers for one route read it once."""
        s = self._check(route)
        if s is not None:
            return s
        return self._read(route)

    def _read(self, route: Route) -> Secret:
        """Read the source unless another thread just did (blocking; no generation check here,
        so a worker thread never invalidates behind the event loop's back)."""
        with self._guard:
            read_lock = self._reads.setdefault(route.name, threading.Lock())
        with read_lock:
            s = self._fresh(route)   # another thread may have read it meanwhile
            if s is not None:
                return s
            spec = route.auth.secret
            file_path = spec.path if spec.source == "file" else None
            file_sig = _sig(file_path)
            secret = self.reader.resolve(route)
            expires = None
            if spec.source == "command":
                expires = self._clock() + spec.ttl
            self._entries[route.name] = _Entry(secret, expires, file_sig, file_path, spec.source)
            return secret

    async def get(self, route: Route) -> Secret:
        """`resolve` for the event loop: a fresh value at once, else read in a worker thread."""
        s = self._check(route)
        if s is not None:
            return s
        lock = self._locks.get(route.name)
        if lock is None:
            lock = self._locks[route.name] = anyio.Lock()
        async with lock:
            s = self._fresh(route)   # another request may have resolved it meanwhile
            if s is not None:
                return s
            spec = route.auth.secret
            if spec.source == "file" and spec.path is not None and self._watching_files:
                self._watch_file(spec.path)   # on the loop, before the read: a later change is not missed
            return await anyio.to_thread.run_sync(self._read, route)
