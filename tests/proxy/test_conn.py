"""Conn.read_head: where a head ends, whatever the reads that carried it, and what stays buffered."""

from __future__ import annotations

import anyio
import pytest

from cordon.core.errors import ProtocolError
from cordon.proxy.conn import Conn
from tests.proxy.memstream import memory_pair

HEAD = b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n"


def _reads(*sends: bytes, heads: int = 1) -> tuple[list[bytes | None], bytes]:
    """Send each of `sends` (separately), read `heads` heads; returns them and what stays buffered."""

    async def main() -> tuple[list[bytes | None], bytes]:
        a, b = memory_pair()
        conn = Conn(b)
        got: list[bytes | None] = []
        failed: list[ProtocolError] = []
        async with anyio.create_task_group() as tg:
            async def feed() -> None:
                for chunk in sends:
                    await a.send(chunk)
                    await anyio.sleep(0.01)   # separate reads on the other end
                await a.send_eof()

            tg.start_soon(feed)
            try:
                for _ in range(heads):
                    got.append(await conn.read_head(idle=5, head=5))
            except ProtocolError as e:
                failed.append(e)
        if failed:
            raise failed[0]
        return got, bytes(conn.buf)

    return anyio.run(main)


@pytest.mark.parametrize("case", [
    ((HEAD,), [HEAD], b""),                                                 # one read, exactly one head
    ((HEAD + b"body!",), [HEAD], b"body!"),                                 # a body right behind it
    ((HEAD + HEAD,), [HEAD, HEAD], b""),                                    # pipelined: the second stays buffered
    ((b"\r\n\r\n" + HEAD,), [HEAD], b""),                                   # stray CRLFs before a head
    ((HEAD[:10], HEAD[10:]), [HEAD], b""),                                  # a head across two reads
    ((HEAD[:-2], b"\r\n" + b"xy"), [HEAD], b"xy"),
    ((b"GET / HTTP/1.1\nHost: a\n\nrest",), [b"GET / HTTP/1.1\nHost: a\n\n"], b"rest"),   # bare LF endings
    ((b"\n", HEAD), [HEAD], b""),
], ids=["exact", "body", "pipelined", "crlf-first", "split", "split-body", "bare-lf", "lf-read-first"])
def test_a_head_is_cut_where_it_ends(case: tuple[tuple[bytes, ...], list[bytes], bytes]) -> None:
    sends, heads, left = case
    assert _reads(*sends, heads=len(heads)) == (heads, left)


def test_eof_before_a_head_is_none_and_in_the_middle_is_an_error() -> None:
    assert _reads() == ([None], b"")
    with pytest.raises(ProtocolError) as e:
        _reads(HEAD[:10])
    assert e.value.status == 400
