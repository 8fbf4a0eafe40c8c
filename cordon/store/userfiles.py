"""The user files cordon changes: one record per file, and its exact restore.

cordon edits files that belong to the user or to an agent (Codex's `.env` and
`config.toml`, Claude Code's settings). Two commands do, with the same record:

- `cordon setup` / `cordon integration disable` (until undone): a `Record` per
  integration in the scope's state directory, plus a `.cordon.bak` backup next
  to each file it changed;
- `cordon exec` (for a session's life): a lease per file under
  `Paths.sessions_dir`, held by every live session that edits the file, so two
  sessions in one project never corrupt each other's file; the last one out
  restores it, and `cordon.store.session.repair_stale` does that for a session
  that was killed.

For every file a `FileRecord` keeps whether it existed, its original bytes and
mode, the hash of what cordon last wrote (and of what that write replaced), the
entries cordon set with the values they replaced, and the directories it
created. The record is saved before the file changes (write-ahead), so a kill at
any point leaves one that still holds the original. Restoring puts the original
back byte for byte while the file is as cordon left it; once someone else has
edited it, only cordon's own entries come out and their edit stays. Files are
written atomically and through symlinks (a dotfiles repo's file is edited in
place, the link kept). Records hold copies of user files: 0600 in 0700
directories. tomlkit is imported only when a TOML file is edited.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cordon.core.errors import CordonError
from cordon.store.atomic import atomic_write, backup_once, remove_stale_temps
from cordon.store.dotenvfile import SESSION_BEGIN, apply_block, has_block, read_block, remove_block
from cordon.store.edits import CreateOnly, Editor, Key, Recorded
from cordon.store.paths import Paths, ensure_private_dir

# -- one file: its record, and the steps every user of it takes ----------------------------------


def sha256(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def real_path(path: Path) -> Path:
    """Follow symlinks: a file linked from a dotfiles repo is edited (and restored) in place,
    and the link itself is left alone."""
    return Path(os.path.realpath(path))


def read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CordonError(f"cannot read {path}: {e.strerror}", "check the file's permissions") from None


def decode_text(path: Path, data: bytes | None) -> str | None:
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CordonError(f"{path} is not UTF-8 text", "fix or move the file, then run the command again") from None


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


@dataclass
class FileRecord:
    """What cordon needs to put one file back (see the module docstring)."""

    path: Path
    kind: str
    existed: bool
    original: bytes | None          # the bytes before cordon's first change; None once not restorable
    restorable: bool = True
    written: str | None = None      # sha256 of what cordon last wrote (None: not cordon's alone)
    replaced: str | None = None     # sha256 of what that write replaced, while it was cordon's too
    mode: int | None = None         # the original's mode
    backup: Path | None = None
    backup_created: bool = False
    entries: dict[Key, Recorded] = field(default_factory=dict)
    created: list[Key] = field(default_factory=list)     # containers (tables, objects) cordon added
    dirs_created: list[Path] = field(default_factory=list)

    @classmethod
    def capture(cls, path: Path, kind: str) -> FileRecord:
        """The file as it is before cordon's first change (or its absence)."""
        raw = read_bytes(path)
        mode = path.stat().st_mode & 0o777 if raw is not None else None
        return cls(path=path, kind=kind, existed=raw is not None, original=raw, mode=mode)

    def as_cordon_left_it(self, current: bytes | None) -> bool:
        """True when nobody but cordon changed the file (a kill mid-write included)."""
        if not self.restorable:
            return False
        return current == self.original or (sha256(current) is not None and
                                            sha256(current) in (self.written, self.replaced))

    def write(self, data: bytes, persist: Callable[[], None], *, clean: bool = True,
              new_mode: int = 0o600) -> None:
        """Write-ahead: save the record (with this write's hash), make missing directories,
        then replace the file atomically (an existing file keeps its mode).

        `clean` False: the file was edited by someone else, so it stays not cordon's alone.
        """
        current_hash = sha256(read_bytes(self.path))
        self.replaced = current_hash if clean and current_hash == self.written else None
        self.written = sha256(data) if clean else None
        missing = missing_dirs(self.path.parent)
        self.dirs_created += [d for d in missing if d not in self.dirs_created]   # noted before made
        persist()
        for d in missing:
            with contextlib.suppress(FileExistsError):
                d.mkdir(mode=0o700)
        target = real_path(self.path)
        atomic_write(target, data, mode=None if target.exists() else new_mode)

    def put_back(self, current: bytes | None) -> None:
        """The original bytes and mode, or no file if there was none; rmdir what cordon created."""
        remove_stale_temps(real_path(self.path))     # a write cut short by a kill
        if self.original is None:
            if current is not None:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
        elif current != self.original:
            atomic_write(real_path(self.path), self.original, mode=self.mode)
        remove_dirs(self.dirs_created)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "kind": self.kind, "existed": self.existed,
            "original": _b64(self.original), "restorable": self.restorable,
            "written_sha256": self.written, "replaced_sha256": self.replaced, "mode": self.mode,
            "backup": None if self.backup is None else str(self.backup),
            "backup_created": self.backup_created,
            "entries": [{"key": list(k), "value": r.value, "prev": r.prev} for k, r in self.entries.items()],
            "created": [list(c) for c in self.created],
            "dirs_created": [str(d) for d in self.dirs_created],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> FileRecord:
        original = _unb64(d.get("original"))
        path = Path(d["path"])
        entries = {tuple(e["key"]): Recorded(e["value"], e.get("prev")) for e in d.get("entries", [])}
        # a session's file state written by earlier versions: "written", "swapped", "created_dir"
        entries.update({tuple(k): Recorded(v, p) for k, v, p in d.get("swapped", [])})
        dirs = [Path(p) for p in d.get("dirs_created", [])] or ([path.parent] if d.get("created_dir") else [])
        return cls(
            path=path, kind=str(d.get("kind", "dotenv")), existed=bool(d.get("existed", original is not None)),
            original=original, restorable=bool(d.get("restorable", True)),
            written=d.get("written_sha256", d.get("written")), replaced=d.get("replaced_sha256"),
            mode=None if d.get("mode") is None else int(d["mode"]),
            backup=Path(d["backup"]) if d.get("backup") else None,
            backup_created=bool(d.get("backup_created")), entries=entries,
            created=[tuple(c) for c in d.get("created", [])], dirs_created=dirs,
        )


def missing_dirs(d: Path) -> list[Path]:
    """`d` and its parents that do not exist yet, outermost first."""
    missing: list[Path] = []
    while not d.exists():
        missing.append(d)
        d = d.parent
    return missing[::-1]


def remove_dirs(dirs: list[Path]) -> None:
    """Remove the directories cordon created, deepest first, each only if empty (the agent may
    have put its own files there)."""
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            os.rmdir(d)


# -- `cordon setup`: a record per integration in the scope's state dir ----------------------------

RECORD_VERSION = 1


def backup_path(path: Path) -> Path:
    """`.env` -> `.env.cordon.bak`, `settings.local.json` -> `settings.local.json.cordon.bak`."""
    return path.with_name(path.name + ".cordon.bak")


@dataclass
class Record:
    integration: str
    scope: str
    files: dict[Path, FileRecord] = field(default_factory=dict)
    dirs_created: list[Path] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"version": RECORD_VERSION, "integration": self.integration, "scope": self.scope,
                "files": [f.to_json() for f in self.files.values()],
                "dirs_created": [str(d) for d in self.dirs_created]}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Record:
        files = [FileRecord.from_json(f) for f in d.get("files", [])]
        return cls(integration=str(d["integration"]), scope=str(d.get("scope", "")),
                   files={f.path: f for f in files},
                   dirs_created=[Path(p) for p in d.get("dirs_created", [])])


def record_path(state_dir: Path, integration: str) -> Path:
    return state_dir / "integrations" / f"{integration}.json"


def load_record(state_dir: Path, integration: str) -> Record | None:
    path = record_path(state_dir, integration)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise CordonError(f"cannot read cordon's record of the {integration} setup ({path}): {e}",
                          f"delete {path} and undo the setup by hand (the .cordon.bak files hold "
                          "the originals)") from None
    if data.get("version") != RECORD_VERSION:
        raise CordonError(f"{path} was written by another version of cordon",
                          "use that version to disable the integration, or delete the file")
    return Record.from_json(data)


def save_record(state_dir: Path, record: Record) -> None:
    path = record_path(state_dir, record.integration)
    text = json.dumps(record.to_json(), indent=2) + "\n"
    with contextlib.suppress(FileNotFoundError):
        if path.read_text(encoding="utf-8") == text:
            return
    ensure_private_dir(path.parent)
    atomic_write(path, text, mode=0o600)


def delete_record(state_dir: Path, integration: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        record_path(state_dir, integration).unlink()


@dataclass(frozen=True)
class DesiredFile:
    """One file an integration wants: its editor and the entries cordon owns in it."""

    path: Path
    editor: Editor
    desired: Mapping[Key, str]
    new_mode: int = 0o600          # mode of a file cordon creates (they carry the proxy token)


@dataclass(frozen=True)
class Change:
    path: Path
    action: str                     # created | updated | unchanged | restored | cleaned | removed | kept
    backup: Path | None = None


def apply_target(target: DesiredFile, record: Record, persist: Callable[[], None] | None = None) -> Change:
    """Bring one file to the wanted state, backing it up first and noting what changed.

    `persist` saves the record; it is called before the file changes (write-ahead), so a
    kill at any point leaves a record that still holds the file's original bytes.
    """
    raw = read_bytes(target.path)
    text = decode_text(target.path, raw)
    rec = record.files.get(target.path)
    if rec is not None and not rec.as_cordon_left_it(raw):
        # something else changed the file since cordon wrote it: an exact restore would lose that
        rec.restorable, rec.original = False, None
    drop = {} if rec is None else {k: r for k, r in rec.entries.items() if k not in target.desired}
    result = target.editor.apply(text, target.desired, drop, [] if rec is None else rec.created)
    new = None if result.text is None else result.text.encode("utf-8")
    if rec is None:
        if isinstance(target.editor, CreateOnly) and raw is not None:
            return Change(target.path, "kept")     # not ours, and never will be
        rec = FileRecord.capture(target.path, target.editor.kind)
        rec.written = sha256(raw)
        record.files[target.path] = rec
    entries = {k: Recorded(v, rec.entries[k].prev if k in rec.entries else result.prev.get(k))
               for k, v in target.desired.items()}
    rec.entries = entries
    rec.created = sorted({*[c for c in rec.created if c], *result.created})
    if new == raw:
        return Change(target.path, "unchanged")
    backup = None
    if raw is not None:
        bak = backup_path(target.path)
        if backup_once(target.path, bak):
            rec.backup, rec.backup_created = bak, True
            backup = bak
        elif rec.backup is None:
            rec.backup = bak
    if new is None:
        rec.written = None
        if persist:
            persist()
        target.path.unlink()
        return Change(target.path, "removed")
    rec.write(new, persist or (lambda: None), new_mode=target.new_mode)
    return Change(target.path, "created" if raw is None else "updated", backup)


def undo_file(rec: FileRecord, editor: Editor) -> Change:
    """Restore one file: byte-identical if untouched since cordon wrote it, else cordon's entries only."""
    raw = read_bytes(rec.path)
    if rec.as_cordon_left_it(raw):
        rec.put_back(raw)
        _drop_backup(rec, rec.original if rec.existed else None)
        return Change(rec.path, "restored" if rec.existed and rec.original is not None else "removed")
    text = decode_text(rec.path, raw)
    new = editor.remove(text, rec.entries, rec.created, file_created=not rec.existed)
    if new is None:
        if raw is not None:
            rec.path.unlink()
            return Change(rec.path, "removed")
        return Change(rec.path, "kept")
    data = new.encode("utf-8")
    if data != raw:
        atomic_write(real_path(rec.path), data)
        return Change(rec.path, "cleaned", rec.backup if rec.backup and rec.backup.exists() else None)
    return Change(rec.path, "kept", rec.backup if rec.backup and rec.backup.exists() else None)


def _drop_backup(rec: FileRecord, original: bytes | None) -> None:
    """The backup cordon made is redundant once the original is back in place."""
    if rec.backup is None or not rec.backup_created:
        return
    data = read_bytes(rec.backup)
    if data is not None and (original is None or data == original):
        rec.backup.unlink()


def remove_empty_dirs(record: Record) -> None:
    """The directories the setup created (records of earlier versions keep them at the top)."""
    remove_dirs([*record.dirs_created, *(d for f in record.files.values() for d in f.dirs_created)])


# -- `cordon exec`: a lease per file, shared by every live session that edits it ------------------
#
# Two kinds. "dotenv": the session's marked block in a Codex `.env` (the file, and
# its directory, may be created). "toml": the proxy/CA entries `cordon setup codex`
# wrote into Codex's `config.toml`, pointed at the session (the file is never
# created, and neither is a table or a key). The lease is the file's FileRecord
# plus its holders (newest last: its values are in the file).

LEASE_PREFIX = "file-"
LEASE_PREFIXES = (LEASE_PREFIX, "dotenv-")     # dotenv-: leases of earlier versions


def lock_held(lock: Path) -> bool:
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


def session_alive(paths: Paths, sid: str) -> bool:
    return lock_held(paths.sessions_dir / f"{sid}.lock")


@dataclass
class _Lease:
    file: FileRecord
    holders: list[dict[str, Any]]

    def to_json(self) -> str:
        return json.dumps({**self.file.to_json(), "holders": self.holders})

    @classmethod
    def from_json(cls, text: str) -> _Lease:
        d = json.loads(text)
        return cls(FileRecord.from_json(d), list(d.get("holders", [])))


def _file_key(path: Path) -> str:
    return hashlib.sha256(str(path.absolute()).encode()).hexdigest()[:16]


def _lease_path(paths: Paths, path: Path) -> Path:
    return paths.sessions_dir / f"{LEASE_PREFIX}{_file_key(path)}.json"


def _save(lease_path: Path, lease: _Lease) -> None:
    # not durable: a lease only has to outlive the process (see store/session.py)
    atomic_write(lease_path, lease.to_json(), mode=0o600, durable=False)


@contextlib.contextmanager
def _file_lock(paths: Paths, path: Path) -> Iterator[Path]:
    """Serialises every read-modify-write of one file (and of its lease)."""
    ensure_private_dir(paths.sessions_dir)
    old = os.umask(0o077)
    try:
        fd = os.open(paths.sessions_dir / f"{LEASE_PREFIX}{_file_key(path)}.lock",
                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    finally:
        os.umask(old)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield _lease_path(paths, path)
    finally:
        os.close(fd)


def _load(lease_path: Path) -> _Lease | None:
    try:
        return _Lease.from_json(lease_path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        return None


def _live_holders(paths: Paths, lease: _Lease, also_drop: str | None = None) -> list[dict[str, Any]]:
    return [h for h in lease.holders if h["id"] != also_drop and session_alive(paths, h["id"])]


def _decode(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _encode(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def _render(lease: _Lease, current: bytes | None) -> bytes | None:
    """The file with the newest holder's values (None: leave it absent)."""
    if lease.file.kind == "toml":
        return _toml_render(lease, current)
    return _encode(apply_block(_decode(current or b""), lease.holders[-1]["vars"], SESSION_BEGIN))


def _put(lease: _Lease, lease_path: Path, current: bytes | None, data: bytes | None, *, clean: bool) -> None:
    if data is not None and data != current:
        lease.file.write(data, lambda: _save(lease_path, lease), clean=clean,
                         new_mode=0o600 if lease.file.mode is None else lease.file.mode)
    else:
        lease.file.written = sha256(data) if clean else None
    _save(lease_path, lease)


def _acquire(paths: Paths, session_id: str, path: Path, kind: str, holder: Mapping[str, Any]) -> bool:
    path = real_path(path)
    with _file_lock(paths, path) as lease_path:
        lease = _load(lease_path)
        if lease is not None and not _live_holders(paths, lease):
            _restore(lease, lease_path)               # a crashed session's leftovers
            lease = None
        fresh = lease is None
        if lease is None:
            rec = FileRecord.capture(path, kind)
            if rec.original is None and kind != "dotenv":
                return False                         # never create a config.toml
            lease = _Lease(rec, [])
        lease.holders = [h for h in lease.holders if h["id"] != session_id]
        lease.holders.append({"id": session_id, **holder})
        current = read_bytes(path)
        clean = fresh or sha256(current) == lease.file.written
        data = _render(lease, current)
        if fresh and kind != "dotenv" and data == current:
            return False                             # nothing of cordon's in it to change
        _put(lease, lease_path, current, data, clean=clean)
        return True


def dotenv_acquire(paths: Paths, session_id: str, env_path: Path, vars: Mapping[str, str]) -> None:
    """Put this session's block into `env_path` (the most recent live session's block wins).

    The first holder saves the file's original bytes (or its absence) in the
    lease before anything is written, so a crash at any point can be undone
    byte for byte.
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
    path = real_path(path)
    with _file_lock(paths, path) as lease_path:
        lease = _load(lease_path)
        if lease is None:
            return
        holders = _live_holders(paths, lease, also_drop=session_id)
        if holders:
            lease.holders = holders
            current = read_bytes(path)
            clean = sha256(current) == lease.file.written
            _put(lease, lease_path, current, _render(lease, current), clean=clean)
            return
        _restore(lease, lease_path)


def holders_of(paths: Paths, path: Path) -> list[str]:
    """Ids of the live sessions holding `path` (a change to it now would be undone by them)."""
    lease = _load(_lease_path(paths, real_path(path)))
    return [] if lease is None else [h["id"] for h in _live_holders(paths, lease)]


def _restore(lease: _Lease, lease_path: Path) -> None:
    rec = lease.file
    current = read_bytes(rec.path)
    toml = rec.kind == "toml"
    remove_stale_temps(rec.path)              # a write cut short by a kill
    if current is None and toml:
        pass                                  # deleted meanwhile: exec never creates a config.toml
    elif current is None or rec.as_cordon_left_it(current):
        rec.put_back(current)                 # nobody else touched the file: exactly what was there
    elif toml:
        # edited during the session: keep those edits, put back only the entries sessions changed
        text = _decode(current)
        new = _toml_undo(rec, text)
        if new != text:
            atomic_write(rec.path, _encode(new))
    else:
        text = _decode(current)
        orig_text = _decode(rec.original) if rec.original is not None else ""
        text = apply_block(text, read_block(orig_text)) if has_block(orig_text) else remove_block(text)
        if rec.original is None and text == "":
            rec.path.unlink()
        else:
            atomic_write(rec.path, _encode(text))
    remove_dirs(rec.dirs_created)
    with contextlib.suppress(FileNotFoundError):
        lease_path.unlink()


# the "toml" kind (tomlkit is imported only when a session edits a config.toml)

def _toml_render(lease: _Lease, current: bytes | None) -> bytes | None:
    from cordon.store.tomlentries import TomlEntries, value_at
    if current is None:
        return None
    rec = lease.file
    text = _decode(current)
    editor = TomlEntries(str(rec.path))
    try:
        doc = editor.parse(text, str(rec.path))
    except CordonError:
        return current                        # not TOML (now): left alone, undone at the end if it can be
    swapped = rec.entries
    ours = {(tuple(k), new) for h in lease.holders for k, _, new in h["entries"]}
    desired: dict[Key, str] = {}
    now: dict[Key, Recorded] = {}
    for k, expected, new in lease.holders[-1]["entries"]:
        key: Key = tuple(k)
        cur = value_at(doc, key)
        was = swapped.get(key)
        if cur is None or not (cur == expected or (key, cur) in ours or (was and cur == was.value)):
            continue                          # absent, or the user's value: not ours to change
        desired[key] = new
        now[key] = Recorded(new, was.prev if was is not None else expected)
    drop = {k: r for k, r in swapped.items() if k not in desired}
    applied = editor.apply(text, desired, drop, [])
    rec.entries = now
    return current if applied.text is None else _encode(applied.text)


def _toml_undo(rec: FileRecord, text: str) -> str:
    from cordon.store.tomlentries import TomlEntries
    try:
        new = TomlEntries(str(rec.path)).remove(text, rec.entries, [], file_created=False)
    except CordonError:
        return text                           # no longer TOML: cordon cannot tell its entries apart
    return text if new is None else new
