"""Network-level mocks of the subscription services: each provider's model API and token endpoint.

Each `MockProvider` runs two HTTPS servers on 127.0.0.1 (certificates for the
real names from a throwaway CA): the API host (chatgpt.com or api.anthropic.com)
and the token host (auth.openai.com or platform.claude.com). cordon reaches them
through `[routes.upstream]` overrides of the login's routes. The token endpoint
rotates: a refresh with the current refresh token gets a new pair; a used one
is "reuse" and revokes the whole family (as both providers do). The API answers
401 unless the request carries the current access token.

    with MockProvider("codex", access=A, refresh=R) as m:
        m.api.address, m.token.address, m.ca_file
        m.refreshes            # refresh tokens the token endpoint received, in order
        m.api.requests         # every request (method, path, headers, body)
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import h11

from cordon.core import certs
from tests.mock_anthropic import message, message_events
from tests.mock_openai import json_payload, responses_events
from tests.oauth_fixtures import codex_access
from tests.upstream import (
    LoopbackServer,
    Recorded,
    send_events,
    send_response,
    serve_requests,
    sni_of,
    sse_event,
    str_headers,
)


@dataclass
class Reply:
    status: int
    body: bytes = b""
    ctype: str = "application/json"
    sse: list[str] | None = None        # SSE event texts, sent one by one


Handler = Callable[[Recorded], Reply]


class MockService(LoopbackServer):
    """One HTTPS host (and the names in `also`) on 127.0.0.1 answering through `handler`; records
    every request."""

    def __init__(self, host: str, ca: certs.CA, handler: Handler, also: tuple[str, ...] = ()) -> None:
        super().__init__(host, ca=ca, also=also)
        self.handler = handler
        self.requests: list[Recorded] = []

    async def serve_connection(self, stream: anyio.abc.ByteStream, sock: anyio.abc.SocketStream,
                               conn_id: int) -> None:
        async def answer(conn: h11.Connection, head: h11.Request, body: bytes) -> bool:
            req = Recorded(conn_id, head.method.decode(), head.target.decode(), str_headers(head), body,
                           sni_of(stream))
            with self._lock:
                self.requests.append(req)
            r = self.handler(req)
            if r.sse is not None:
                await send_events(stream, conn, r.sse)
            else:
                await send_response(stream, conn, r.status, r.body, r.ctype,
                                    [("connection", "close")] if r.status == 426 else [])
            return bool(req.header("upgrade"))
        await serve_requests(stream, answer)


@dataclass
class _Family:
    access: str
    refresh: str
    used: set[str] = field(default_factory=set)
    revoked: bool = False


class MockProvider:
    """The API host and the token host of one provider, sharing one rotating token family."""

    def __init__(self, name: str, *, access: str, refresh: str, reply: str = "Hello from the subscription mock",
                 workspace_origin: str | None = None, account_id: str = "") -> None:
        self.name = name
        self.reply = reply
        self.workspace_origin = workspace_origin
        self.account_id = account_id
        self.family = _Family(access, refresh)
        self.refreshes: list[str] = []           # the refresh tokens received, in order
        self.fail_next: list[int] = []           # statuses the API answers next, whatever the token
        self._n = 0
        self._tmp = tempfile.TemporaryDirectory(prefix="cordon-oauth-mock-")
        tmp = Path(self._tmp.name)
        self.ca = certs.create_ca("cordon test upstream CA")
        self.ca_file = tmp / "upstream-ca.pem"
        self.ca_file.write_bytes(self.ca.cert_pem)
        api_host, token_host = (("chatgpt.com", "auth.openai.com") if name == "codex"
                                else ("api.anthropic.com", "platform.claude.com"))
        also = (workspace_origin[8:].split("/")[0],) if workspace_origin else ()
        self.api = MockService(api_host, self.ca, self._api, also=also)
        self.token = MockService(token_host, self.ca, self._token)
        self._lock = threading.Lock()

    def __enter__(self) -> MockProvider:
        self.api.start()
        self.token.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.api.stop()
        self.token.stop()
        self._tmp.cleanup()

    def route_overrides(self) -> str:
        """TOML for the login's two routes, pointed at these mocks."""
        api, auth = (("codex", "codex-auth") if self.name == "codex" else ("claude", "claude-auth"))
        out = ""
        for rname, svc, role in ((api, self.api, "api"), (auth, self.token, "auth")):
            out += (f'[[routes]]\nname = "{rname}"\n[routes.match]\nhost = "{svc.host}"\n'
                    f'[routes.auth]\ntype = "login"\nlogin = "{self.name}"\nrole = "{role}"\n'
                    f'[routes.upstream]\naddress = "{svc.address}"\nca_file = "{self.ca_file}"\n\n')
        return out

    # -- the token endpoint ------------------------------------------------------------
    def _token(self, req: Recorded) -> Reply:
        body = json_payload(req.body)
        if req.method != "POST" or body.get("grant_type") != "refresh_token":
            return Reply(404, b'{"error":"mock: not here"}')
        rt = str(body.get("refresh_token"))
        with self._lock:
            self.refreshes.append(rt)
            f = self.family
            if f.revoked or rt in f.used:
                f.revoked = True               # reuse: the whole family is gone
                code = "refresh_token_reused" if self.name == "codex" else "invalid_grant"
                return Reply(400 if self.name == "claude" else 401, json.dumps({"error": code}).encode())
            if rt != f.refresh:
                return Reply(400, b'{"error":"invalid_grant"}')
            self._n += 1
            f.used.add(rt)
            f.refresh = f"{'rt' if self.name == 'codex' else 'sk-ant-ort01'}-ROTATED-{self._n}"
            if self.name == "codex":
                f.access = codex_access(tag=f"rotated-{self._n}")
                answer: dict[str, Any] = {"access_token": f.access, "refresh_token": f.refresh}
            else:
                f.access = f"sk-ant-oat01-ROTATED-{self._n}"
                answer = {"token_type": "Bearer", "access_token": f.access, "refresh_token": f.refresh,
                          "expires_in": 28800, "scope": "user:inference user:profile"}
        return Reply(200, json.dumps(answer).encode())

    # -- the model API -----------------------------------------------------------------
    def _api(self, req: Recorded) -> Reply:
        with self._lock:
            forced = self.fail_next.pop(0) if self.fail_next else None
            ok = not self.family.revoked and req.header("authorization") == f"Bearer {self.family.access}"
        if forced is not None:
            return Reply(forced, b'{"error":{"message":"mock: forced"}}')
        if not ok:
            return Reply(401, b'{"error":{"message":"mock: not the current access token"}}')
        if req.header("upgrade"):
            return Reply(426, b'{"error":{"message":"upgrade required"}}')
        path = req.path
        if self.name == "codex":
            if path == "/backend-api/wham/accounts/check":
                origin = self.workspace_origin or "https://chatgpt.com"
                acct = {"id": self.account_id, "account_user_role": "account-owner", "structure": "personal",
                        "plan_type": "pro", "is_zdr": False, "is_openai_internal": False,
                        "workspace_backend_origin": origin, "account_routing_override": "NO_CONSTRAINT"}
                return Reply(200, json.dumps({"accounts": [acct], "default_account_id": self.account_id,
                                              "account_ordering": [self.account_id]}).encode())
            if req.method == "POST" and path.endswith("/codex/responses"):
                return Reply(200, sse=[sse_event(e, e["type"]) for e in responses_events(self.reply)])
            return Reply(404, b'{"detail":"mock: not found"}')
        if req.method == "POST" and path == "/v1/messages":
            if json_payload(req.body).get("stream"):
                events = message_events(self.reply, "claude-mock")
                return Reply(200, sse=[sse_event(data, name) for name, data in events])
            return Reply(200, json.dumps(message(self.reply, "claude-mock")).encode())
        return Reply(404, b'{"type":"error","error":{"type":"not_found_error","message":"mock"}}')
