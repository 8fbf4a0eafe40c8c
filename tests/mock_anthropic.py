"""A network-level mock of the Anthropic API for end-to-end tests (Claude Code).

Same shape as tests/mock_openai.py (HTTPS on 127.0.0.1, a certificate for
`api.anthropic.com` from a throwaway CA in `ca_file`), with Anthropic's auth:
`x-api-key: <expected_key>` on every request, else 401 and a recorded failure.

Served:
    POST /v1/messages               stream=true: the Messages API event sequence
                                    (message_start ... message_stop); else one message JSON
    POST /v1/messages/count_tokens  {"input_tokens": 5}
    anything else (Claude Code's settings, bootstrap, telemetry)   200 {}
"""

from __future__ import annotations

import json
from typing import Any

import anyio.abc
import h11

from tests.mock_openai import PLACEHOLDER, MockOpenAI, Request, json_payload


def message(reply: str, model: str) -> dict[str, Any]:
    return {"id": "msg_mock", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": reply}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": 5}}


def message_events(reply: str, model: str) -> list[tuple[str, dict[str, Any]]]:
    start = {**message("", model), "content": [], "stop_reason": None}
    return [
        ("message_start", {"type": "message_start", "message": start}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": reply}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": {"output_tokens": 5}}),
        ("message_stop", {"type": "message_stop"}),
    ]


class MockAnthropic(MockOpenAI):
    def __init__(self, *, expected_key: str, reply: str = "Hello from the cordon mock upstream") -> None:
        super().__init__(expected_key=expected_key, host="api.anthropic.com", reply=reply)

    def _authorized(self, req: Request) -> bool:
        got = req.header("x-api-key")
        if got == self.expected_key:
            return True
        self._state.failures.append(f"{req.method} {req.path}: x-api-key was "
                                    + ("the placeholder" if got == PLACEHOLDER else
                                       "missing" if got is None else "some other value"))
        return False

    async def _respond(self, stream: anyio.abc.ByteStream, conn: h11.Connection, req: Request,
                       body: bytes) -> bool:
        self._state.requests.append(req)
        path = req.path.split("?", 1)[0]
        if not self._authorized(req):
            err = {"type": "error", "error": {"type": "authentication_error", "message": "mock: wrong key"}}
            await self._send(stream, conn, 401, json.dumps(err).encode())
            return False
        payload = json_payload(body)
        model = str(payload.get("model") or "claude-mock")
        if req.method == "POST" and path == "/v1/messages":
            if payload.get("stream"):
                await self._sse(stream, conn, [(name, data) for name, data in message_events(self.reply, model)])
            else:
                await self._send(stream, conn, 200, json.dumps(message(self.reply, model)).encode())
            return False
        if path == "/v1/messages/count_tokens":
            await self._send(stream, conn, 200, b'{"input_tokens": 5}')
            return False
        await self._send(stream, conn, 200, b"{}")
        return False
