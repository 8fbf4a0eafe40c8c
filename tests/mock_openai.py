"""A network-level mock of the OpenAI API for end-to-end tests (Codex CLI, curl, SDKs, Node).

HTTPS on 127.0.0.1 with a certificate for `api.openai.com` from a throwaway CA
(`ca_file`), so cordon reaches it through `[routes.upstream] address` and
`ca_file` while Host, SNI and the certificate check stay at the real name.
It runs in a background event-loop thread (an anyio blocking portal).

    with MockOpenAI(expected_key="sk-real") as mock:
        mock.address, mock.ca_file, mock.reply
        mock.requests        # every request: method, path, headers, body
        mock.check()         # raises unless every request carried exactly the real key

Served:
    POST /v1/responses         stream=true: the SSE event sequence the Codex CLI accepts
                               (response.created ... response.completed); else a JSON response
    POST /v1/chat/completions  stream=true: chat.completion.chunk events then [DONE]; else JSON
    GET  /v1/models            a one-model list
    a WebSocket upgrade        426 (ws="426", the default: Codex falls back to HTTPS at once)
                               or served (ws="serve"): 101, then for each `response.create`
                               text message the same events as SSE, one per text frame
A request whose Authorization is not `Bearer <expected_key>` gets 401 and is recorded
as a failure (the placeholder above all).
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import h11

from tests.upstream import (
    WS_GUID,
    LoopbackServer,
    send_events,
    send_response,
    serve_requests,
    sse_event,
    str_headers,
    ws_frame,
)

PLACEHOLDER = "dummy-replaced-by-cordon"


@dataclass
class Request:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


@dataclass
class _State:
    requests: list[Request] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    ws_messages: list[str] = field(default_factory=list)


def responses_events(reply: str, model: str = "gpt-mock") -> list[dict[str, Any]]:
    """The Responses API streaming events for one assistant message saying `reply`."""
    rid, mid, now = "resp_mock1", "msg_mock1", int(time.time())
    base = {"id": rid, "object": "response", "created_at": now, "model": model, "output": [],
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "error": None,
            "incomplete_details": None, "instructions": None, "metadata": {}, "temperature": 1.0,
            "top_p": 1.0}
    item_open = {"id": mid, "type": "message", "status": "in_progress", "role": "assistant", "content": []}
    part = {"type": "output_text", "text": reply, "annotations": []}
    item_done = {"id": mid, "type": "message", "status": "completed", "role": "assistant", "content": [part]}
    usage = {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 3,
             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 15}
    words = reply.split(" ")
    deltas = [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
    ev: list[dict[str, Any]] = [
        {"type": "response.created", "response": {**base, "status": "in_progress"}},
        {"type": "response.in_progress", "response": {**base, "status": "in_progress"}},
        {"type": "response.output_item.added", "output_index": 0, "item": item_open},
        {"type": "response.content_part.added", "item_id": mid, "output_index": 0, "content_index": 0,
         "part": {"type": "output_text", "text": "", "annotations": []}},
        *({"type": "response.output_text.delta", "item_id": mid, "output_index": 0, "content_index": 0,
           "delta": d, "logprobs": []} for d in deltas),
        {"type": "response.output_text.done", "item_id": mid, "output_index": 0, "content_index": 0,
         "text": reply, "logprobs": []},
        {"type": "response.content_part.done", "item_id": mid, "output_index": 0, "content_index": 0, "part": part},
        {"type": "response.output_item.done", "output_index": 0, "item": item_done},
        {"type": "response.completed",
         "response": {**base, "status": "completed", "output": [item_done], "usage": usage}},
    ]
    for i, e in enumerate(ev):
        e["sequence_number"] = i
    return ev


def json_payload(body: bytes) -> dict[str, Any]:
    """A request body's JSON object ({} when there is none, or it is not a JSON object)."""
    try:
        payload = json.loads(body) if body else {}
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def chat_chunks(reply: str, model: str = "gpt-mock") -> list[dict[str, Any]]:
    now = int(time.time())
    head = {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": now, "model": model}
    out = [{**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
    out += [{**head, "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]}
            for w in reply.split(" ") for w in (w + " ",)]
    out.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return out


class MockOpenAI(LoopbackServer):
    def __init__(self, *, expected_key: str, host: str = "api.openai.com", ws: str = "426",
                 reply: str = "Hello from the cordon mock upstream", also: tuple[str, ...] = ()) -> None:
        assert ws in ("426", "serve")
        super().__init__(host, also=also)
        self.expected_key = expected_key
        self.ws = ws
        self.reply = reply
        self._state = _State()

    @property
    def requests(self) -> list[Request]:
        return list(self._state.requests)

    @property
    def failures(self) -> list[str]:
        return list(self._state.failures)

    @property
    def ws_messages(self) -> list[str]:
        return list(self._state.ws_messages)

    def check(self) -> None:
        """Every request carried exactly the real key; the placeholder never arrived."""
        assert self._state.requests, "the mock received no request"
        assert not self._state.failures, self._state.failures
        for r in self._state.requests:
            raw = json.dumps(r.headers) + r.body.decode("utf-8", "replace")
            assert PLACEHOLDER not in raw, f"placeholder reached the upstream: {r.method} {r.path}"

    # --- HTTP ----------------------------------------------------------------------------------

    async def serve_connection(self, stream: anyio.abc.ByteStream, sock: anyio.abc.SocketStream,
                               conn_id: int) -> None:
        async def answer(conn: h11.Connection, head: h11.Request, body: bytes) -> bool:
            req = Request(head.method.decode(), head.target.decode(), str_headers(head), body)
            return await self._respond(stream, conn, req, body)     # True: upgraded to a WebSocket
        await serve_requests(stream, answer)

    def _authorized(self, req: Request) -> bool:
        got = req.header("authorization")
        if got == f"Bearer {self.expected_key}":
            return True
        self._state.failures.append(f"{req.method} {req.path}: Authorization was "
                                    + ("the placeholder" if got and PLACEHOLDER in got else
                                       "missing" if got is None else "some other value"))
        return False

    async def _send(self, stream: anyio.abc.ByteStream, conn: h11.Connection, status: int,
                    body: bytes, ctype: str = "application/json") -> None:
        await send_response(stream, conn, status, body, ctype)

    async def _respond(self, stream: anyio.abc.ByteStream, conn: h11.Connection, req: Request,
                       body: bytes) -> bool:
        self._state.requests.append(req)
        path = req.path.split("?", 1)[0]
        if not self._authorized(req):
            err = {"error": {"message": "mock: wrong key", "type": "invalid_request_error", "code": "invalid_api_key"}}
            await self._send(stream, conn, 401, json.dumps(err).encode())
            return False
        if (req.header("upgrade") or "").lower() == "websocket":
            if self.ws == "426":
                # the answer the Codex CLI takes as "use HTTPS instead" at once (clients.md)
                await self._send(stream, conn, 426, b'{"error":{"message":"upgrade required"}}')
                return False
            await self._serve_ws(stream, conn, req)
            return True
        payload = json_payload(body)
        model = str(payload.get("model") or "gpt-mock")
        if req.method == "POST" and path.endswith("/responses"):
            events = responses_events(self.reply, model)
            if payload.get("stream"):
                await self._sse(stream, conn, [(e["type"], e) for e in events])
            else:
                await self._send(stream, conn, 200, json.dumps(events[-1]["response"]).encode())
            return False
        if req.method == "POST" and path.endswith("/chat/completions"):
            if payload.get("stream"):
                await self._sse(stream, conn, [(None, c) for c in chat_chunks(self.reply, model)], done=True)
            else:
                obj = {"id": "chatcmpl-mock", "object": "chat.completion", "created": int(time.time()),
                       "model": model, "choices": [{"index": 0, "finish_reason": "stop",
                                                    "message": {"role": "assistant", "content": self.reply}}],
                       "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}}
                await self._send(stream, conn, 200, json.dumps(obj).encode())
            return False
        if path.endswith("/models"):
            obj = {"object": "list", "data": [{"id": "gpt-mock", "object": "model", "created": 0,
                                               "owned_by": "cordon-mock"}]}
            await self._send(stream, conn, 200, json.dumps(obj).encode())
            return False
        await self._send(stream, conn, 404, b'{"error":{"message":"mock: no such endpoint"}}')
        return False

    async def _sse(self, stream: anyio.abc.ByteStream, conn: h11.Connection,
                   events: list[tuple[str | None, dict[str, Any]]], done: bool = False) -> None:
        texts = [sse_event(data, name) for name, data in events]
        await send_events(stream, conn, [*texts, "data: [DONE]\n\n"] if done else texts)

    # --- WebSocket (served mode) ---------------------------------------------------------------

    async def _serve_ws(self, stream: anyio.abc.ByteStream, conn: h11.Connection, req: Request) -> None:
        key = (req.header("sec-websocket-key") or "").encode()

        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()
        resp = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode()
        await stream.send(resp)
        buf = bytes(conn.trailing_data[0])
        while True:
            frame = await _read_frame(stream, buf)
            if frame is None:
                return
            opcode, payload, buf = frame
            if opcode == 0x8:                       # close: echo it, then end
                await stream.send(ws_frame(0x8, payload[:2]))
                return
            if opcode == 0x9:
                await stream.send(ws_frame(0xA, payload))
                continue
            if opcode != 0x1:
                continue
            text = payload.decode("utf-8", "replace")
            self._state.ws_messages.append(text)
            try:
                msg = json.loads(text)
            except ValueError:
                continue
            if msg.get("type") == "response.create":
                for e in responses_events(self.reply, str(msg.get("model") or "gpt-mock")):
                    await stream.send(ws_frame(0x1, json.dumps(e).encode()))


async def _read_frame(stream: anyio.abc.ByteStream, buf: bytes) -> tuple[int, bytes, bytes] | None:
    """One client frame (masked; permessage-deflate is never negotiated), or None at EOF."""
    async def need(n: int) -> bool:
        nonlocal buf
        while len(buf) < n:
            try:
                buf += await stream.receive(65536)
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return False
        return True
    if not await need(2):
        return None
    b0, b1 = buf[0], buf[1]
    n, off = b1 & 0x7F, 2
    if n == 126:
        if not await need(4):
            return None
        n, off = struct.unpack("!H", buf[2:4])[0], 4
    elif n == 127:
        if not await need(10):
            return None
        n, off = struct.unpack("!Q", buf[2:10])[0], 10
    masked = bool(b1 & 0x80)
    total = off + (4 if masked else 0) + n
    if not await need(total):
        return None
    mask = buf[off:off + 4] if masked else b"\0\0\0\0"
    start = off + (4 if masked else 0)
    payload = bytes(c ^ mask[i % 4] for i, c in enumerate(buf[start:total]))
    return b0 & 0x0F, payload, buf[total:]
