"""`tokens.toml`: proxy credentials per scope (default token plus per-client tokens).

Local files only (no sockets). The file is 0600 from its first byte, its
directory 0700; writes are atomic and serialised by a lock file, so two
`cordon token` commands cannot lose each other's change. Token values are
never returned by `list()` and never appear in an error message.

Interface:
    TokenStore(path).load() -> dict[name, token]; .ensure(name) -> token (creates 0600 file)
    .rotate(name) -> token; .revoke(name); .list() -> [(name, created)]
    check(tokens, header_value) -> client name | None   (constant time)
    TokenWatcher(path).check(header_value) -> client name | None
        (re-reads the file when it changes, so `token rotate|revoke` reach a
        running proxy; keeps the last good set if the file vanishes or breaks;
        .generation counts the changes, .tokens() is the current name -> token)

File format (TOML, version 1):
    version = 1
    [tokens.default]
    token = "<43 urlsafe base64 chars: 256 random bits>"
    created = 2025-01-01 00:00:00+00:00
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import fcntl
import hmac
import os
import re
import secrets
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from cordon.core.errors import ConfigError, CordonError, UsageError
from cordon.store.atomic import atomic_write
from cordon.store.paths import ensure_private_dir

TOKENS_FILE = "tokens.toml"
DEFAULT_TOKEN = "default"
FORMAT_VERSION = 1
TOKEN_BYTES = 32                     # 256 bits (SECURITY.md)
# names become TOML keys, log fields and URL user names: keep them plain
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_HEADER = (
    "# cordon proxy tokens for this scope. Keep this file private (0600): any local\n"
    "# process holding a token can use the proxy. Manage with `cordon token list|rotate|revoke`.\n\n"
)


def new_token() -> str:
    """A fresh random token: 256 bits, URL-safe (fits in a proxy URL's user-info unescaped)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def validate_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise UsageError(f"'{name}' is not a valid token name",
                         "use lower-case letters, digits, '.', '_' and '-' (e.g. codex, claude-code)")
    return name


@dataclass(frozen=True)
class TokenInfo:
    """What `token list` may show: the name and creation time, never the value."""

    name: str
    created: dt.datetime | None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _parse(text: str, path: Path) -> dict[str, tuple[str, dt.datetime | None]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}",
                          "fix the file, or delete it and run `cordon token rotate --all`") from None
    table = data.get("tokens", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: 'tokens' must be a table", "write each token as [tokens.NAME]")
    out: dict[str, tuple[str, dt.datetime | None]] = {}
    for name, entry in table.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("token"), str) or not entry["token"]:
            # the message names the entry, never its content
            raise ConfigError(f"{path}: token '{name}' has no token value",
                              f"run `cordon token rotate {name}` to give it a new one")
        created = entry.get("created")
        if isinstance(created, dt.datetime) and created.tzinfo is None:
            created = created.replace(tzinfo=dt.UTC)
        out[str(name)] = (entry["token"], created if isinstance(created, dt.datetime) else None)
    return out


class TokenStore:
    """One scope's `tokens.toml`. Every method reads the file afresh (it is tiny)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def for_state_dir(cls, state_dir: Path) -> TokenStore:
        return cls(Path(state_dir) / TOKENS_FILE)

    # -- reading ---------------------------------------------------------------

    def _read(self) -> dict[str, tuple[str, dt.datetime | None]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{self.path}: cannot read: {e}",
                              "check the file's owner and permissions (it should be 0600, yours)") from None
        return _parse(text, self.path)

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> dict[str, str]:
        """name -> token value (for the proxy and `cordon env`; never print these)."""
        return {name: tok for name, (tok, _) in self._read().items()}

    def get(self, name: str) -> str | None:
        return self.load().get(name)

    def list(self) -> list[TokenInfo]:
        """Names and creation times, `default` first, then by name."""
        entries = self._read()
        names = sorted(entries, key=lambda n: (n != DEFAULT_TOKEN, n))
        return [TokenInfo(n, entries[n][1]) for n in names]

    # -- writing ---------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, tuple[str, dt.datetime | None]]]:
        """Read-modify-write under an exclusive lock; the yielded dict is written back."""
        ensure_private_dir(self.path.parent)
        lock = self.path.parent / f".{self.path.name}.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            entries = self._read()
            before = dict(entries)
            yield entries
            if entries != before:
                self._write(entries)
        finally:
            os.close(fd)   # closing releases the lock

    def _write(self, entries: Mapping[str, tuple[str, dt.datetime | None]]) -> None:
        table: dict[str, Any] = {}
        for name in sorted(entries, key=lambda n: (n != DEFAULT_TOKEN, n)):
            tok, created = entries[name]
            item: dict[str, Any] = {"token": tok}
            if created is not None:
                item["created"] = created
            table[name] = item
        text = _HEADER + tomli_w.dumps({"version": FORMAT_VERSION, "tokens": table})
        atomic_write(self.path, text, mode=0o600)

    def ensure(self, name: str = DEFAULT_TOKEN) -> str:
        """The token for `name`, created (with the file, 0600) if it does not exist yet."""
        validate_name(name)
        existing = self.get(name)
        if existing is not None:
            return existing
        with self._locked() as entries:
            if name not in entries:
                entries[name] = (new_token(), _now())
            return entries[name][0]

    def ensure_default(self) -> str:
        return self.ensure(DEFAULT_TOKEN)

    def rotate(self, name: str = DEFAULT_TOKEN, token: str | None = None) -> str:
        """Give `name` a new token (the old one stops working). `default` is created if missing.

        `token` lets a caller pick the new value first (to rewrite a client's
        files with it before the old value stops working); default: a fresh one.
        """
        validate_name(name)
        with self._locked() as entries:
            if name not in entries and name != DEFAULT_TOKEN:
                raise CordonError(f"there is no token named '{name}' in {self.path}",
                                 _known_hint(entries))
            entries[name] = (token or new_token(), _now())
            return entries[name][0]

    def revoke(self, name: str) -> None:
        """Remove a client token. The default token can be rotated but not revoked."""
        validate_name(name)
        if name == DEFAULT_TOKEN:
            raise CordonError("the default token cannot be revoked",
                             "run `cordon token rotate` to replace it with a new value")
        with self._locked() as entries:
            if name not in entries:
                raise CordonError(f"there is no token named '{name}' in {self.path}", _known_hint(entries))
            del entries[name]


def _known_hint(entries: Mapping[str, object]) -> str:
    if not entries:
        return "this scope has no tokens yet; `cordon start` creates the default one"
    return "known tokens: " + ", ".join(sorted(entries)) + " (see `cordon token list`)"


# -- checking ------------------------------------------------------------------

def token_from_header(header_value: str | bytes | None) -> str | None:
    """The token carried by a Proxy-Authorization value (`Basic base64(user:token)`; any user
    name), or None if it is missing or malformed. `Bearer <token>` is accepted as well."""
    if header_value is None:
        return None
    if isinstance(header_value, bytes):
        try:
            header_value = header_value.decode("latin-1")
        except UnicodeDecodeError:   # pragma: no cover - latin-1 decodes anything
            return None
    scheme, _, param = header_value.strip().partition(" ")
    param = param.strip()
    if not param:
        return None
    if scheme.lower() == "bearer":
        return param
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(param, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    _user, sep, token = raw.partition(":")
    return token if sep and token else None


def check_token(tokens: Mapping[str, str], token: str | None) -> str | None:
    """Name of the client whose token equals `token`, else None.

    Compares against every token with `hmac.compare_digest` and never stops
    early, so the time taken tells nothing about which prefix matched.
    """
    if not token:
        return None
    given = token.encode("utf-8", "surrogateescape")
    found: str | None = None
    for name, value in tokens.items():
        if hmac.compare_digest(given, value.encode("utf-8")) and found is None:
            found = name
    return found


def check(tokens: Mapping[str, str], header_value: str | bytes | None) -> str | None:
    """Client name for a Proxy-Authorization header value, or None (missing/malformed/wrong)."""
    return check_token(tokens, token_from_header(header_value))


class TokenWatcher:
    """A running proxy's view of `tokens.toml`: re-read when the file changes.

    One `os.stat` per `reload` (the running proxy calls it only when inotify
    reports a change, or per check where inotify is unavailable: CONNECT is
    checked once per connection, plain HTTP once per request). If the file vanishes or cannot be parsed the
    last good set stays in force: deleting the file never opens the proxy.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._sig: tuple[int, int, int] | None = None
        self._tokens: dict[str, str] = {}
        self.generation = 0          # bumped whenever a changed file was loaded
        self.reload()

    def reload(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        sig = (st.st_ino, st.st_mtime_ns, st.st_size)
        if sig == self._sig:
            return
        try:
            tokens = TokenStore(self.path).load()
        except ConfigError:
            return  # keep the last good set; `cordon doctor` reports the broken file
        self._sig = sig
        if tokens != self._tokens:
            self._tokens = tokens
            self.generation += 1

    def tokens(self) -> dict[str, str]:
        self.reload()
        return dict(self._tokens)

    def values(self) -> list[str]:
        """Token values (for the log redaction filter)."""
        return list(self._tokens.values())

    def check(self, header_value: str | bytes | None) -> str | None:
        self.reload()
        return check(self._tokens, header_value)
