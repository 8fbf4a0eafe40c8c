"""Crash-safe file writes: temp file in the same directory, fsync, rename.

A reader sees the old file or the new one, never half of either; a private
file is created with its final mode from the first byte (umask, not chmod).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path


def atomic_write(path: Path, data: bytes | str, *, mode: int | None = None) -> None:
    """Replace `path` with `data` atomically.

    `mode` None keeps the existing file's mode (0644 for a new file, minus umask);
    a private mode such as 0o600 is in force before any byte is written.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    path = Path(path)
    if mode is None:
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.cordon-tmp-{os.getpid()}"
    # created owner-only; widened (if asked) only after the content is complete
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None and (e.filename is None or str(e.filename) == str(tmp)):
            # name the file the user knows (a full disk fails the write, not the open of the temp)
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    with contextlib.suppress(OSError):
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def backup_once(path: Path, backup: Path) -> bool:
    """Copy `path` to `backup` unless a backup already exists; True if one was made."""
    if backup.exists() or not path.exists():
        return False
    tmp = backup.parent / f".{backup.name}.cordon-tmp-{os.getpid()}"
    shutil.copy2(path, tmp)
    os.replace(tmp, backup)
    return True
