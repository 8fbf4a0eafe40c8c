"""The upstream pool: how many connections to one target are opened at once."""

from __future__ import annotations

import time

import anyio
import pytest

from cordon.core.errors import ProtocolError
from cordon.core.http1 import parse_response_head
from cordon.proxy.pool import MAX_OPENING_PER_TARGET, Pool, ResponseMemo, Target
from cordon.proxy.tls import ClientContexts
from tests.faults.faulty import FaultyUpstream
from tests.upstream import UpstreamServer


def _target(host: str, port: int, ca_file: object) -> Target:
    return Target(host=host, port=443, connect_host="127.0.0.1", connect_port=port, ca_file=ca_file)  # type: ignore[arg-type]


TIMEOUT = 2.0   # the pool's connect timeout in the stalled-upstream test


def test_a_stalled_upstream_gets_at_most_the_limit_of_handshakes_and_every_wait_ends_in_time() -> None:
    burst = MAX_OPENING_PER_TARGET + 24
    with FaultyUpstream("api.openai.com", cert="no-tls") as up:   # accepts TCP, never says a word
        target = _target("api.openai.com", up.port, up.ca_file)
        statuses: list[int] = []   # not the exceptions: their tracebacks would keep the sockets' frames alive
        accepted_while_waiting: list[int] = []

        async def main() -> float:
            pool = Pool(ClientContexts(), connect_timeout=TIMEOUT)

            async def one() -> None:
                try:
                    await pool.acquire(target)
                except ProtocolError as e:
                    statuses.append(e.status)

            t0 = time.monotonic()
            async with anyio.create_task_group() as tg:
                for _ in range(burst):
                    tg.start_soon(one)
                # once the first handshakes are in (a rendezvous, not a race against a clock),
                # nothing more opens while they hang
                with anyio.fail_after(TIMEOUT / 2):
                    while up.accepted < MAX_OPENING_PER_TARGET:
                        await anyio.sleep(0.01)
                await anyio.sleep(TIMEOUT / 8)
                accepted_while_waiting.append(up.accepted)
            return time.monotonic() - t0

        elapsed = anyio.run(main)
    assert accepted_while_waiting == [MAX_OPENING_PER_TARGET]
    assert len(statuses) == burst and set(statuses) == {504}
    # a request that waited for its turn does not get a second full timeout (that would be 2 x TIMEOUT)
    assert elapsed < 1.75 * TIMEOUT, elapsed


def test_a_burst_reuses_connections_released_while_it_waited() -> None:
    burst = 60
    with UpstreamServer("api.openai.com") as up:
        target = _target("api.openai.com", int(up.address.rsplit(":", 1)[1]), up.ca_file)

        async def main() -> int:
            pool = Pool(ClientContexts(), connect_timeout=10.0)
            got = 0

            async def one() -> None:
                nonlocal got
                conn = await pool.acquire(target)
                got += 1
                await pool.release(conn)

            async with anyio.create_task_group() as tg:
                for _ in range(burst):
                    tg.start_soon(one)
            await pool.aclose()
            return got

        assert anyio.run(main) == burst
        opened = up.connections
    # without the limit every request of the burst opens its own connection
    assert opened < burst, opened
    assert opened <= 2 * MAX_OPENING_PER_TARGET, opened


@pytest.mark.parametrize("n", [1, 3])
def test_without_contention_nothing_waits(n: int) -> None:
    with UpstreamServer("api.openai.com") as up:
        target = _target("api.openai.com", int(up.address.rsplit(":", 1)[1]), up.ca_file)

        async def main() -> None:
            pool = Pool(ClientContexts(), connect_timeout=10.0)
            conns = [await pool.acquire(target) for _ in range(n)]
            assert len({id(c) for c in conns}) == n
            for c in conns:
                await pool.release(c)
            again = await pool.acquire(target)
            assert again is conns[-1]   # LIFO: the warmest connection first
            await again.aclose()
            await pool.aclose()

        anyio.run(main)
        assert up.connections == n


def test_nothing_is_kept_for_a_target_once_it_is_idle_no_more() -> None:
    with UpstreamServer("api.openai.com") as up:
        target = _target("api.openai.com", int(up.address.rsplit(":", 1)[1]), up.ca_file)

        async def main() -> None:
            pool = Pool(ClientContexts(), connect_timeout=10.0)
            conn = await pool.acquire(target)
            assert pool._opening == {}, "the opening limit for a target lives only while it is used"
            await pool.release(conn)
            assert len(pool._idle[target]) == 1
            again = await pool.acquire(target)
            assert again is conn and target not in pool._idle
            await again.aclose()
            await pool.aclose()

        anyio.run(main)


def test_response_memo_reuses_a_parse_only_for_the_same_bytes() -> None:
    memo = ResponseMemo()
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
    first = memo.parse(head)
    assert memo.parse(bytes(head)) is first
    other = memo.parse(head.replace(b"5", b"6"))
    assert other is not first and other == parse_response_head(head.replace(b"5", b"6"))
    with pytest.raises(ProtocolError):
        memo.parse(b"HTTP/1.1 2000 OK\r\n\r\n")
    assert memo.parse(head.replace(b"5", b"6")) is other   # a refused head is not kept
    assert memo.parse(head) == first and memo.parse(head) is not first
