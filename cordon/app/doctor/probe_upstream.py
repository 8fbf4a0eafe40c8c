"""A throwaway local HTTPS upstream for `cordon doctor`'s live probes (no internet needed).

It stands behind a probe route: records each request's path and whether the
expected credential arrived (the proxy's injection worked), and answers what
each probing client needs: JSON for plain GETs, an empty ref list for git's
dumb-HTTP discovery, 426 for a WebSocket upgrade and a minimal Responses-API
event stream for the Codex CLI. Never logs header values.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import socket
import ssl
from dataclasses import dataclass, field

import anyio
from anyio.abc import SocketStream, TaskStatus
from anyio.streams.tls import TLSStream

from cordon.core.http1 import (
    MAX_HEAD,
    ChunkedDecoder,
    RequestHead,
    find_head_end,
    parse_request_head,
    request_framing,
    simple_response,
)
from cordon.proxy.transport.listen import serve, socket_stream


@dataclass
class ProbeLog:
    """(path, credential injected) for every request the upstream received."""

    hits: list[tuple[str, bool]] = field(default_factory=list)

    def injected_under(self, prefix: str) -> bool:
        return any(path.startswith(prefix) and injected for path, injected in self.hits)

    def seen_under(self, prefix: str) -> bool:
        return any(path.startswith(prefix) for path, _ in self.hits)


def _sse(text: str) -> bytes:
    """The Responses-API stream the Codex CLI accepts (reference/clients.md): one message."""
    item = {"type": "message", "id": "msg_probe", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}
    resp = {"id": "resp_probe", "object": "response", "status": "in_progress", "output": []}
    done = dict(resp, status="completed", output=[item],
                usage={"input_tokens": 1, "output_tokens": 1, "total_tokens": 2,
                       "input_tokens_details": {"cached_tokens": 0},
                       "output_tokens_details": {"reasoning_tokens": 0}})
    events: list[tuple[str, dict[str, object]]] = [
        ("response.created", {"response": resp}),
        ("response.in_progress", {"response": resp}),
        ("response.output_item.added", {"output_index": 0, "item": dict(item, status="in_progress", content=[])}),
        ("response.content_part.added", {"item_id": "msg_probe", "output_index": 0, "content_index": 0,
                                         "part": {"type": "output_text", "text": "", "annotations": []}}),
        ("response.output_text.delta", {"item_id": "msg_probe", "output_index": 0, "content_index": 0,
                                        "delta": text}),
        ("response.output_text.done", {"item_id": "msg_probe", "output_index": 0, "content_index": 0,
                                       "text": text}),
        ("response.content_part.done", {"item_id": "msg_probe", "output_index": 0, "content_index": 0,
                                        "part": {"type": "output_text", "text": text, "annotations": []}}),
        ("response.output_item.done", {"output_index": 0, "item": item}),
        ("response.completed", {"response": done}),
    ]
    out = b""
    for seq, (name, data) in enumerate(events):
        payload: dict[str, object] = {**data, "type": name, "sequence_number": seq}
        out += f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode()
    return out


def _answer(method: str, path: str, upgrade: bool, injected: bool) -> tuple[int, str, bytes]:
    if upgrade:
        return 426, "text/plain", b"no websocket here\n"       # Codex then falls back to HTTPS at once
    if path.split("?", 1)[0].endswith("/info/refs"):
        return 200, "text/plain", b""                           # git dumb HTTP: an empty repository
    if method == "POST" and path.split("?", 1)[0].endswith("/responses"):
        return 200, "text/event-stream", _sse("cordon doctor probe ok")
    return 200, "application/json", json.dumps({"cordon_probe": "ok", "injected": injected}).encode()


async def _read_request(tls: TLSStream) -> tuple[RequestHead, bytes] | None:
    """One request head and its whole body (None: the client left first)."""
    buf = bytearray()
    while (end := find_head_end(buf)) < 0:
        if len(buf) > MAX_HEAD:
            return None
        try:
            buf += await tls.receive(65536)
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return None
    req = parse_request_head(bytes(buf[:end]))
    framing, rest = request_framing(req), bytes(buf[end:])
    if framing.kind == "length":
        while len(rest) < framing.length:
            rest += await tls.receive(65536)
        return req, rest[:framing.length]
    if framing.kind == "chunked":
        dec = ChunkedDecoder()
        body = dec.feed(rest)
        while not dec.done:
            body += dec.feed(await tls.receive(65536))
        return req, body
    return req, b""


async def _handle(stream: SocketStream, ctx: ssl.SSLContext, header: bytes, expected: bytes,
                  log: ProbeLog) -> None:
    # one broken probe connection must not stop the others; the socket is closed whatever happens
    # (a refused handshake included: a client that refused cordon's certificate is the usual case)
    with contextlib.suppress(Exception):
        async with stream, await TLSStream.wrap(stream, server_side=True, ssl_context=ctx,
                                                standard_compatible=False) as tls:
            got = await _read_request(tls)
            if got is None:
                return
            req, _body = got
            injected = hmac.compare_digest(req.get(header) or b"", expected)
            path = req.target.decode("latin-1")
            log.hits.append((path, injected))
            status, ctype, body = _answer(req.method.decode(), path, req.get(b"upgrade") is not None, injected)
            await tls.send(simple_response(status, body, content_type=ctype.encode(), close=True))


async def serve_probe_upstream(ctx: ssl.SSLContext, header: str, expected: str, log: ProbeLog, *,
                               task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
    """Serve TLS on a free 127.0.0.1 port until cancelled; report the port via `task_status`.

    Cancelled as soon as every verdict is in, often while agents still connect: the connections
    are accepted so that none is lost to that cancellation (cordon.proxy.transport.listen)."""
    lsock = socket.create_server(("127.0.0.1", 0))
    hname, want = header.lower().encode("latin-1"), expected.encode("latin-1")

    async def handler(csock: socket.socket) -> None:
        stream = await socket_stream(csock)
        if stream is not None:
            await _handle(stream, ctx, hname, want, log)

    with lsock:
        task_status.started(lsock.getsockname()[1])
        await serve(lsock, handler)
