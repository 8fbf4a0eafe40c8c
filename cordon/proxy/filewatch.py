"""Notice that a file changed without a system call per check: inotify, on Linux.

The proxy used to `stat()` the secrets generation file on every request so
that `cordon secret set` in another process takes effect on the next request:
a system call on every request (docs/performance.md has what it cost).
`FileWatch` asks the kernel instead: an
inotify watch on the file's directory, read by the event loop, calls
`on_change` when an event names the file (written, created, renamed over,
deleted).

Ordering: `rename()` and `write()` queue the event before they return, so a
change made before a client sends its request is read by the loop no later
than the request itself, and the loop runs I/O callbacks before the task that
handles the request.

`start()` returns False where inotify is not available (not Linux, no such
libc call, the directory missing, the per-user watch limit reached); the
caller then checks the file itself. If the watch ends later (the directory is
removed, the event queue overflows), `on_lost` is called and the caller falls
back the same way.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import struct
import sys
from collections.abc import Callable
from pathlib import Path

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000

_MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
         | IN_DELETE_SELF | IN_MOVE_SELF)
_EVENT = struct.Struct("iIII")   # struct inotify_event: wd, mask, cookie, len (then the name)


class FileWatch:
    __slots__ = ("_fd", "_loop", "_name", "dir", "on_change", "on_lost")

    def __init__(self, path: Path, on_change: Callable[[], None], on_lost: Callable[[], None]) -> None:
        self.dir = path.parent
        self._name = os.fsencode(path.name)
        self.on_change = on_change
        self.on_lost = on_lost
        self._fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def active(self) -> bool:
        return self._fd >= 0

    def start(self) -> bool:
        """Begin watching (from inside the running event loop); False: not possible here."""
        if sys.platform != "linux" or self._fd >= 0:
            return self._fd >= 0
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            init1, add_watch = libc.inotify_init1, libc.inotify_add_watch
        except (OSError, AttributeError):
            return False
        add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        fd = int(init1(os.O_NONBLOCK | os.O_CLOEXEC))
        if fd < 0:
            return False
        if add_watch(fd, os.fsencode(self.dir), _MASK) < 0:
            os.close(fd)
            return False
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._readable)
        self._fd = fd
        return True

    def stop(self) -> None:
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(fd)
        os.close(fd)

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, 64 * 1024)
        except BlockingIOError:
            return
        except OSError:
            self._lose()
            return
        changed = lost = False
        off = 0
        while off + _EVENT.size <= len(data):
            _wd, mask, _cookie, length = _EVENT.unpack_from(data, off)
            name = data[off + _EVENT.size:off + _EVENT.size + length].rstrip(b"\0")
            off += _EVENT.size + length
            if mask & (IN_Q_OVERFLOW | IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF):
                lost = True   # events were dropped, or the directory itself went away
            elif name == self._name:
                changed = True
        if changed:
            self.on_change()
        if lost:
            self._lose()

    def _lose(self) -> None:
        self.stop()
        self.on_change()   # whatever happened meanwhile counts as a change
        self.on_lost()
