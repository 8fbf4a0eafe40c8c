"""Test-only: log every network destination this Python process uses.

With CORDON_TEST_NETLOG=<file>, each socket connect/connect_ex/sendto/bind and each
getaddrinfo call is appended to the file as one line ("connect AF_INET ('127.0.0.1', 443)").
The variable is removed from the environment at import, so only this process is logged.
"""

from __future__ import annotations

import os
import socket

_log = os.environ.pop("CORDON_TEST_NETLOG", None)

if _log:
    _fd = os.open(_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def _note(what: str) -> None:
        os.write(_fd, (what.replace("\n", " ") + "\n").encode("utf-8", "replace"))

    def _hook(name: str):  # type: ignore[no-untyped-def]
        real = getattr(socket.socket, name)

        def hooked(self, *args, **kw):  # type: ignore[no-untyped-def]
            addr = args[-1] if name == "sendto" else args[0]
            _note(f"{name} {socket.AddressFamily(self.family).name} {addr!r}")
            return real(self, *args, **kw)

        return hooked

    for _name in ("connect", "connect_ex", "sendto", "bind"):
        setattr(socket.socket, _name, _hook(_name))

    _real_gai = socket.getaddrinfo

    def _gai(host, *args, **kw):  # type: ignore[no-untyped-def]
        _note(f"getaddrinfo {host!r}")
        return _real_gai(host, *args, **kw)

    socket.getaddrinfo = _gai
