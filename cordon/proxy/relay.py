"""Relays out of a confined child's network namespace (`cordon exec --egress proxy`).

The sandbox's helper listens on 127.0.0.1:PORT inside the namespace and passes
the listening sockets over a unix socket pair; each connection accepted there is
joined to 127.0.0.1:PORT here. Those relays are the child's only way out: no
routing, no name resolution, bytes only (the proxy behind does the checking).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.abc

from cordon.proxy.transport.listen import serve, socket_stream

HANDOVER_TIMEOUT = 30.0        # seconds for the helper to hand over its listeners


class EgressRelay:
    """A socket pair: `child_fd` goes to the sandbox helper, `run` serves what it hands back."""

    def __init__(self) -> None:
        self._ours, self._theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._theirs.set_inheritable(True)

    @property
    def child_fd(self) -> int:
        return self._theirs.fileno()

    def spawned(self) -> None:
        """The child holds its end now: drop ours, so a helper that dies shows as EOF."""
        self._theirs.close()

    def close(self) -> None:
        self._ours.close()
        self._theirs.close()

    async def run(self, ports: Sequence[int]) -> None:
        """Receive the listeners, then relay until cancelled."""
        try:
            with anyio.move_on_after(HANDOVER_TIMEOUT):
                await anyio.wait_readable(self._ours)
            try:
                _, fds, _, _ = socket.recv_fds(self._ours, 64, len(ports))
            except (BlockingIOError, OSError):
                return
        finally:
            self._ours.close()
        listeners = [socket.socket(fileno=fd) for fd in fds]
        async with anyio.create_task_group() as tg:
            for listener, port in zip(listeners, ports, strict=False):
                tg.start_soon(_serve, listener, port)


async def _serve(listener: socket.socket, port: int) -> None:
    async def join(csock: socket.socket) -> None:
        client = await socket_stream(csock)
        if client is not None:
            await _join(client, port)

    with listener:
        await serve(listener, join)


async def _join(client: anyio.abc.SocketStream, port: int) -> None:
    async with client:
        try:
            upstream = await anyio.connect_tcp("127.0.0.1", port)
        except OSError:
            return
        async with upstream, anyio.create_task_group() as tg:
            tg.start_soon(_pump, client, upstream, tg.cancel_scope)
            tg.start_soon(_pump, upstream, client, tg.cancel_scope)


async def _pump(src: Any, dst: Any, both: anyio.CancelScope) -> None:
    """Copy until EOF, then half-close `dst` (the other direction goes on); a broken side ends both."""
    try:
        async for chunk in src:
            await dst.send(chunk)
        await dst.send_eof()
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        both.cancel()
