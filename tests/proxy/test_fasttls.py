"""fasttls.TLSConn over fastio streams: real loopback TLS, both ends ours or the stdlib's."""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import pytest

from cordon.core import certs
from cordon.proxy.tls import load_context
from cordon.proxy.transport.fastio import FastStream, connect, serve_tcp
from cordon.proxy.transport.fasttls import TLSConn


@pytest.fixture(scope="module")
def pki() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context for localhost, client context trusting only its CA)."""
    ca = certs.create_ca("fasttls test CA")
    leaf = certs.issue_leaf(ca, "localhost")
    server = load_context(leaf.chain_pem, leaf.key_pem)
    with tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False) as f:
        f.write(ca.cert_pem)
    try:
        client = ssl.create_default_context(cafile=f.name)
    finally:
        os.unlink(f.name)
    return server, client


Handler = Callable[[TLSConn], Coroutine[Any, Any, None]]


async def _with_server(server_ctx: ssl.SSLContext, handler: Handler,
                       body: Callable[[int], Coroutine[Any, Any, None]]) -> None:
    async def serve_one(raw: FastStream) -> None:
        try:
            tls = await TLSConn.wrap(raw, server_ctx, server_side=True)
            await handler(tls)
        except (ssl.SSLError, anyio.EndOfStream, anyio.BrokenResourceError):
            pass
        finally:
            with anyio.CancelScope(shield=True):   # as Proxy.handle does
                await raw.aclose()
                await anyio.sleep(0.01)             # let the transport's close run before the loop ends

    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_tcp, 0, serve_one)
        await body(port)
        tg.cancel_scope.cancel()


def test_round_trip_large_payload_and_eof(pki: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = pki
    payload = os.urandom(3 * 1024 * 1024 + 17)   # many records, several socket reads

    async def echo(tls: TLSConn) -> None:
        got = bytearray()
        while len(got) < len(payload):
            got += await tls.receive(1 << 18)
        await tls.send_parts((b"%d\r\n" % len(got), bytes(got), b"\r\n"))

    async def body(port: int) -> None:
        raw = await connect("127.0.0.1", port)
        tls = await TLSConn.wrap(raw, client_ctx, server_side=False, hostname="localhost")
        assert tls.ssl_object.version() in ("TLSv1.2", "TLSv1.3")
        await tls.send(payload)
        want = b"%d\r\n" % len(payload) + payload + b"\r\n"
        got = bytearray()
        with anyio.fail_after(30):
            while len(got) < len(want):
                got += await tls.receive(65536)
            assert bytes(got) == want
            with pytest.raises(anyio.EndOfStream):   # the server closed without close_notify
                await tls.receive()
        await tls.aclose()

    anyio.run(_with_server, server_ctx, echo, body)


def test_wrong_host_name_fails_verification(pki: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = pki

    async def idle(tls: TLSConn) -> None:
        await tls.receive()

    async def body(port: int) -> None:
        raw = await connect("127.0.0.1", port)
        with pytest.raises(ssl.SSLCertVerificationError):
            await TLSConn.wrap(raw, client_ctx, server_side=False, hostname="example.com")
        await raw.aclose()

    anyio.run(_with_server, server_ctx, idle, body)


def test_stdlib_client_and_read_deadline(pki: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    """An ssl.SSLSocket client talks to a TLSConn server; a read deadline fails the wait with
    TimeoutError and leaves the session usable."""
    server_ctx, client_ctx = pki
    seen: list[str] = []

    async def handler(tls: TLSConn) -> None:
        raw = tls.raw
        assert isinstance(raw, FastStream)
        raw.deadline = raw.loop.time() + 0.2
        try:
            await tls.receive()
        except TimeoutError:
            seen.append("timeout")
        raw.deadline = None
        data = await tls.receive()
        await tls.send(data.upper())

    async def body(port: int) -> None:
        def client() -> bytes:
            import socket
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                with client_ctx.wrap_socket(s, server_hostname="localhost") as t:
                    import time
                    time.sleep(0.5)
                    t.sendall(b"hello")
                    return t.recv(100)
        answer = await anyio.to_thread.run_sync(client)
        assert answer == b"HELLO"

    anyio.run(_with_server, server_ctx, handler, body)
    assert seen == ["timeout"]


def test_concurrent_sessions_keep_their_own_bytes(pki: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    """Every connection of a thread reads through one scratch buffer (fastio, fasttls): many
    sessions interleaving small writes each get exactly their own bytes back, as `bytes`
    that stay intact while other connections read, and no read exceeds `max_bytes`."""
    server_ctx, client_ctx = pki
    sessions, size = 24, 96 * 1024
    payloads = [os.urandom(size) for _ in range(sessions)]
    bad: list[str] = []

    async def echo(tls: TLSConn) -> None:
        chunks: list[bytes] = []   # held until the end: a chunk aliasing the scratch would change
        n = 0
        while n < size:
            chunk = await tls.receive(5000)
            if type(chunk) is not bytes or len(chunk) > 5000:
                bad.append(f"{type(chunk).__name__} of {len(chunk)}")
            chunks.append(chunk)
            n += len(chunk)
            await anyio.sleep(0)
        await tls.send(b"".join(chunks))

    async def one(port: int, payload: bytes) -> None:
        raw = await connect("127.0.0.1", port)
        tls = await TLSConn.wrap(raw, client_ctx, server_side=False, hostname="localhost")
        for i in range(0, len(payload), 3000):
            await tls.send(payload[i:i + 3000])
            await anyio.sleep(0)
        got = bytearray()
        while len(got) < len(payload):
            got += await tls.receive(1 << 20)   # more than the scratch buffer: capped, not an error
        assert bytes(got) == payload
        await tls.aclose()

    async def body(port: int) -> None:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for p in payloads:
                    tg.start_soon(one, port, p)

    anyio.run(_with_server, server_ctx, echo, body)
    assert bad == []


def test_server_name_is_ascii() -> None:
    """SNI and the verified name: ASCII names as they are, others as IDNA A-labels (no anyio internals)."""
    from cordon.proxy.transport.fasttls import server_name

    assert server_name("api.openai.com") == "api.openai.com"
    assert server_name("bücher.example") == "xn--bcher-kva.example"
