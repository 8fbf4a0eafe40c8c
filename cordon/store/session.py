"""The files of a `cordon exec` session, and their repair after a crash.

A session is a 0700 directory under `Paths.session_root` (CA-only PEM, merged
bundle) plus a record under `Paths.sessions_dir` whose lock file the session
holds (fcntl.flock) for its whole life. A record whose lock nobody holds
belongs to a dead session: `repair_stale` restores the files it touched (a
Codex `.env`, Codex's `config.toml`) and removes its directory. Every edit of
such a file is reference-counted under a lock, so two sessions in one project
never corrupt each other's files. Local files only: no sockets, never a
private key or a real secret on disk.
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
from typing import TYPE_CHECKING, Any

from cordon.core.errors import CordonError
from cordon.store.atomic import TEMP_MARK, atomic_write, remove_stale_temps
from cordon.store.dotenvfile import SESSION_BEGIN, apply_block, has_block, read_block, remove_block
from cordon.store.paths import Paths, ensure_private_dir
from cordon.store.runrecord import pid_alive

if TYPE_CHECKING:
    from cordon.store.tomlentries import Key, Recorded

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
        shutil.rmtree(self.dir, ignore_errors=True)
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
    root = ensure_private_dir(paths.session_root)
    if root.stat().st_uid != os.getuid():
        # a shared temp dir: someone else made this name first
        raise CordonError(f"{root} belongs to another user",
                          "set XDG_RUNTIME_DIR to a private directory, or remove that directory")
    fd = _lock_new(_lock_path(paths, sid))
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


# --- files a session edits, shared by every session of a project ------------------------------
#
# Two kinds. "dotenv": cordon's marked block in a Codex `.env` (the file, and its
# directory, may be created). "toml": the proxy/CA entries `cordon setup codex` wrote
# into Codex's `config.toml`, pointed at the session (the file is never created, and
# neither is a table or a key). For each file a private state file saves the original
# bytes before the first change, the sessions holding it (newest last: its values are
# in the file) and a hash of what cordon last wrote; the last holder out restores the
# original byte for byte, or, if someone else edited the file meanwhile, undoes only
# cordon's own change and keeps theirs.

_STATE_PREFIXES = ("file-", "dotenv-")     # dotenv-: state files of earlier versions


def _real(path: Path) -> Path:
    """Follow symlinks: a file linked from a dotfiles repo is edited (and restored) in place,
    and the link itself is left alone."""
    return Path(os.path.realpath(path))


def _file_key(path: Path) -> str:
    return hashlib.sha256(str(path.absolute()).encode()).hexdigest()[:16]


def _state_path(paths: Paths, path: Path) -> Path:
    return paths.sessions_dir / f"file-{_file_key(path)}.json"


@contextlib.contextmanager
def _file_lock(paths: Paths, path: Path) -> Iterator[Path]:
    """Serialises every read-modify-write of one file (and of its state file)."""
    ensure_private_dir(paths.sessions_dir)
    old = os.umask(0o077)
    try:
        fd = os.open(paths.sessions_dir / f"file-{_file_key(path)}.lock",
                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    finally:
        os.umask(old)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield _state_path(paths, path)
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


def _original(state: Mapping[str, Any]) -> bytes | None:
    return None if state.get("original") is None else base64.b64decode(state["original"])


def _render(state: dict[str, Any], current: bytes | None) -> bytes | None:
    """The file with the newest holder's values (None: leave it absent)."""
    newest = state["holders"][-1]
    if state.get("kind", "dotenv") == "toml":
        return _toml_render(state, current)
    return _encode(apply_block(_decode(current or b""), newest["vars"], SESSION_BEGIN))


def _write(path: Path, current: bytes | None, data: bytes | None, state: dict[str, Any], *,
           clean: bool) -> None:
    """Put `data` in place; `written` keeps the hash only while the file is cordon's alone."""
    if data is not None and data != current:
        mode = state.get("mode")
        if path.exists():
            atomic_write(path, data)            # keeps the user's mode
        else:
            atomic_write(path, data, mode=0o600 if mode is None else int(mode))
    # a file someone else edited since cordon's last write is never restored wholesale
    # (their edit would be lost): only cordon's own change is undone then
    state["written"] = _digest(data) if clean else None


def _acquire(paths: Paths, session_id: str, path: Path, kind: str, holder: Mapping[str, Any]) -> bool:
    path = _real(path)
    with _file_lock(paths, path) as state_path:
        state = _load_state(state_path)
        if state is not None and not _live_holders(paths, state):
            _restore(path, state, state_path)        # a crashed session's leftovers
            state = None
        fresh = state is None
        if state is None:
            original = _read(path)
            if original is None and kind != "dotenv":
                return False                         # never create a config.toml
            mode = path.stat().st_mode & 0o777 if original is not None else None
            state = {"kind": kind, "path": str(path), "mode": mode,
                     "original": None if original is None else base64.b64encode(original).decode(),
                     "created_dir": kind == "dotenv" and not path.parent.exists(),
                     "holders": [], "written": None}
        state["holders"] = [h for h in state["holders"] if h["id"] != session_id]
        state["holders"].append({"id": session_id, **holder})
        current = _read(path)
        clean = fresh or _digest(current) == state.get("written")
        data = _render(state, current)
        if fresh and kind != "dotenv" and data == current:
            return False                             # nothing of cordon's in it to change
        _write_private(state_path, json.dumps(state))   # saved before the file changes
        if state["created_dir"]:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write(path, current, data, state, clean=clean)
        _write_private(state_path, json.dumps(state))
        return True


def dotenv_acquire(paths: Paths, session_id: str, env_path: Path, vars: Mapping[str, str]) -> None:
    """Put this session's block into `env_path` (the most recent live session's block wins).

    The first holder saves the file's original bytes (or its absence) in a
    private state file before anything is written, so a crash at any point
    can be undone byte for byte.
    """
    _acquire(paths, session_id, env_path, "dotenv", {"vars": dict(vars)})


def toml_acquire(paths: Paths, session_id: str, path: Path, entries: Mapping[Key, tuple[str, str]]) -> bool:
    """Point existing entries of a TOML file at this session (the newest live session's win).

    `entries` maps a dotted key to (expected, new): the key is set to `new` only if
    it holds `expected` (what `cordon setup` wrote) or a value a session put there;
    a key the user changed is theirs. Never creates the file, a table or a key.
    False (and nothing held) when the first holder finds nothing to change.
    """
    return _acquire(paths, session_id, path, "toml",
                    {"entries": [[list(k), expected, new] for k, (expected, new) in entries.items()]})


def release(paths: Paths, session_id: str, path: Path) -> None:
    """Drop this session's hold; the last one out restores the file exactly as it was."""
    path = _real(path)
    with _file_lock(paths, path) as state_path:
        state = _load_state(state_path)
        if state is None:
            return
        holders = _live_holders(paths, state, also_drop=session_id)
        if holders:
            state["holders"] = holders
            current = _read(path)
            clean = _digest(current) == state.get("written")
            data = _render(state, current)
            _write_private(state_path, json.dumps(state))
            _write(path, current, data, state, clean=clean)
            _write_private(state_path, json.dumps(state))
            return
        _restore(path, state, state_path)


dotenv_release = release


def holders_of(paths: Paths, path: Path) -> list[str]:
    """Ids of the live sessions holding `path` (a change to it now would be undone by them)."""
    state = _load_state(_state_path(paths, _real(path)))
    return [] if state is None else [h["id"] for h in _live_holders(paths, state)]


def _restore(path: Path, state: Mapping[str, Any], state_path: Path) -> None:
    original = _original(state)
    current = _read(path)
    toml = state.get("kind", "dotenv") == "toml"
    remove_stale_temps(path)                  # a write cut short by a kill
    if current == original:
        pass                                  # already as it was (cordon's write never happened: a full disk)
    elif current is None and toml:
        pass                                  # deleted meanwhile: exec never creates a config.toml
    elif current is None or _digest(current) == state.get("written"):
        # nobody else touched the file: put back exactly what was there
        if original is None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        else:
            mode = state.get("mode")
            atomic_write(path, original, mode=0o644 if mode is None else int(mode))
    elif toml:
        # edited during the session: keep those edits, put back only the entries sessions changed
        text = _decode(current)
        new = _toml_undo(state, text)
        if new != text:
            atomic_write(path, _encode(new))
    else:
        text = _decode(current)
        orig_text = _decode(original) if original is not None else ""
        text = apply_block(text, read_block(orig_text)) if has_block(orig_text) else remove_block(text)
        if original is None and text == "":
            path.unlink()
        else:
            atomic_write(path, _encode(text))
    if state.get("created_dir"):
        with contextlib.suppress(OSError):
            path.parent.rmdir()          # only if empty: Codex may have written there
    with contextlib.suppress(FileNotFoundError):
        state_path.unlink()


# --- the "toml" kind (tomlkit is imported only when a session edits a config.toml) ----------

def _swapped(state: Mapping[str, Any]) -> dict[Key, Recorded]:
    from cordon.store.tomlentries import Recorded
    return {tuple(k): Recorded(v, p) for k, v, p in state.get("swapped", [])}


def _toml_render(state: dict[str, Any], current: bytes | None) -> bytes | None:
    from cordon.store.tomlentries import Recorded, TomlEntries, value_at
    if current is None:
        return None
    text = _decode(current)
    editor = TomlEntries(state["path"])
    try:
        doc = editor.parse(text, state["path"])
    except CordonError:
        return current                        # not TOML (now): left alone, undone at the end if it can be
    swapped = _swapped(state)
    ours = {(tuple(k), new) for h in state["holders"] for k, _, new in h["entries"]}
    desired: dict[Key, str] = {}
    now: dict[Key, Recorded] = {}
    for k, expected, new in state["holders"][-1]["entries"]:
        key: Key = tuple(k)
        cur = value_at(doc, key)
        rec = swapped.get(key)
        if cur is None or not (cur == expected or (key, cur) in ours or (rec and cur == rec.value)):
            continue                          # absent, or the user's value: not ours to change
        desired[key] = new
        now[key] = Recorded(new, rec.prev if rec is not None else expected)
    drop = {k: r for k, r in swapped.items() if k not in desired}
    applied = editor.apply(text, desired, drop, [])
    state["swapped"] = [[list(k), r.value, r.prev] for k, r in now.items()]
    return current if applied.text is None else _encode(applied.text)


def _toml_undo(state: Mapping[str, Any], text: str) -> str:
    from cordon.store.tomlentries import TomlEntries
    try:
        new = TomlEntries(state["path"]).remove(text, _swapped(state), [], file_created=False)
    except CordonError:
        return text                           # no longer TOML: cordon cannot tell its entries apart
    return text if new is None else new


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
        if not name.endswith(".json") or name.startswith(_STATE_PREFIXES):
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
                shutil.rmtree(d, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                _record_path(paths, sid).unlink()
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
            repaired.append(sid)
        finally:
            os.close(fd)
    return repaired
