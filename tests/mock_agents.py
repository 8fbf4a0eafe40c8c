"""Network-level mocks of the providers the coding agents call (tests/app/test_agents_e2e.py).

One loopback TLS server plays every host of a provider (a leaf per name, chosen by
the client's SNI), so one `[routes.upstream] address` serves a route that names
several hosts. Built on tests/mock_openai.py's HTTP handling; what differs per
provider is the answer:

    openai      POST /v1/responses, /v1/chat/completions (SSE or JSON), GET /v1/models
    anthropic   POST /v1/messages (SSE or JSON), POST /v1/messages/count_tokens
    gemini      POST /v1beta/models/M:generateContent, :streamGenerateContent (SSE with
                alt=sse, else a JSON array), :countTokens; GET /v1beta/models
    github      GET /copilot_internal/user, /user (api.github.com); on *.githubcopilot.com
                the OpenAI endpoints above under / and /v1, GET /models, /agents

The check is the same for all: every request carried the real key exactly once
(in a header or in the query string, wherever the client put its own), and the
placeholder nowhere (headers, target or body).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

import anyio.abc
import h11

from tests.mock_anthropic import message, message_events
from tests.mock_openai import PLACEHOLDER, MockOpenAI, Request, chat_chunks, json_payload, responses_events

REPLY = "Hello from the cordon mock upstream"


def gemini_response(reply: str, model: str) -> dict[str, Any]:
    return {"candidates": [{"content": {"role": "model", "parts": [{"text": reply}]},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 5, "totalTokenCount": 10},
            "modelVersion": model}


class MockProvider(MockOpenAI):
    """A provider's hosts on 127.0.0.1 (module docstring). `kind`: openai|anthropic|gemini|github."""

    def __init__(self, kind: str, hosts: Iterable[str], *, expected_key: str, reply: str = REPLY) -> None:
        self.kind = kind
        self.hosts = tuple(hosts)
        super().__init__(expected_key=expected_key, host=self.hosts[0], reply=reply, also=self.hosts[1:])

    # --- the check -------------------------------------------------------------------------
    def _authorized(self, req: Request) -> bool:
        where = [v for _, v in req.headers] + [unquote(req.path)]
        seen = sum(w.count(self.expected_key) for w in where)
        if seen == 1 and PLACEHOLDER not in "".join(where):
            return True
        self._state.failures.append(
            f"{req.method} {req.path.split('?')[0]}: real key seen {seen} times"
            + ("; the placeholder arrived" if PLACEHOLDER in "".join(where) else ""))
        return False

    def hosts_seen(self) -> set[str]:
        return {(r.header("host") or "").split(":")[0] for r in self.requests}

    # --- answers ---------------------------------------------------------------------------
    async def _respond(self, stream: anyio.abc.ByteStream, conn: h11.Connection, req: Request,
                       body: bytes) -> bool:
        self._state.requests.append(req)
        path = req.path.split("?", 1)[0]
        if not self._authorized(req):
            await self._send(stream, conn, 401, b'{"error":{"message":"mock: wrong key","code":401}}')
            return False
        payload = json_payload(body)
        model = str(payload.get("model") or "mock-model")
        answer = {"anthropic": self._anthropic, "gemini": self._gemini, "github": self._github}.get(self.kind)
        if answer is not None and await answer(stream, conn, req, path, payload, model):
            return False
        if await self._openai(stream, conn, req, path, payload, model):
            return False
        await self._send(stream, conn, 404, b'{"error":{"message":"mock: no such endpoint"}}')
        return False

    async def _json(self, stream: anyio.abc.ByteStream, conn: h11.Connection, obj: Any) -> bool:
        await self._send(stream, conn, 200, json.dumps(obj).encode())
        return True

    async def _openai(self, stream: anyio.abc.ByteStream, conn: h11.Connection, req: Request, path: str,
                      payload: dict[str, Any], model: str) -> bool:
        if req.method == "POST" and path.endswith("/responses"):
            events = responses_events(self.reply, model)
            if payload.get("stream"):
                await self._sse(stream, conn, [(e["type"], e) for e in events])
                return True
            return await self._json(stream, conn, events[-1]["response"])
        if req.method == "POST" and path.endswith("/chat/completions"):
            if payload.get("stream"):
                chunks = chat_chunks(self.reply, model)
                chunks[-1]["usage"] = {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
                await self._sse(stream, conn, [(None, c) for c in chunks], done=True)
                return True
            return await self._json(stream, conn, {
                "id": "chatcmpl-mock", "object": "chat.completion", "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": self.reply}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}})
        if path.endswith("/models"):
            return await self._json(stream, conn, {"object": "list", "data": [
                {"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "cordon-mock"}]})
        return False

    async def _anthropic(self, stream: anyio.abc.ByteStream, conn: h11.Connection, req: Request, path: str,
                         payload: dict[str, Any], model: str) -> bool:
        if req.method == "POST" and path.endswith("/v1/messages/count_tokens"):
            return await self._json(stream, conn, {"input_tokens": 10})
        if req.method == "POST" and path.endswith("/v1/messages"):
            if payload.get("stream"):
                await self._sse(stream, conn, list(message_events(self.reply, model)))
                return True
            return await self._json(stream, conn, message(self.reply, model))
        return False

    async def _gemini(self, stream: anyio.abc.ByteStream, conn: h11.Connection, req: Request, path: str,
                      payload: dict[str, Any], model: str) -> bool:
        name = path.rsplit("/", 1)[-1]
        model = name.split(":", 1)[0]
        if name.endswith(":countTokens"):
            return await self._json(stream, conn, {"totalTokens": 10})
        if name.endswith(":generateContent"):
            return await self._json(stream, conn, gemini_response(self.reply, model))
        if name.endswith(":streamGenerateContent"):
            if "alt=sse" in req.path:
                await self._sse(stream, conn, [(None, gemini_response(self.reply, model))])
                return True
            return await self._json(stream, conn, [gemini_response(self.reply, model)])
        if req.method == "GET" and path.rstrip("/").endswith("/models"):
            return await self._json(stream, conn, {"models": [{"name": "models/gemini-2.5-flash"}]})
        return False

    async def _github(self, stream: anyio.abc.ByteStream, conn: h11.Connection, req: Request, path: str,
                      payload: dict[str, Any], model: str) -> bool:
        host = (req.header("host") or "").split(":")[0]
        if host == "api.github.com":
            if path == "/copilot_internal/user":
                return await self._json(stream, conn, {
                    "login": "cordon-test", "copilot_plan": "individual", "chat_enabled": True,
                    "endpoints": {"api": "https://api.individual.githubcopilot.com",
                                  "proxy": "https://proxy.individual.githubcopilot.com",
                                  "telemetry": "https://telemetry.individual.githubcopilot.com"}})
            if path == "/user":
                return await self._json(stream, conn, {"login": "cordon-test", "id": 1, "type": "User"})
            return False
        if req.method == "GET" and path.rstrip("/").endswith("/models"):
            caps = {"family": "gpt-4o", "type": "chat", "tokenizer": "o200k_base",
                    "limits": {"max_context_window_tokens": 128000, "max_prompt_tokens": 64000,
                               "max_output_tokens": 4096},
                    "supports": {"streaming": True, "tool_calls": True}}
            return await self._json(stream, conn, {"data": [
                {"id": "gpt-4o-mini", "name": "GPT-4o mini", "object": "model", "vendor": "OpenAI",
                 "version": "gpt-4o-mini", "model_picker_enabled": True, "preview": False,
                 "capabilities": caps, "supported_endpoints": ["/chat/completions"],
                 "policy": {"state": "enabled"}}]})
        return False
