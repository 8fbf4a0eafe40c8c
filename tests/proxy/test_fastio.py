"""fastio.FastStream's read deadline over real loopback TCP, on asyncio's loop and on uvloop.

The timer behind a deadline is armed lazily (one per deadline's length on a keep-alive
connection, not one per read), so what is checked here is what a reader sees: a wait fails
with TimeoutError once the deadline current during it passes, and not while it is still ahead,
whether the deadline moved earlier or later than the one a timer was armed for.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import pytest

from cordon.proxy.transport.fastio import FastStream, connect, serve_tcp

LOOPS = [pytest.param({"use_uvloop": False}, id="asyncio"), pytest.param({"use_uvloop": True}, id="uvloop")]


def _pair(body: Callable[[FastStream, FastStream], Coroutine[Any, Any, None]], options: dict[str, Any]) -> None:
    """Run `body(server_side, client_side)` over one loopback connection."""

    async def main() -> None:
        accepted: list[FastStream] = []
        ready = anyio.Event()

        async def keep(s: FastStream) -> None:
            accepted.append(s)
            ready.set()
            await anyio.sleep_forever()

        async with anyio.create_task_group() as tg:
            port = await tg.start(serve_tcp, 0, keep)
            client = await connect("127.0.0.1", port)
            await ready.wait()
            server = accepted[0]
            try:
                with anyio.fail_after(30):
                    await body(server, client)
            finally:
                await client.aclose()
                await server.aclose()
                tg.cancel_scope.cancel()

    anyio.run(main, backend="asyncio", backend_options=options)


@pytest.mark.parametrize("options", LOOPS)
def test_a_deadline_moved_earlier_than_the_armed_timer_fires(options: dict[str, Any]) -> None:
    async def body(s: FastStream, c: FastStream) -> None:
        for i in range(5):   # keep-alive: every read pushes the (long) deadline on
            s.deadline = s.clock() + 300
            await c.send(b"%d" % i)
            assert await s.receive() == b"%d" % i
        s.deadline = s.clock() + 0.2
        with pytest.raises(TimeoutError):
            await s.receive()
        s.deadline = None
        await c.send(b"after")   # a deadline that passed leaves the stream usable
        assert await s.receive() == b"after"

    _pair(body, options)


async def received_later(s: FastStream, c: FastStream, data: bytes, after: float) -> bytes:
    """What `s` receives while `c` sends `data` only `after` seconds from now (past an armed timer)."""
    async def late() -> None:
        await anyio.sleep(after)
        await c.send(data)

    async with anyio.create_task_group() as tg:
        tg.start_soon(late)
        got = await s.receive()
    return got


@pytest.mark.parametrize("options", LOOPS)
def test_a_timer_armed_for_an_earlier_deadline_does_not_end_a_later_one(options: dict[str, Any]) -> None:
    async def body(s: FastStream, c: FastStream) -> None:
        s.deadline = s.clock() + 0.1
        await c.send(b"first")
        assert await s.receive() == b"first"   # the timer for +0.1 s stays armed
        s.deadline = s.clock() + 10             # later: the armed timer fires first and must not end this wait
        assert await received_later(s, c, b"second", 0.6) == b"second"
        s.deadline = s.clock() + 0.2
        with pytest.raises(TimeoutError):
            await s.receive()

    _pair(body, options)


@pytest.mark.parametrize("options", LOOPS)
def test_no_deadline_means_no_timeout_even_with_a_timer_armed(options: dict[str, Any]) -> None:
    async def body(s: FastStream, c: FastStream) -> None:
        s.deadline = s.clock() + 0.1
        await c.send(b"x")
        assert await s.receive() == b"x"
        s.deadline = None
        assert await received_later(s, c, b"y", 0.5) == b"y"

    _pair(body, options)
