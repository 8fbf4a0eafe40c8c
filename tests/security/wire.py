"""Raw-socket helpers for adversarial tests: a proxy in front of a recording upstream.

`Scene` bundles a route upstream (`api.openai.com`), a proxy with short timeouts,
raw and TLS-inside-CONNECT sockets, a response reader that does not trust the
peer, and the two checks every adversarial test ends with: a well-behaved client
still gets a correct, injected answer, and neither the secret nor the proxy
token appears in any response the attacker saw or any log line.
"""

from __future__ import annotations

import base64
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from cordon.core.model import Policy, Route
from cordon.proxy.forward import Timeouts
from tests.proxy_harness import PLACEHOLDER, SECRET, TOKEN, RunningProxy, running_proxy
from tests.upstream import UpstreamServer

HOST = "api.openai.com"
FAST = Timeouts(connect=3.0, handshake=2.0, head=1.0, idle=2.0, response=3.0, read=2.0)
SECRET_FORMS = (SECRET, TOKEN, base64.b64encode(f"cordon:{TOKEN}".encode()).decode())


def proxy_auth_line(token: str = TOKEN) -> bytes:
    return b"Proxy-Authorization: Basic " + base64.b64encode(f"cordon:{token}".encode()) + b"\r\n"


@dataclass
class Response:
    status: int
    head: bytes
    body: bytes
    closed: bool           # the peer closed the connection after this response

    def header(self, name: str) -> str | None:
        for line in self.head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == name.lower().encode():
                return v.strip().decode("latin-1")
        return None


def recv_response(s: socket.socket, *, timeout: float = 10.0) -> Response | None:
    """One response (head + Content-Length body) or None if the peer closed without one."""
    s.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, ssl.SSLError, OSError):
            chunk = b""
        if not chunk:
            return None if not buf else Response(0, buf, b"", True)
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    r = Response(status, head, rest, False)
    n = int(r.header("content-length") or 0)
    while len(r.body) < n:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, ssl.SSLError, OSError):
            chunk = b""
        if not chunk:
            r.closed = True
            break
        r.body += chunk
    if (r.header("connection") or "").lower() == "close":
        r.closed = True
    return r


@dataclass
class Scene:
    up: UpstreamServer
    px: RunningProxy
    caplog: pytest.LogCaptureFixture
    seen: list[bytes] = field(default_factory=list)
    _socks: list[socket.socket] = field(default_factory=list)

    # -- sockets ---------------------------------------------------------------------------------
    def raw(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.px.port), timeout=10)
        self._socks.append(s)
        return s

    def tunnel(self, host: str = HOST, *, sni: str | None = None, port: int = 443) -> ssl.SSLSocket:
        """CONNECT host:port, then TLS to cordon's leaf (SNI `sni`, default the host)."""
        s = self.raw()
        s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n".encode() + proxy_auth_line()
                  + b"\r\n")
        r = recv_response(s)
        assert r is not None and r.status == 200, r
        ctx = ssl.create_default_context(cafile=str(self.px.ca_file))
        ctx.check_hostname = False
        t = ctx.wrap_socket(s, server_hostname=sni or host)
        self._socks.append(t)
        return t

    def send(self, s: socket.socket, data: bytes) -> Response | None:
        s.sendall(data)
        r = recv_response(s)
        if r is not None:
            self.seen.append(r.head + b"\r\n\r\n" + r.body)
        return r

    def client(self) -> httpx.Client:
        ctx = ssl.create_default_context(cafile=str(self.px.ca_file))
        return httpx.Client(proxy=self.px.url, verify=ctx, timeout=20)

    # -- the closing checks ------------------------------------------------------------------------
    def healthy(self) -> None:
        """A well-behaved client still gets a correct, injected answer."""
        before = len(self.up.requests)
        with self.client() as c:
            r = c.post(f"https://{HOST}/v1/healthy", content=b"ping",
                       headers={"Authorization": f"Bearer {PLACEHOLDER}"})
        assert r.status_code == 200, r.text
        assert r.json()["body_bytes"] == 4
        rec = self.up.requests[-1]
        assert len(self.up.requests) == before + 1
        assert rec.header_all("authorization") == [f"Bearer {SECRET}"]

    def assert_nothing_leaked(self) -> None:
        texts = [self.caplog.text, *(b.decode("latin-1") for b in self.seen)]
        for text in texts:
            for s in SECRET_FORMS:
                assert s not in text, "a secret or the proxy token leaked"

    def close(self) -> None:
        while self._socks:
            try:
                self._socks.pop().close()
            except OSError:
                pass


@contextmanager
def scene(caplog: pytest.LogCaptureFixture, *, routes: list[Route] | None = None, policy: Policy | None = None,
          timeouts: Timeouts = FAST, route_kw: dict[str, Any] | None = None, **kw: Any) -> Iterator[Scene]:
    """A route upstream for HOST and a proxy in front of it (`route_kw` goes to `UpstreamServer.route`)."""
    caplog.set_level("DEBUG", logger="cordon")
    with UpstreamServer(HOST) as up, \
            running_proxy(routes if routes is not None else [up.route(**(route_kw or {}))], policy=policy,
                          timeouts=timeouts, **kw) as px:
        sc = Scene(up=up, px=px, caplog=caplog)
        try:
            yield sc
        finally:
            sc.close()
