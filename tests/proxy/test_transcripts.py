"""Exchanges through the proxy as byte-for-byte transcripts, over in-memory streams.

Each test plays both ends of one MITM exchange: the client's bytes go in
(after CONNECT and TLS with cordon's leaf), the test asserts the exact bytes
the upstream receives, answers with its own, and asserts the exact bytes the
client gets back. The proxy under test is `cordon.proxy.server.Proxy` with
its sockets replaced by `memstream.memory_pair` ends (h11's ConnectionPair,
mitmproxy's layer tests): no ports, no threads, no timing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest

from cordon.core.model import Auth, Route, SecretSpec
from cordon.proxy.transport.fasttls import TLSConn
from cordon.proxy.transport.stream import Stream
from tests.proxy.memstream import MemoryStream, ProxyOverMemory, expect, proxy_over_memory

HOST = "api.example.test"
SECRET = "sk-real-SECRET-0123456789abcdef"
PLACEHOLDER = "dummy-replaced-by-cordon"


def route(*, header_name: str = "Authorization", scheme: str | None = "Bearer",
          paths: tuple[str, ...] = ()) -> Route:
    auth = Auth(type="header", secret=SecretSpec(source="env", var="TRANSCRIPT_SECRET"),
                header_name=header_name, scheme=scheme, placeholder=PLACEHOLDER)
    return Route(name="example", host=HOST, auth=auth, paths=paths)


def run(r: Route, body: Callable[[ProxyOverMemory], Awaitable[None]]) -> ProxyOverMemory:
    seen: list[ProxyOverMemory] = []

    async def main() -> None:
        async with proxy_over_memory([r], secrets={"TRANSCRIPT_SECRET": SECRET}) as t:
            seen.append(t)
            with anyio.fail_after(30):
                await body(t)

    anyio.run(main)
    return seen[0]


async def first_request(t: ProxyOverMemory, sent: bytes, upstream_gets: bytes) -> tuple[TLSConn, MemoryStream]:
    """A client connection to HOST (CONNECT, TLS) sends `sent`; the upstream connection the proxy
    opens for it receives exactly `upstream_gets`. Both ends, for what follows."""
    client = await t.connect_tls(HOST)
    await client.send(sent)
    up = await t.next_upstream()
    await expect(up, upstream_gets)
    return client, up


async def relayed(src: Stream, dst: Stream, sent: bytes, arrives: bytes | None = None) -> None:
    """`sent` on one leg comes out of the other exactly as `arrives` (by default: unchanged)."""
    await src.send(sent)
    await expect(dst, sent if arrives is None else arrives)


def test_keep_alive_exchange_injects_the_credential_and_reuses_the_upstream() -> None:
    async def body(t: ProxyOverMemory) -> None:
        client, up = await first_request(t, b"GET /v1/models HTTP/1.1\r\n"
                                            b"Host: api.example.test\r\n"
                                            b"User-Agent: transcript/1\r\n"
                                            b"Authorization: Bearer dummy-replaced-by-cordon\r\n"
                                            b"Accept: application/json\r\n"
                                            b"\r\n",
                                         upstream_gets=b"GET /v1/models HTTP/1.1\r\n"
                                                       b"Host: api.example.test\r\n"
                                                       b"User-Agent: transcript/1\r\n"
                                                       b"Accept: application/json\r\n"
                                                       b"Authorization: Bearer sk-real-SECRET-0123456789abcdef\r\n"
                                                       b"\r\n")
        await relayed(up, client, b"HTTP/1.1 200 OK\r\n"
                                  b"Content-Type: application/json\r\n"
                                  b"Content-Length: 13\r\n"
                                  b"\r\n"
                                  b'{"data": []}\n')

        # the second request on the same client connection goes over the same upstream connection
        await relayed(client, up, b"POST /v1/responses HTTP/1.1\r\n"
                                  b"Host: api.example.test\r\n"
                                  b"Authorization: Bearer dummy-replaced-by-cordon\r\n"
                                  b"Content-Type: application/json\r\n"
                                  b"Content-Length: 2\r\n"
                                  b"\r\n"
                                  b"{}",
                      arrives=b"POST /v1/responses HTTP/1.1\r\n"
                              b"Host: api.example.test\r\n"
                              b"Content-Type: application/json\r\n"
                              b"Authorization: Bearer sk-real-SECRET-0123456789abcdef\r\n"
                              b"Content-Length: 2\r\n"
                              b"\r\n"
                              b"{}")
        await relayed(up, client, b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
        assert len(t.opened) == 1 and not up.peer_closed

    t = run(route(), body)
    assert [(x.host, x.port, x.tls) for x in t.opened] == [(HOST, 443, True)]
    assert t.resolver.calls == 1   # resolved once, then cached


def test_chunked_streaming_response_reaches_the_client_event_by_event() -> None:
    events = [b"event: response.created\ndata: {}\n\n",
              b"event: response.output_text.delta\ndata: {\"delta\": \"Hel\"}\n\n",
              b"event: response.completed\ndata: {}\n\n"]

    async def body(t: ProxyOverMemory) -> None:
        client, up = await first_request(t, b"POST /v1/responses HTTP/1.1\r\n"
                                            b"Host: api.example.test\r\n"
                                            b"Authorization: Bearer dummy-replaced-by-cordon\r\n"
                                            b"Content-Length: 0\r\n"
                                            b"\r\n",
                                         upstream_gets=b"POST /v1/responses HTTP/1.1\r\n"
                                                       b"Host: api.example.test\r\n"
                                                       b"Authorization: Bearer sk-real-SECRET-0123456789abcdef\r\n"
                                                       b"\r\n")
        await relayed(up, client, b"HTTP/1.1 200 OK\r\n"
                                  b"Content-Type: text/event-stream\r\n"
                                  b"Transfer-Encoding: chunked\r\n"
                                  b"\r\n")
        # each event reaches the client before the upstream sends the next: nothing waits for a buffer
        for ev in events:
            await relayed(up, client, b"%x\r\n%b\r\n" % (len(ev), ev))
        await relayed(up, client, b"0\r\n\r\n")

        # the connection stays usable on both legs
        await relayed(client, up, b"GET /v1/models HTTP/1.1\r\nHost: api.example.test\r\n\r\n",
                      arrives=b"GET /v1/models HTTP/1.1\r\nHost: api.example.test\r\n"
                              b"Authorization: Bearer sk-real-SECRET-0123456789abcdef\r\n\r\n")
        await relayed(up, client, b"HTTP/1.1 204 No Content\r\n\r\n")
        assert len(t.opened) == 1

    run(route(), body)


def test_bytes_after_a_bodiless_response_never_reach_the_client() -> None:
    """An upstream that follows a 204 with more bytes in the same write (a second response,
    smuggled): the client gets the 204 and nothing else; its next request is answered by its own
    response, over a fresh upstream connection (the tainted one is not reused)."""
    async def body(t: ProxyOverMemory) -> None:
        get = b"GET /v1/a HTTP/1.1\r\nHost: api.example.test\r\n\r\n"
        injected = (b"GET /v1/a HTTP/1.1\r\nHost: api.example.test\r\n"
                    b"Authorization: Bearer " + SECRET.encode() + b"\r\n\r\n")
        client, up = await first_request(t, get, upstream_gets=injected)
        await up.send(b"HTTP/1.1 204 No Content\r\n\r\n"
                      b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!")
        await expect(client, b"HTTP/1.1 204 No Content\r\n\r\n")
        followed = bytearray()

        async def read_more() -> None:
            followed.extend(await client.receive(1 << 16))

        async with anyio.create_task_group() as tg:
            tg.start_soon(read_more)
            await anyio.wait_all_tasks_blocked()   # the proxy has sent all it will for this request
            tg.cancel_scope.cancel()
        assert followed == b"", f"bytes followed the 204: {bytes(followed)!r}"
        await client.send(get)
        second = await t.next_upstream()
        await expect(second, injected)
        await relayed(second, client, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        assert len(t.opened) == 2

    run(route(), body)


SSE_HEAD = (b"HTTP/1.1 200 OK\r\n"
            b"Content-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n"
            b"\r\n")


async def streamed_request(t: ProxyOverMemory) -> tuple[TLSConn, MemoryStream]:
    """A model call as agents make it (POST, empty body), injected and sent upstream."""
    return await first_request(t, b"POST /v1/responses HTTP/1.1\r\n"
                                  b"Host: api.example.test\r\n"
                                  b"Content-Length: 0\r\n"
                                  b"\r\n",
                               upstream_gets=b"POST /v1/responses HTTP/1.1\r\n"
                                             b"Host: api.example.test\r\n"
                                             b"Authorization: Bearer sk-real-SECRET-0123456789abcdef\r\n"
                                             b"\r\n")


def test_a_first_event_that_came_with_the_head_leaves_with_it_in_one_record() -> None:
    """Time to first token: the head and the first event the upstream sent together reach the client
    in one TLS record (one read), not the head first and the event a write later; the next event,
    sent on its own, still leaves at once."""
    head = SSE_HEAD
    first, second = b"data: {\"delta\": \"Hel\"}\n\n", b"data: {\"delta\": \"lo\"}\n\n"

    async def body(t: ProxyOverMemory) -> None:
        client, up = await streamed_request(t)
        await up.send(head + b"%x\r\n%b\r\n" % (len(first), first))
        assert await client.receive() == head + b"%x\r\n%b\r\n" % (len(first), first)
        await relayed(up, client, b"%x\r\n%b\r\n" % (len(second), second))
        await relayed(up, client, b"0\r\n\r\n")

    run(route(), body)


def test_a_malformed_chunk_that_came_with_the_head_lets_the_head_through_then_ends_the_connection() -> None:
    """The body's first bytes, in the upstream's buffer with the head, are not a chunk: the client
    gets the head on its own (no half-relayed chunk, no error page after it), then the connection
    ends, and so does the upstream's (it is not pooled)."""
    head = SSE_HEAD

    async def body(t: ProxyOverMemory) -> None:
        client, up = await streamed_request(t)
        await up.send(head + b"zz\r\ndata: {}\n\n\r\n")
        assert await client.receive() == head
        with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
            await client.receive()
        with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
            await up.receive()

    run(route(), body)


def test_the_clients_own_credentials_are_stripped() -> None:
    """Every client copy of the route's header, Authorization and Proxy-Authorization is dropped;
    the upstream sees one credential, the real one."""
    async def body(t: ProxyOverMemory) -> None:
        client, up = await first_request(t, b"GET /v1/messages HTTP/1.1\r\n"
                                            b"Host: api.example.test\r\n"
                                            b"x-api-key: sk-the-clients-own-key-4242\r\n"
                                            b"Authorization: Bearer sk-another-client-key\r\n"
                                            b"X-API-KEY: dummy-replaced-by-cordon\r\n"
                                            b"Proxy-Authorization: Basic Y29yZG9uOnRva2Vu\r\n"
                                            b"anthropic-version: 2023-06-01\r\n"
                                            b"\r\n",
                                         upstream_gets=b"GET /v1/messages HTTP/1.1\r\n"
                                                       b"Host: api.example.test\r\n"
                                                       b"anthropic-version: 2023-06-01\r\n"
                                                       b"x-api-key: sk-real-SECRET-0123456789abcdef\r\n"
                                                       b"\r\n")
        await relayed(up, client, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    run(route(header_name="x-api-key", scheme=None), body)


def test_a_path_outside_the_routes_paths_gets_no_credential() -> None:
    """The client's copy is still stripped and nothing is injected (the secret is looked up all
    the same: echo scrubbing covers every response of a route host)."""
    async def body(t: ProxyOverMemory) -> None:
        client, up = await first_request(t, b"GET /public/status HTTP/1.1\r\n"
                                            b"Host: api.example.test\r\n"
                                            b"Authorization: Bearer dummy-replaced-by-cordon\r\n"
                                            b"\r\n",
                                         upstream_gets=b"GET /public/status HTTP/1.1\r\n"
                                                       b"Host: api.example.test\r\n"
                                                       b"\r\n")
        await relayed(up, client, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nup\n")

        # a dot-segment that climbs out of /v1/ is outside too
        await relayed(client, up, b"GET /v1/../admin HTTP/1.1\r\n"
                                  b"Host: api.example.test\r\n"
                                  b"Authorization: Bearer dummy-replaced-by-cordon\r\n"
                                  b"\r\n",
                      arrives=b"GET /v1/../admin HTTP/1.1\r\n"
                              b"Host: api.example.test\r\n"
                              b"\r\n")
        await relayed(up, client, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

    run(route(paths=("/v1/",)), body)
