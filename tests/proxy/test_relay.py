"""The egress relay (`cordon exec --egress proxy`): listeners handed over a socket pair, bytes
joined both ways to the same port on this side, half-closes kept, nothing else reachable."""

from __future__ import annotations

import socket

import anyio

from cordon.proxy.relay import EgressRelay


async def _echo_upper(stream: anyio.abc.SocketStream) -> None:
    async with stream:
        data = b""
        async for chunk in stream:             # until the client half-closes
            data += chunk
        await stream.send(data.upper())


def test_relay_joins_handed_over_listeners_to_the_same_port() -> None:
    async def main() -> None:
        target = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = target.extra(anyio.abc.SocketAttribute.local_port)
        relay = EgressRelay()
        # the sandbox helper's part: a listener "inside", handed over the pair
        inside = socket.socket()
        inside.bind(("127.0.0.1", 0))
        inside.listen()
        theirs = socket.socket(fileno=relay.child_fd)
        socket.send_fds(theirs, [b"x"], [inside.fileno()])
        theirs.detach()
        relay.spawned()
        inside_port = inside.getsockname()[1]
        inside.close()
        async with target, anyio.create_task_group() as tg:
            tg.start_soon(target.serve, _echo_upper)
            tg.start_soon(relay.run, (port,))
            with anyio.fail_after(10):
                for _ in range(2):                       # one connection after another
                    client = await anyio.connect_tcp("127.0.0.1", inside_port)
                    async with client:
                        await client.send(b"hello ")
                        await client.send(b"relay")
                        await client.send_eof()          # the half-close reaches the target
                        got = b""
                        async for chunk in client:
                            got += chunk
                        assert got == b"HELLO RELAY"
            tg.cancel_scope.cancel()

    anyio.run(main)


def test_a_helper_that_hands_nothing_over_ends_the_relay() -> None:
    async def main() -> None:
        relay = EgressRelay()
        relay.spawned()                                  # the helper's end closed: EOF, no listeners
        with anyio.fail_after(5):
            await relay.run((1,))

    anyio.run(main)
