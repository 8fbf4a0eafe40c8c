"""Subscription logins on this machine: the tokens in the secret store, an index, one lock per login.

The real tokens of `cordon login codex|claude` are one JSON blob per login in the
OS keyring (service `cordon`, account `login:<name>`), like every other secret.
`logins.json` beside the config lists the logins cordon holds with what status
may show (plan, expiry, last refresh): never a token. `<name>.lock` serialises
refreshes across every cordon process sharing the login (flock). Every save
replaces the secrets generation file, so each running proxy reloads the login.
Blocking (keyring, flock): callers on an event loop use worker threads.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cordon.core.errors import SecretError
from cordon.core.model import DEFAULT_KEYRING_SERVICE, SecretSpec
from cordon.core.oauth import Login, LoginFormatError
from cordon.store.atomic import atomic_write
from cordon.store.generation import bump_generation, generation_file
from cordon.store.paths import Paths, ensure_private_dir

LOCK_WAIT = 60.0     # seconds a refresh waits for another process's refresh of the same login
READ_RETRY = 2.0     # seconds a login the index lists may read as missing while it is being replaced


def keyring_spec(name: str) -> SecretSpec:
    return SecretSpec(source="keyring", account=f"login:{name}", service=DEFAULT_KEYRING_SERVICE)


class LoginStore:
    """Load, save and lock the logins of one user (`paths.cordon_home`)."""

    def __init__(self, paths: Paths, env: Mapping[str, str]) -> None:
        self.paths = paths
        self.home = paths.cordon_home
        self.env = dict(env)
        self.gen_file = generation_file(self.home)

    @property
    def index_path(self) -> Path:
        return self.paths.logins_index

    def lock_path(self, name: str) -> Path:
        return self.home / "logins" / f"{name}.lock"

    # -- the index (no tokens) --
    def index(self) -> dict[str, dict[str, Any]]:
        try:
            d = json.loads(self.index_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in d.items() if isinstance(v, dict)} if isinstance(d, dict) else {}

    def names(self) -> list[str]:
        return sorted(self.index())

    def _write_index(self, entries: Mapping[str, Mapping[str, Any]]) -> None:
        ensure_private_dir(self.home)
        atomic_write(self.index_path, json.dumps(dict(entries), indent=2, sort_keys=True) + "\n", mode=0o600)

    # -- the tokens --
    def load(self, name: str) -> Login | None:
        """The stored login, or None. A keyring backend may show a value being replaced as missing
        or half-written for a moment (keyrings.alt rewrites its file in place): while the index
        lists the login, such a read is tried again for up to READ_RETRY seconds."""
        from cordon.store.secrets import get_keyring_secret
        deadline = time.monotonic() + READ_RETRY
        while True:
            raw: str | None = None
            try:
                raw = get_keyring_secret(keyring_spec(name), self.env)
                return None if raw is None and name not in self.index() else Login.from_json(raw or "")
            except (LoginFormatError, SecretError) as e:
                if time.monotonic() > deadline:
                    if isinstance(e, SecretError):
                        raise
                    if raw is None:
                        return None
                    raise SecretError(f"login '{name}': {e}", f"run `cordon logout {name}` and "
                                                              f"`cordon login {name}` again") from None
            time.sleep(0.05)

    def save(self, login: Login) -> None:
        """Store the login (keyring first, then the index), then tell running proxies."""
        from cordon.store.secrets import set_keyring_secret
        set_keyring_secret(keyring_spec(login.provider), login.to_json(), self.env)
        entries = self.index()
        entries[login.provider] = {**login.summary(), "updated_at": time.time()}
        self._write_index(entries)
        bump_generation(self.gen_file)

    def delete(self, name: str) -> None:
        from cordon.store.secrets import delete_keyring_secret
        with contextlib.suppress(SecretError):
            delete_keyring_secret(keyring_spec(name), self.env)
        entries = self.index()
        if entries.pop(name, None) is not None:
            self._write_index(entries)
        bump_generation(self.gen_file)

    # -- the refresh lock --
    def try_lock(self, name: str) -> int | None:
        """The lock's file descriptor if it was free, else None (non-blocking; `unlock(fd)` frees it)."""
        path = self.lock_path(name)
        ensure_private_dir(path.parent)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    @staticmethod
    def unlock(fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def locked(self, name: str, wait: float = LOCK_WAIT) -> Iterator[None]:
        """Hold the login's lock (blocking, up to `wait` seconds)."""
        deadline = time.monotonic() + wait
        while True:
            fd = self.try_lock(name)
            if fd is not None:
                break
            if time.monotonic() > deadline:
                raise SecretError(f"login '{name}' is being refreshed by another cordon process",
                                  "try again in a moment")
            time.sleep(0.05)
        try:
            yield
        finally:
            self.unlock(fd)
