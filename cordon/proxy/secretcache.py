"""Secrets for a running proxy: resolved in a worker thread, cached, invalidated on change.

The resolver is blocking (keyring, `op`, subprocesses), so a lookup never runs
on the event loop. A change made by another process is noticed this way:

- generation file: `cordon secret set|delete` call `bump_generation(path)`,
  which atomically replaces the file; any change of its (inode, mtime, size)
  drops every cached value, so the next request re-resolves. The path is
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
- in-process: `SecretCache.invalidate(route_name=None)`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import anyio
import anyio.to_thread

from cordon.core.model import Route, Secret
from cordon.proxy.filewatch import FileWatch

Sig = tuple[int, int, int] | None


class Resolver(Protocol):
    def resolve(self, route: Route) -> Secret: ...


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


class SecretCache:
    """Per-route cache in front of a blocking resolver (see module docstring)."""

    def __init__(self, resolver: Resolver, gen_file: Path | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.resolver = resolver
        self.gen_file = gen_file
        self._clock = clock
        self._gen = _sig(gen_file)
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, anyio.Lock] = {}
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
            self.invalidate()
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
        inv = getattr(self.resolver, "invalidate", None)
        if callable(inv):
            inv(route_name)

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

    async def get(self, route: Route) -> Secret:
        """The route's secret; raises whatever the resolver raises (SecretError)."""
        if self.gen_file is not None and not self.watching:
            self._check_generation()
        s = self._fresh(route)
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
            file_path = spec.path if spec.source == "file" else None
            if file_path is not None and self._watching_files:
                self._watch_file(file_path)   # before the read: a change after it is not missed
            file_sig = _sig(file_path)
            inv = getattr(self.resolver, "invalidate", None)
            if callable(inv) and route.name in self._entries:
                inv(route.name)       # stale here: the resolver's own cache is stale too
            secret = await anyio.to_thread.run_sync(self.resolver.resolve, route)
            expires = None
            if spec.source == "command":
                expires = self._clock() + spec.ttl
            self._entries[route.name] = _Entry(secret, expires, file_sig, file_path)
            return secret
