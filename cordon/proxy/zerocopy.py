"""Zero-copy tunnels on Linux: splice(2) socket -> pipe -> socket, no bytes through Python.

An opaque CONNECT tunnel only moves bytes, so on Linux they go kernel to
kernel (a pipe per direction, up to 1 MiB per call) instead of being copied
into Python and back (issue 9: tunnel bulk >= 0.8x direct). Only used when
both sides are plain asyncio sockets at rest (nothing buffered, not reading,
nothing waiting to be written); otherwise, and on other systems, the copying
`conn.splice` runs. Half-close is kept: EOF on one side shuts down writing on
the other, the opposite direction keeps flowing.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from cordon.proxy.conn import Conn
from cordon.proxy.fastio import FastStream

PIPE_SIZE = 1 << 20
_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)
AVAILABLE = sys.platform == "linux" and hasattr(os, "splice") and hasattr(os, "pipe2")


def raw_socket_at_rest(conn: Conn) -> int | None:
    """The descriptor of the socket under `conn` if bytes may move on it directly, else None.

    Looks at anyio's asyncio transport (there is no public "is anything
    buffered" API); any doubt answers None and the copying relay is used.
    """
    if conn.buf or not AVAILABLE:
        return None
    stream: Any = conn.stream
    if isinstance(stream, FastStream):
        return stream.at_rest_fd()
    transport = getattr(stream, "_transport", None)
    protocol = getattr(stream, "_protocol", None)
    queue = getattr(protocol, "read_queue", None)
    try:
        if transport is None or queue is None or transport.is_closing():
            return None
        if transport.is_reading():
            # an accepted socket starts out reading; once paused nothing more lands in the queue
            transport.pause_reading()
        if queue or transport.get_write_buffer_size():
            return None
        sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)  # noqa: S610
        if sock.type != socket.SOCK_STREAM:
            return None
        return int(sock.fileno())
    except Exception:
        return None


async def _one_way(src: socket.socket, dst: socket.socket) -> int:
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    total = 0
    try:
        try:
            import fcntl

            fcntl.fcntl(w, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
        except OSError:
            pass  # the default 64 KiB pipe still works, with more calls
        sfd, dfd = src.fileno(), dst.fileno()
        while True:
            try:
                n = os.splice(sfd, w, PIPE_SIZE, flags=_FLAGS)
            except BlockingIOError:
                await anyio.wait_readable(src)
                continue
            if n == 0:
                try:
                    dst.shutdown(socket.SHUT_WR)   # pass the half-close on
                except OSError:
                    pass
                return total
            while n:
                try:
                    m = os.splice(r, dfd, n, flags=_FLAGS)
                except BlockingIOError:
                    await anyio.wait_writable(dst)
                    continue
                n -= m
                total += m
            await anyio.lowlevel.checkpoint()   # a fast sender must not starve other connections
    finally:
        os.close(r)
        os.close(w)


async def splice_sockets(a_fd: int, b_fd: int) -> tuple[int, int]:
    """Move bytes both ways until both directions end (or either breaks).

    Works on duplicates of the descriptors: asyncio refuses readiness waits on
    a descriptor its transport owns, and the transports still close the originals.
    """
    counts = [0, 0]
    a = socket.socket(fileno=os.dup(a_fd))
    try:
        b = socket.socket(fileno=os.dup(b_fd))
    except BaseException:
        a.close()
        raise

    async def run(i: int, src: socket.socket, dst: socket.socket, scope: anyio.CancelScope) -> None:
        try:
            counts[i] = await _one_way(src, dst)
        except OSError:
            scope.cancel()   # reset or broken pipe: end both directions

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, 0, a, b, tg.cancel_scope)
            tg.start_soon(run, 1, b, a, tg.cancel_scope)
    finally:
        a.close()
        b.close()
    return counts[0], counts[1]
