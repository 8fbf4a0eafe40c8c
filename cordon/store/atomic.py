"""Crash-safe file writes: temp file in the same directory, fsync, rename.

A reader sees the old file or the new one, never half of either; a private
file is created with its final mode from the first byte (umask, not chmod).
A temporary file left by a process killed mid-write is removed by the next
write of the same file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path


def atomic_write(path: Path, data: bytes | str, *, mode: int | None = None, durable: bool = True) -> None:
    """Replace `path` with `data` atomically.

    `mode` None keeps the existing file's mode (0644 for a new file, minus umask);
    a private mode such as 0o600 is in force before any byte is written.
    `durable` False skips the fsyncs: for files that only need to outlive the
    process (SIGKILL keeps the page cache), not a power cut, where the fsync
    would cost more than the write (a session's records, the generation file).
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
    tmp = _temp_for(path)
    # created owner-only; widened (if asked) only after the content is complete
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
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
    if not durable:
        return
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
    tmp = _temp_for(backup)
    shutil.copy2(path, tmp)
    os.replace(tmp, backup)
    return True


TEMP_MARK = ".cordon-tmp-"   # a temporary file is named ".<name>.cordon-tmp-<writer's pid>"


def _temp_for(path: Path) -> Path:
    """This process's temporary name for `path`, after removing those of dead writers."""
    remove_stale_temps(path)
    return path.parent / f".{path.name}{TEMP_MARK}{os.getpid()}"


def remove_stale_temps(path: Path) -> None:
    """Remove temporary files of `path` whose writer is gone.

    A SIGKILL between creating the temporary file and renaming it leaves one
    behind (named with the writer's pid); ours may be a leftover too (pid reuse).
    """
    prefix = f".{path.name}{TEMP_MARK}"
    me = os.getpid()
    try:
        names = [n for n in os.listdir(path.parent) if n.startswith(prefix)]
    except OSError:
        names = []
    for n in names:
        pid = n[len(prefix):]
        if pid.isdigit() and (int(pid) == me or not _alive(int(pid))):
            with contextlib.suppress(OSError):
                os.unlink(path.parent / n)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True          # exists, owned by someone else
    return True
