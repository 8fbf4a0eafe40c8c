"""Test-only: kill this Python process at its Nth file-system change.

Put this directory first on PYTHONPATH and set CORDON_TEST_KILL_LOG=<file>; every call that
changes the file system (open for writing, os.open with write flags, replace/rename, unlink,
mkdir/rmdir, chmod, symlink) is counted and logged there as "n op path". With
CORDON_TEST_KILL_AT=N the process SIGKILLs itself just before the Nth change. The variables
are removed from the environment at import, so only this process (not its children) is hooked.
"""

from __future__ import annotations

import builtins
import io
import os
import signal

_log = os.environ.pop("CORDON_TEST_KILL_LOG", None)
_at = int(os.environ.pop("CORDON_TEST_KILL_AT", "0") or 0)

if _log:
    _fd = os.open(_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    _n = 0
    _WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def _step(op: str, path: object) -> None:
        global _n
        _n += 1
        os.write(_fd, f"{_n} {op} {os.fspath(path) if isinstance(path, (str, bytes, os.PathLike)) else path}\n"
                 .encode("utf-8", "replace"))
        if _n == _at:
            os.kill(os.getpid(), signal.SIGKILL)

    def _wrap(name: str, real, *, when=None):  # type: ignore[no-untyped-def]
        def hooked(*args, **kw):  # type: ignore[no-untyped-def]
            if args and (when is None or when(*args, **kw)):
                _step(name, args[0])
            return real(*args, **kw)
        hooked.__wrapped__ = real  # type: ignore[attr-defined]
        # keep what os advertises for the real function (shutil.rmtree(dir_fd=...) checks these sets)
        for caps in (os.supports_dir_fd, os.supports_fd, os.supports_follow_symlinks, os.supports_effective_ids):
            if real in caps:
                caps.add(hooked)
        return hooked

    def _writing_mode(file, mode="r", *a, **k):  # type: ignore[no-untyped-def]
        return isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+")

    def _writing_flags(path, flags, *a, **k):  # type: ignore[no-untyped-def]
        return bool(flags & _WRITE_FLAGS)

    builtins.open = io.open = _wrap("open", io.open, when=_writing_mode)
    os.open = _wrap("os.open", os.open, when=_writing_flags)
    for _name in ("replace", "rename", "unlink", "remove", "rmdir", "mkdir", "chmod", "symlink", "link"):
        setattr(os, _name, _wrap(_name, getattr(os, _name)))
