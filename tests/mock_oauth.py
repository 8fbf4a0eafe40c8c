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

import http
import json
import ssl
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import h11
from anyio.from_thread import start_blocking_portal
from anyio.streams.tls import TLSListener

from cordon.core import certs
from tests.mock_openai import responses_events
from tests.oauth_fixtures import codex_access


@dataclass
class Req:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def raw(self) -> str:
        return json.dumps(self.headers) + self.body.decode("latin-1")


@dataclass
class Reply:
    status: int
    body: bytes = b""
    ctype: str = "application/json"
    sse: list[str] | None = None        # SSE event texts, sent one by one


Handler = Callable[[Req], Reply]


class MockService:
    """One HTTPS host on 127.0.0.1 answering through `handler`; records every request."""

    def __init__(self, host: str, ca: certs.CA, tmp: Path, handler: Handler, also: tuple[str, ...] = ()) -> None:
        self.host = host
        self.handler = handler
        self.requests: list[Req] = []
        self._lock = threading.Lock()
        ctxs = {h: self._context(ca, tmp, h) for h in (host, *also)}
        self._ctx = ctxs[host]

        def by_name(sslobj: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
            if name in ctxs:
                sslobj.context = ctxs[name]
        self._ctx.sni_callback = by_name   # type: ignore[assignment]
        self.port = 0

    @staticmethod
    def _context(ca: certs.CA, tmp: Path, host: str) -> ssl.SSLContext:
        leaf = certs.issue_leaf(ca, host)
        chain, key = tmp / f"{host}-chain.pem", tmp / f"{host}-key.pem"
        chain.write_bytes(leaf.chain_pem)
        key.write_bytes(leaf.key_pem)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(chain, key)
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def serve(self, *, task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
        async with TLSListener(listener, self._ctx, standard_compatible=False) as tls:
            task_status.started(port)
            await tls.serve(self._handle)

    async def _handle(self, stream: anyio.abc.ByteStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                req = await self._read(stream, conn)
                if req is None:
                    return
                with self._lock:
                    self.requests.append(req)
                reply = self.handler(req)
                await self._send(stream, conn, reply)
                if conn.our_state is h11.MUST_CLOSE or req.header("upgrade"):
                    return
                try:
                    conn.start_next_cycle()
                except h11.LocalProtocolError:
                    return
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, h11.ProtocolError,
                ssl.SSLError, OSError):
            return
        finally:
            await stream.aclose()

    async def _read(self, stream: anyio.abc.ByteStream, conn: h11.Connection) -> Req | None:
        req: Req | None = None
        body = b""
        while True:
            ev = conn.next_event()
            if ev is h11.NEED_DATA:
                try:
                    data = await stream.receive(65536)
                except anyio.EndOfStream:
                    data = b""
                conn.receive_data(data)
                if not data and req is None:
                    return None
                continue
            if isinstance(ev, h11.Request):
                req = Req(ev.method.decode(), ev.target.decode(),
                          [(k.decode(), v.decode()) for k, v in ev.headers.raw_items()])
                if req.header("upgrade"):
                    return req
            elif isinstance(ev, h11.Data):
                body += bytes(ev.data)
            elif isinstance(ev, h11.EndOfMessage):
                assert req is not None
                req.body = body
                return req
            else:
                return None

    async def _send(self, stream: anyio.abc.ByteStream, conn: h11.Connection, r: Reply) -> None:
        reason = http.HTTPStatus(r.status).phrase.encode()
        if r.sse is not None:
            await stream.send(conn.send(h11.Response(status_code=r.status, reason=reason, headers=[
                ("content-type", "text/event-stream"), ("cache-control", "no-cache")])) or b"")
            for ev in r.sse:
                await stream.send(conn.send(h11.Data(data=ev.encode())) or b"")
            await stream.send(conn.send(h11.EndOfMessage()) or b"")
            return
        headers = [("content-type", r.ctype), ("content-length", str(len(r.body)))]
        if r.status == 426:
            headers.append(("connection", "close"))
        await stream.send(conn.send(h11.Response(status_code=r.status, reason=reason, headers=headers)) or b"")
        await stream.send(conn.send(h11.Data(data=r.body)) or b"")
        await stream.send(conn.send(h11.EndOfMessage()) or b"")


def claude_events(reply: str, model: str = "claude-mock") -> list[str]:
    def ev(name: str, data: dict[str, Any]) -> str:
        return f"event: {name}\ndata: {json.dumps(data)}\n\n"
    msg: dict[str, Any] = {"id": "msg_mock1", "type": "message", "role": "assistant", "model": model, "content": [],
           "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 1}}
    return [ev("message_start", {"type": "message_start", "message": msg}),
            ev("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}}),
            ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                       "delta": {"type": "text_delta", "text": reply}}),
            ev("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ev("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                                     "stop_sequence": None},
                                 "usage": {"output_tokens": 5}}),
            ev("message_stop", {"type": "message_stop"})]


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
        self.api = MockService(api_host, self.ca, tmp, self._api, also=also)
        self.token = MockService(token_host, self.ca, tmp, self._token)
        self._lock = threading.Lock()
        self._portal_cm: Any = None
        self._futures: list[Any] = []

    def __enter__(self) -> MockProvider:
        self._portal_cm = start_blocking_portal()
        portal = self._portal_cm.__enter__()
        for svc in (self.api, self.token):
            fut, svc.port = portal.start_task(svc.serve)
            self._futures.append(fut)
        return self

    def __exit__(self, *exc: object) -> None:
        for f in self._futures:
            f.cancel()
        self._portal_cm.__exit__(None, None, None)
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
    def _token(self, req: Req) -> Reply:
        try:
            body = json.loads(req.body)
        except ValueError:
            body = {}
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
    def _api(self, req: Req) -> Reply:
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
                return Reply(200, sse=[f"event: {e['type']}\ndata: {json.dumps(e)}\n\n"
                                       for e in responses_events(self.reply)])
            return Reply(404, b'{"detail":"mock: not found"}')
        if req.method == "POST" and path == "/v1/messages":
            try:
                stream = json.loads(req.body).get("stream")
            except ValueError:
                stream = False
            if stream:
                return Reply(200, sse=claude_events(self.reply))
            return Reply(200, json.dumps({"id": "msg_mock1", "type": "message", "role": "assistant",
                                          "model": "claude-mock", "stop_reason": "end_turn",
                                          "content": [{"type": "text", "text": self.reply}],
                                          "usage": {"input_tokens": 10, "output_tokens": 5}}).encode())
        return Reply(404, b'{"type":"error","error":{"type":"not_found_error","message":"mock"}}')
