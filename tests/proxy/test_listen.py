"""Accepting without losing a connection to a cancellation (cordon.proxy.transport.listen)."""

from __future__ import annotations

import socket

import anyio
import anyio.abc

from cordon.proxy.transport.listen import socket_stream, wait_connections


def listener() -> socket.socket:
    lsock = socket.create_server(("127.0.0.1", 0))
    lsock.setblocking(False)
    return lsock


def test_every_waiting_connection_comes_at_once_non_blocking() -> None:
    async def main() -> None:
        with listener() as lsock:
            clients = [socket.create_connection(lsock.getsockname()) for _ in range(3)]
            try:
                with anyio.fail_after(10):
                    got = await wait_connections(lsock)
                    while len(got) < 3:          # the kernel may still be queueing the last ones
                        got += await wait_connections(lsock)
                assert len(got) == 3 and all(not s.getblocking() for s in got)
                assert {s.getpeername() for s in got} == {c.getsockname() for c in clients}
                for s in got:
                    s.close()
            finally:
                for c in clients:
                    c.close()
    anyio.run(main)


def test_a_cancelled_wait_takes_nothing_from_the_backlog() -> None:
    async def main() -> None:
        with listener() as lsock, socket.create_connection(lsock.getsockname()) as client:
            with anyio.CancelScope() as scope:
                scope.cancel()
                await wait_connections(lsock)
            assert scope.cancelled_caught
            lsock.setblocking(True)
            lsock.settimeout(10)
            conn, _ = lsock.accept()                 # still there for the next accept
            with conn:
                assert conn.getpeername() == client.getsockname()
    anyio.run(main)


def test_a_socket_whose_stream_is_cancelled_is_closed_at_once() -> None:
    async def main() -> None:
        with listener() as lsock, socket.create_connection(lsock.getsockname()):
            with anyio.fail_after(10):
                [csock] = await wait_connections(lsock)
            with anyio.CancelScope() as scope:
                scope.cancel()
                await socket_stream(csock)
            assert scope.cancelled_caught
            assert csock.fileno() == -1              # not left to a callback or the garbage collector
    anyio.run(main)


def test_serve_hands_each_connection_over_and_stopping_closes_them_all() -> None:
    from cordon.proxy.transport.listen import serve
    taken: list[anyio.abc.SocketStream] = []

    async def handle(csock: socket.socket) -> None:
        stream = await socket_stream(csock)
        assert stream is not None
        async with stream:
            taken.append(stream)
            await anyio.sleep_forever()

    async def main() -> None:
        with listener() as lsock:
            clients = [socket.create_connection(lsock.getsockname(), timeout=10) for _ in range(2)]
            try:
                with anyio.fail_after(10):
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(serve, lsock, handle)
                        while len(taken) < 2:
                            await anyio.sleep(0.01)
                        tg.cancel_scope.cancel()
                for c in clients:
                    assert c.recv(1) == b""              # closed by the handler when serving stopped
            finally:
                for c in clients:
                    c.close()
    anyio.run(main)


def test_a_client_gone_before_its_stream_is_made_is_none_and_closed() -> None:
    """A connection reset between the accept and the stream set-up ends there, closed; it must not
    raise into the accept loop (which would end the relay or the probe upstream)."""
    import struct

    async def main() -> None:
        with listener() as lsock:
            client = socket.create_connection(lsock.getsockname())
            with anyio.fail_after(10):
                [csock] = await wait_connections(lsock)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()                               # a reset, not a FIN
            await anyio.sleep(0.05)
            assert await socket_stream(csock) is None
            assert csock.fileno() == -1
    anyio.run(main)
