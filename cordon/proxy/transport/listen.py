"""Accepting connections so that none is ever lost to a cancellation.

`loop.sock_accept` (and anyio's `SocketListener.accept`, built on it) can take a
connection from the kernel in the same loop iteration in which the waiting task
is cancelled: the socket is then dropped unclosed (a ResourceWarning wherever
the garbage collector finds it, a peer left hanging). Here the only await is the
wait for readiness; the accepting itself never awaits, so a cancellation falls
either before a connection is taken or after the caller owns it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import anyio.abc


async def wait_connections(lsock: socket.socket) -> list[socket.socket]:
    """Wait until the listening socket `lsock` has connections; return every one its backlog holds,
    accepted and non-blocking. An OSError (out of descriptors, say) is raised when none was taken."""
    while True:
        await anyio.wait_readable(lsock)
        got: list[socket.socket] = []
        while True:
            try:
                csock, _ = lsock.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                if got:
                    break
                raise
            csock.setblocking(False)
            got.append(csock)
        if got:
            return got


async def socket_stream(csock: socket.socket) -> anyio.abc.SocketStream | None:
    """An anyio stream over an accepted socket; None when the client is already gone (reset before
    this ran). The socket is closed then, and when this fails otherwise or is cancelled."""
    try:
        return await anyio.abc.SocketStream.from_socket(csock)
    except (OSError, ValueError):   # anyio says ValueError for a socket no longer connected
        csock.close()
        return None
    except BaseException:
        csock.close()
        raise


async def serve(lsock: socket.socket, handle: Callable[[socket.socket], Coroutine[Any, Any, None]]) -> None:
    """Accept on the listening socket `lsock` until cancelled, each connection in a task of its own
    running `handle(sock)`, which owns the socket (it closes it, also when it is cancelled before
    taking it over: a task is never cancelled before it starts). Out of descriptors or the like:
    back off for 0.1 s instead of ending."""
    lsock.setblocking(False)
    async with anyio.create_task_group() as tg:
        while True:
            try:
                ready = await wait_connections(lsock)
            except OSError:
                await anyio.sleep(0.1)
                continue
            for csock in ready:
                tg.start_soon(handle, csock)
