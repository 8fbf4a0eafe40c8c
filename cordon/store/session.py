"""The files of a `cordon exec` session, and their repair after a crash.

A session is a 0700 directory under `Paths.session_root` (CA-only PEM, merged
bundle) plus a record under `Paths.sessions_dir` whose lock file the session
holds (fcntl.flock) for its whole life. A record whose lock nobody holds
belongs to a dead session: `repair_stale` restores the files it touched (a
Codex `.env`, Codex's `config.toml`: their leases are `cordon.store.userfiles`)
and removes its directory. Local files only: no sockets, never a private key or
a real secret on disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cordon.store.atomic import TEMP_MARK, atomic_write
from cordon.store.paths import Paths, ensure_private_dir
from cordon.store.privatedir import open_private_dir, remove_in, remove_private_subdir
from cordon.store.runrecord import pid_alive
from cordon.store.userfiles import LEASE_PREFIXES, lock_held, release

if TYPE_CHECKING:
    pass

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
    files: tuple[str, ...] = ()       # files the session edits (released in this order)

    def to_json(self) -> str:
        d = {"id": self.id, "pid": self.pid, "created": self.created, "dir": self.dir,
             "port": self.port, "route_hosts": list(self.route_hosts), "files": list(self.files)}
        return json.dumps(d, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> SessionRecord:
        d = json.loads(text)
        return cls(id=str(d["id"]), pid=int(d["pid"]), created=float(d["created"]), dir=str(d["dir"]),
                   port=None if d.get("port") is None else int(d["port"]),
                   route_hosts=tuple(d.get("route_hosts", ())), files=tuple(d.get("files", d.get("dotenv", ()))))


def _lock_path(paths: Paths, sid: str) -> Path:
    return paths.sessions_dir / f"{sid}.lock"


def _record_path(paths: Paths, sid: str) -> Path:
    return paths.sessions_dir / f"{sid}.json"


def _write_private(path: Path, data: bytes | str) -> None:
    """Owner-only file, replaced by rename (a reader never sees half of it).

    Not durable: these files only need to outlive the process (SIGKILL keeps the
    page cache), not a power cut, and fsync was a fifth of exec's start-up.
    """
    atomic_write(path, data, mode=0o600, durable=False)


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

    def shared_files(self) -> tuple[tuple[str, bool], ...]:
        """(path, writable) of the record and lock a nested `cordon exec` reads to find this session."""
        return ((str(_record_path(self.paths, self.id)), False), (str(_lock_path(self.paths, self.id)), True))

    def update(self, **changes: Any) -> None:
        """Rewrite the record (e.g. once the proxy's port is known)."""
        d = {**self.record.__dict__, **changes}
        self.record = SessionRecord(**d)
        _write_private(_record_path(self.paths, self.id), self.record.to_json())

    def close(self, *, keep_record: bool = False) -> None:
        """Remove the directory and the record, then release the lock (in that order: crash-safe).

        `keep_record`: a file could not be restored; the next `repair_stale` retries it.
        """
        remove_private_subdir(self.dir.parent, self.dir.name)
        if not keep_record:
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
    root = paths.session_root
    root_fd = open_private_dir(root)   # may be in a shared /tmp: no link followed, owner checked on the fd
    fd = -1
    try:
        fd = _lock_new(_lock_path(paths, sid))
        record = SessionRecord(id=sid, pid=os.getpid(), created=time.time(), dir=str(root / sid),
                               route_hosts=tuple(route_hosts))
        _write_private(_record_path(paths, sid), record.to_json())
        s = Session(paths, record, fd)
        os.mkdir(sid, 0o700, dir_fd=root_fd)
        _write_private(s.ca_path, ca_pem)
        _write_private(s.bundle_path, bundle_pem)
        return s
    except BaseException:
        remove_in(root_fd, sid)
        if fd >= 0:
            with contextlib.suppress(FileNotFoundError):
                _record_path(paths, sid).unlink()
            with contextlib.suppress(FileNotFoundError):
                _lock_path(paths, sid).unlink()
            os.close(fd)
        raise
    finally:
        os.close(root_fd)


def _lock_new(lock: Path) -> int:
    """Create and hold `lock`. repair_stale deletes lock files nobody holds and no record names
    (left by a kill before the record was written); if it deleted ours between open and flock,
    the inode no longer matches the path and we start over."""
    while True:
        old = os.umask(0o077)
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        finally:
            os.umask(old)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _drop_orphans(paths: Paths, names: list[str]) -> None:
    """Lock files without a record that nobody holds, and temporary files of dead writers: what a
    kill during create_session or a private write leaves."""
    present = set(names)
    for name in names:
        # session locks only ("<time>-<pid>-<hex>.lock"): the file-*.lock ones serialise edits and stay
        if name.endswith(".lock") and name[:1].isdigit() and f"{name[:-5]}.json" not in present:
            lock = paths.sessions_dir / name
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if not _record_path(paths, name[:-5]).exists():
                    with contextlib.suppress(FileNotFoundError):
                        lock.unlink()
            except OSError:
                pass                                  # held: a session being created right now
            finally:
                os.close(fd)
        elif name.startswith(".") and TEMP_MARK in name:
            pid = name.rsplit(TEMP_MARK, 1)[1]
            if pid.isdigit() and not pid_alive(int(pid)):
                with contextlib.suppress(OSError):
                    (paths.sessions_dir / name).unlink()


def is_alive(paths: Paths, sid: str) -> bool:
    return lock_held(_lock_path(paths, sid))


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


# --- crash repair ------------------------------------------------------------------------------

def repair_stale(paths: Paths) -> list[str]:
    """Undo what dead sessions left behind; returns their ids. Cheap when there is nothing."""
    try:
        names = os.listdir(paths.sessions_dir)
    except FileNotFoundError:
        return []
    repaired: list[str] = []
    _drop_orphans(paths, names)
    for name in names:
        if not name.endswith(".json") or name.startswith(LEASE_PREFIXES):
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
            for p in rec.files:
                release(paths, sid, Path(p))
            d = Path(rec.dir)
            # only ever delete a directory that has the shape cordon gave it
            if d.name == sid and d.parent.name.startswith("cordon"):
                remove_private_subdir(d.parent, sid)   # through a descriptor: never via a planted link
            with contextlib.suppress(FileNotFoundError):
                _record_path(paths, sid).unlink()
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
            repaired.append(sid)
        finally:
            os.close(fd)
    return repaired
