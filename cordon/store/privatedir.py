"""A private directory that may sit in a shared, world-writable place (`/tmp`), used through a
file descriptor so that no path another user controls is ever followed.

Another user can plant `/tmp/cordon-<uid>` before cordon makes it: as a symlink (to a
directory of the victim's, later re-pointed at one of the attacker's), or as a directory
of their own. `open_private_dir` creates the directory without following a link
(`mkdir`, then `open(O_DIRECTORY|O_NOFOLLOW)`), checks owner and type on the open
descriptor (`fstat`), tightens the mode on it (`fchmod`), and refuses a parent anyone
may write to without the sticky bit (there a stranger could rename it away). Removal
goes through the descriptor too (`shutil.rmtree(name, dir_fd=...)`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from pathlib import Path

from cordon.core.errors import CordonError

HINT = "set XDG_RUNTIME_DIR to a private directory, or remove {path}"


def open_private_dir(path: Path) -> int:
    """An O_DIRECTORY descriptor for `path`, a 0700 directory owned by us (created if missing).

    Raises CordonError when `path` is a symlink, not a directory, another user's,
    or in a parent anyone may write to without the sticky bit.
    """
    parent = os.stat(path.parent)
    if parent.st_mode & stat.S_IWOTH and not parent.st_mode & stat.S_ISVTX:
        raise CordonError(f"{path.parent} is writable by anyone and not sticky", HINT.format(path=path))
    old = os.umask(0o077)
    try:
        os.mkdir(path, 0o700)   # never follows a symlink at `path`: EEXIST instead
    except FileExistsError:
        pass
    finally:
        os.umask(old)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise CordonError(f"{path} is a symlink or not a directory (someone else may have made it)",
                              HINT.format(path=path)) from None
        raise CordonError(f"cannot open {path}: {e.strerror}", HINT.format(path=path)) from None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid():
            raise CordonError(f"{path} belongs to another user", HINT.format(path=path))
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.fchmod(fd, 0o700)   # on the directory itself, never through a link
    except BaseException:
        os.close(fd)
        raise
    return fd


def remove_in(dir_fd: int, name: str) -> None:
    """Remove `name` (a directory tree) inside the directory open as `dir_fd`; missing is fine."""
    if "/" in name or name in ("", ".", ".."):
        raise ValueError(f"not a plain name: {name!r}")
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        shutil.rmtree(name, dir_fd=dir_fd)


def remove_private_subdir(root: Path, name: str) -> None:
    """Remove `root/name` through a descriptor of `root`, only if `root` is still our private directory."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return   # gone, or a symlink now: nothing of ours to remove there
    try:
        if os.fstat(fd).st_uid == os.getuid():
            remove_in(fd, name)
    finally:
        os.close(fd)
