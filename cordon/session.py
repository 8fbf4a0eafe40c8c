"""The files of a `cordon exec` session, and their repair after a crash.

A session is a 0700 directory under `Paths.session_root` (CA-only PEM, merged
bundle) plus a record under `Paths.sessions_dir` whose lock file the session
holds (fcntl.flock) for its whole life. A record whose lock nobody holds
belongs to a dead session: `repair_stale` restores the `.env` files it touched
and removes its directory. The managed `.env` block is reference-counted, so
two sessions in one project never corrupt each other's files. Local files
only: no sockets, never a private key or a real secret on disk.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cordon.atomic import atomic_write
from cordon.dotenvfile import apply_block, has_block, read_block, remove_block
from cordon.errors import CordonError
from cordon.paths import Paths, ensure_private_dir

CA_NAME = "ca.pem"
BUNDLE_NAME = "bundle.pem"


@dataclass(frozen=True)
class SessionRecord:
    """What a session leaves behind for nesting and crash repair (no secrets, no keys)."""

    id: str
    pid: int
    created: float
    dir: str
    port: int | None = None
    route_hosts: tuple[str, ...] = ()
    dotenv: tuple[str, ...] = ()

    def to_json(self) -> str:
        d = {"id": self.id, "pid": self.pid, "created": self.created, "dir": self.dir,
             "port": self.port, "route_hosts": list(self.route_hosts), "dotenv": list(self.dotenv)}
        return json.dumps(d, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> SessionRecord:
        d = json.loads(text)
        return cls(id=str(d["id"]), pid=int(d["pid"]), created=float(d["created"]), dir=str(d["dir"]),
                   port=None if d.get("port") is None else int(d["port"]),
                   route_hosts=tuple(d.get("route_hosts", ())), dotenv=tuple(d.get("dotenv", ())))


def _lock_path(paths: Paths, sid: str) -> Path:
    return paths.sessions_dir / f"{sid}.lock"


def _record_path(paths: Paths, sid: str) -> Path:
    return paths.sessions_dir / f"{sid}.json"


def _write_private(path: Path, data: bytes | str) -> None:
    """Owner-only file, replaced by rename (a reader never sees half of it).

    No fsync: these files only need to outlive the process (SIGKILL keeps the
    page cache), not a power cut, and fsync was a fifth of exec's start-up.
    """
    if isinstance(data, str):
        data = data.encode()
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@dataclass
class Session:
    """A live session: holds its lock until `close()`."""

    paths: Paths
    record: SessionRecord
    _lock_fd: int | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def dir(self) -> Path:
        return Path(self.record.dir)

    @property
    def ca_path(self) -> Path:
        return self.dir / CA_NAME

    @property
    def bundle_path(self) -> Path:
        return self.dir / BUNDLE_NAME

    def update(self, **changes: Any) -> None:
        """Rewrite the record (e.g. once the proxy's port is known)."""
        d = {**self.record.__dict__, **changes}
        self.record = SessionRecord(**d)
        _write_private(_record_path(self.paths, self.id), self.record.to_json())

    def close(self) -> None:
        """Remove the directory and the record, then release the lock (in that order: crash-safe)."""
        shutil.rmtree(self.dir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            _record_path(self.paths, self.id).unlink()
        with contextlib.suppress(FileNotFoundError):
            _lock_path(self.paths, self.id).unlink()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def new_session_id() -> str:
    return f"{int(time.time())}-{os.getpid()}-{os.urandom(4).hex()}"


def create_session(paths: Paths, *, ca_pem: bytes, bundle_pem: bytes,
                   route_hosts: Sequence[str] = (), session_id: str | None = None) -> Session:
    """Lock, record, then the 0700 directory with the CA-only PEM and the merged bundle.

    The record exists before the directory, so a SIGKILL at any point leaves
    something `repair_stale` can find.
    """
    sid = session_id or new_session_id()
    ensure_private_dir(paths.sessions_dir)
    root = ensure_private_dir(paths.session_root)
    if root.stat().st_uid != os.getuid():
        # a shared temp dir: someone else made this name first
        raise CordonError(f"{root} belongs to another user",
                          "set XDG_RUNTIME_DIR to a private directory, or remove that directory")
    old = os.umask(0o077)
    try:
        fd = os.open(_lock_path(paths, sid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    finally:
        os.umask(old)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        record = SessionRecord(id=sid, pid=os.getpid(), created=time.time(), dir=str(root / sid),
                               route_hosts=tuple(route_hosts))
        _write_private(_record_path(paths, sid), record.to_json())
        s = Session(paths, record, fd)
        old = os.umask(0o077)
        try:
            s.dir.mkdir(mode=0o700)
        finally:
            os.umask(old)
        _write_private(s.ca_path, ca_pem)
        _write_private(s.bundle_path, bundle_pem)
        return s
    except BaseException:
        shutil.rmtree(root / sid, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            _record_path(paths, sid).unlink()
        with contextlib.suppress(FileNotFoundError):
            _lock_path(paths, sid).unlink()
        os.close(fd)
        raise


def _held(lock: Path) -> bool:
    """True when some process holds this lock file (a live session)."""
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return True
        raise
    finally:
        os.close(fd)
    return False


def is_alive(paths: Paths, sid: str) -> bool:
    return _held(_lock_path(paths, sid))


def load_record(paths: Paths, sid: str) -> SessionRecord | None:
    if not sid or "/" in sid or sid.startswith("."):
        return None
    try:
        return SessionRecord.from_json(_record_path(paths, sid).read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None


def live_session(paths: Paths, sid: str) -> SessionRecord | None:
    """The record of session `sid` if that session is running, else None."""
    rec = load_record(paths, sid)
    if rec is None or not is_alive(paths, sid):
        return None
    return rec


# --- the managed .env block, shared by every session of a project ----------------------------

def _real(env_path: Path) -> Path:
    """Follow symlinks: a `.env` linked from a dotfiles repo is edited (and restored) in place,
    and the link itself is left alone."""
    return Path(os.path.realpath(env_path))


def _dotenv_key(env_path: Path) -> str:
    return hashlib.sha256(str(env_path.absolute()).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _dotenv_lock(paths: Paths, env_path: Path) -> Iterator[Path]:
    """Serialises every read-modify-write of one .env file (and of its state file)."""
    ensure_private_dir(paths.sessions_dir)
    key = _dotenv_key(env_path)
    old = os.umask(0o077)
    try:
        fd = os.open(paths.sessions_dir / f"dotenv-{key}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    finally:
        os.umask(old)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield paths.sessions_dir / f"dotenv-{key}.json"
    finally:
        os.close(fd)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _decode(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _encode(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def _digest(b: bytes | None) -> str | None:
    return None if b is None else hashlib.sha256(b).hexdigest()


def _load_state(state_path: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(state_path.read_text())
        return state
    except FileNotFoundError:
        return None
    except ValueError:
        return None


def _live_holders(paths: Paths, state: Mapping[str, Any], also_drop: str | None = None) -> list[dict[str, Any]]:
    return [h for h in state.get("holders", []) if h["id"] != also_drop and is_alive(paths, h["id"])]


def _write_env(env_path: Path, data: bytes, state: dict[str, Any]) -> None:
    mode = state.get("mode")
    if env_path.exists():
        atomic_write(env_path, data)            # keeps the user's mode
    else:
        atomic_write(env_path, data, mode=0o600 if mode is None else int(mode))
    state["written"] = _digest(data)


def dotenv_acquire(paths: Paths, session_id: str, env_path: Path, vars: Mapping[str, str]) -> None:
    """Put this session's block into `env_path` (the most recent live session's block wins).

    The first holder saves the file's original bytes (or its absence) in a
    private state file before anything is written, so a crash at any point
    can be undone byte for byte.
    """
    env_path = _real(env_path)
    with _dotenv_lock(paths, env_path) as state_path:
        state = _load_state(state_path)
        if state is not None and not _live_holders(paths, state):
            _restore(paths, env_path, state, state_path)   # a crashed session's leftovers
            state = None
        if state is None:
            original = _read(env_path)
            mode = env_path.stat().st_mode & 0o777 if original is not None else None
            state = {"path": str(env_path), "mode": mode,
                     "original": None if original is None else base64.b64encode(original).decode(),
                     "created_dir": not env_path.parent.exists(), "holders": []}
        state["holders"] = [h for h in state["holders"] if h["id"] != session_id]
        state["holders"].append({"id": session_id, "vars": dict(vars)})
        state.setdefault("written", None)
        _write_private(state_path, json.dumps(state))   # saved before the .env changes
        if state["created_dir"]:
            env_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        current = _read(env_path)
        data = _encode(apply_block(_decode(current or b""), vars))
        _write_env(env_path, data, state)
        _write_private(state_path, json.dumps(state))


def dotenv_release(paths: Paths, session_id: str, env_path: Path) -> None:
    """Drop this session's hold; the last one out restores the file exactly as it was."""
    env_path = _real(env_path)
    with _dotenv_lock(paths, env_path) as state_path:
        state = _load_state(state_path)
        if state is None:
            return
        holders = _live_holders(paths, state, also_drop=session_id)
        if holders:
            state["holders"] = holders
            current = _read(env_path)
            data = _encode(apply_block(_decode(current or b""), holders[-1]["vars"]))
            if data != current:
                _write_env(env_path, data, state)
            _write_private(state_path, json.dumps(state))
            return
        _restore(paths, env_path, state, state_path)


def _restore(paths: Paths, env_path: Path, state: Mapping[str, Any], state_path: Path) -> None:
    original = None if state.get("original") is None else base64.b64decode(state["original"])
    current = _read(env_path)
    if current is None or _digest(current) == state.get("written"):
        # nobody else touched the file: put back exactly what was there
        if original is None:
            with contextlib.suppress(FileNotFoundError):
                env_path.unlink()
        else:
            mode = state.get("mode")
            atomic_write(env_path, original, mode=0o644 if mode is None else int(mode))
    else:
        # edited during the session: keep those edits, put back only the block we changed
        text = _decode(current)
        orig_text = _decode(original) if original is not None else ""
        text = apply_block(text, read_block(orig_text)) if has_block(orig_text) else remove_block(text)
        if original is None and text == "":
            env_path.unlink()
        else:
            atomic_write(env_path, _encode(text))
    if state.get("created_dir"):
        with contextlib.suppress(OSError):
            env_path.parent.rmdir()          # only if empty: Codex may have written there
    with contextlib.suppress(FileNotFoundError):
        state_path.unlink()


# --- crash repair ------------------------------------------------------------------------------

def repair_stale(paths: Paths) -> list[str]:
    """Undo what dead sessions left behind; returns their ids. Cheap when there is nothing."""
    try:
        names = os.listdir(paths.sessions_dir)
    except FileNotFoundError:
        return []
    repaired: list[str] = []
    for name in names:
        if not name.endswith(".json") or name.startswith("dotenv-"):
            continue
        sid = name[:-5]
        lock = _lock_path(paths, sid)
        old = os.umask(0o077)
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        finally:
            os.umask(old)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue                      # alive
            rec = load_record(paths, sid)
            if rec is None:
                with contextlib.suppress(FileNotFoundError):
                    _record_path(paths, sid).unlink()
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
                continue
            for p in rec.dotenv:
                dotenv_release(paths, sid, Path(p))
            d = Path(rec.dir)
            # only ever delete a directory that has the shape cordon gave it
            if d.name == sid and d.parent.name.startswith("cordon"):
                shutil.rmtree(d, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                _record_path(paths, sid).unlink()
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
            repaired.append(sid)
        finally:
            os.close(fd)
    return repaired
