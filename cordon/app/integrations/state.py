"""What an integration changed, kept in the scope's state dir so `disable` can undo it exactly.

For every file: whether it existed, its original bytes, the hash of what cordon
wrote, the backup cordon made, and each entry cordon set (with the value it
replaced). `disable` restores the original byte for byte when the file still
hashes to what cordon wrote; otherwise it removes only cordon's entries.
Files are written atomically; the record (it may hold a copy of a user's
`.env`) is 0600 in a 0700 directory.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cordon.core.errors import CordonError
from cordon.store.atomic import atomic_write, backup_once
from cordon.store.edits import CreateOnly, Editor, Key, Recorded
from cordon.store.paths import ensure_private_dir

RECORD_VERSION = 1


def sha256(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def backup_path(path: Path) -> Path:
    """`.env` -> `.env.cordon.bak`, `settings.local.json` -> `settings.local.json.cordon.bak`."""
    return path.with_name(path.name + ".cordon.bak")


@dataclass
class FileRecord:
    path: Path
    kind: str
    existed: bool
    original: bytes | None          # the bytes before cordon's first edit; None once not restorable
    restorable: bool
    written: str | None             # sha256 of what cordon last wrote
    backup: Path | None = None
    backup_created: bool = False
    entries: dict[Key, Recorded] = field(default_factory=dict)
    created: list[Key] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "kind": self.kind, "existed": self.existed,
            "original": None if self.original is None else base64.b64encode(self.original).decode(),
            "restorable": self.restorable, "written_sha256": self.written,
            "backup": None if self.backup is None else str(self.backup),
            "backup_created": self.backup_created,
            "entries": [{"key": list(k), "value": r.value, "prev": r.prev} for k, r in self.entries.items()],
            "created": [list(c) for c in self.created],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> FileRecord:
        return cls(
            path=Path(d["path"]), kind=str(d["kind"]), existed=bool(d["existed"]),
            original=None if d.get("original") is None else base64.b64decode(d["original"]),
            restorable=bool(d["restorable"]), written=d.get("written_sha256"),
            backup=Path(d["backup"]) if d.get("backup") else None,
            backup_created=bool(d.get("backup_created")),
            entries={tuple(e["key"]): Recorded(e["value"], e.get("prev")) for e in d.get("entries", [])},
            created=[tuple(c) for c in d.get("created", [])],
        )


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


# -- applying and undoing ------------------------------------------------------------------------

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


def _mkdirs(path: Path, record: Record) -> None:
    missing: list[Path] = []
    d = path
    while not d.exists():
        missing.append(d)
        d = d.parent
    for m in reversed(missing):
        m.mkdir(mode=0o700)
        if m not in record.dirs_created:
            record.dirs_created.append(m)


def _real(path: Path) -> Path:
    """Write through a symlink (a dotfiles repo's settings.json), never replace the link itself."""
    return path.resolve() if path.is_symlink() else path


def apply_target(target: DesiredFile, record: Record, persist: Callable[[], None] | None = None) -> Change:
    """Bring one file to the wanted state, backing it up first and noting what changed.

    `persist` saves the record; it is called before the file changes (write-ahead), so a
    kill at any point leaves a record that still holds the file's original bytes.
    """
    raw = read_bytes(target.path)
    text = decode_text(target.path, raw)
    rec = record.files.get(target.path)
    if rec is not None and rec.written != sha256(raw) and not (rec.restorable and raw == rec.original):
        # something else changed the file since cordon wrote it: an exact restore would lose that
        rec.restorable, rec.original = False, None
    drop = {} if rec is None else {k: r for k, r in rec.entries.items() if k not in target.desired}
    result = target.editor.apply(text, target.desired, drop, [] if rec is None else rec.created)
    new = None if result.text is None else result.text.encode("utf-8")
    if rec is None:
        if isinstance(target.editor, CreateOnly) and raw is not None:
            return Change(target.path, "kept")     # not ours, and never will be
        rec = FileRecord(path=target.path, kind=target.editor.kind, existed=raw is not None,
                         original=raw, restorable=True, written=sha256(raw))
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
    _mkdirs(target.path.parent, record)
    rec.written = sha256(new)
    if persist:
        persist()
    atomic_write(_real(target.path), new, mode=None if raw is not None else target.new_mode)
    return Change(target.path, "created" if raw is None else "updated", backup)


def undo_file(rec: FileRecord, editor: Editor) -> Change:
    """Restore one file: byte-identical if untouched since cordon wrote it, else cordon's entries only."""
    raw = read_bytes(rec.path)
    # the file as cordon left it, or (a kill between saving the record and writing) as it was
    if rec.restorable and (sha256(raw) == rec.written or raw == rec.original):
        if rec.original is None or not rec.existed:
            if raw is not None:
                rec.path.unlink()
            _drop_backup(rec, None)
            return Change(rec.path, "removed")
        if raw != rec.original:
            atomic_write(_real(rec.path), rec.original)
        _drop_backup(rec, rec.original)
        return Change(rec.path, "restored")
    text = decode_text(rec.path, raw)
    new = editor.remove(text, rec.entries, rec.created, file_created=not rec.existed)
    if new is None:
        if raw is not None:
            rec.path.unlink()
            return Change(rec.path, "removed")
        return Change(rec.path, "kept")
    data = new.encode("utf-8")
    if data != raw:
        atomic_write(_real(rec.path), data)
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
    for d in sorted(record.dirs_created, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            os.rmdir(d)     # only if empty: the agent may have put its own files there
