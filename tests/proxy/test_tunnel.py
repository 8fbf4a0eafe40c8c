"""Unmatched hosts: opaque tunnels (the client sees the upstream's own certificate), policy, SSRF guard,
half-close, and absolute-form plain HTTP."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest

from cordon.core.model import Policy
from tests.ports import refused_port
from tests.proxy_harness import PLACEHOLDER, SECRET, TOKEN, RunningProxy, running_proxy
from tests.upstream import LoopbackServer, UpstreamServer

LOCAL = Policy(allow_private=("127.0.0.1/32",))


@pytest.fixture
def plain() -> Iterator[UpstreamServer]:
    """A non-route HTTPS server with a certificate for 127.0.0.1 from its own CA."""
    with UpstreamServer("127.0.0.1") as u:
        yield u


def connect_raw(px: RunningProxy, target: str, token: str | None = TOKEN) -> tuple[socket.socket, bytes]:
    s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
    auth = ""
    if token:
        auth = f"Proxy-Authorization: Basic {base64.b64encode(f'cordon:{token}'.encode()).decode()}\r\n"
    s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n".encode())
    resp = b""
    while b"\r\n\r\n" not in resp:
        chunk = s.recv(4096)
        if not chunk:
            break
        resp += chunk
    return s, resp


def test_curl_tunnel_sees_the_upstreams_own_certificate(plain: UpstreamServer, up: UpstreamServer) -> None:
    with running_proxy([up.route()], policy=LOCAL) as px:
        # the client trusts ONLY the upstream's CA: an intercepted connection could not verify
        out = subprocess.run(["curl", "-sS", "--fail", "-H", f"Authorization: Bearer {PLACEHOLDER}",
                              f"https://127.0.0.1:{plain.port}/json"],
                             env=px.env(ca_file=plain.ca_file), capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["ok"] is True
        assert px.stats.tunnels == 1
    rec = plain.requests[-1]
    assert rec.header("authorization") == f"Bearer {PLACEHOLDER}", "tunnelled traffic must pass untouched"
    assert SECRET not in rec.raw()
    assert rec.header("proxy-authorization") is None


def test_httpx_tunnel_peer_certificate_is_the_upstreams(plain: UpstreamServer) -> None:
    with running_proxy([], policy=LOCAL) as px:
        ctx = ssl.create_default_context(cafile=str(plain.ca_file))
        with httpx.Client(proxy=px.url, verify=ctx) as c:
            r = c.get(f"https://127.0.0.1:{plain.port}/json")
            sslobj = r.extensions["network_stream"].get_extra_info("ssl_object")
            issuer = dict(x[0] for x in sslobj.getpeercert()["issuer"])
        assert r.status_code == 200
        assert issuer["commonName"] == "cordon test upstream CA"


def test_ssrf_guard_refuses_loopback_without_allow_private(plain: UpstreamServer) -> None:
    with running_proxy([]) as px:
        s, resp = connect_raw(px, f"127.0.0.1:{plain.port}")
        s.close()
        assert resp.startswith(b"HTTP/1.1 403 ")
        assert b"loopback" in resp
        s, resp = connect_raw(px, "169.254.169.254:80")
        s.close()
        assert resp.startswith(b"HTTP/1.1 403 ") and b"link-local" in resp
        s, resp = connect_raw(px, "[::ffff:10.0.0.1]:443")
        s.close()
        assert resp.startswith(b"HTTP/1.1 403 ") and b"private" in resp
    assert plain.connections == 0


def test_policy_deny_allows_only_allow_hosts(plain: UpstreamServer) -> None:
    pol = Policy(unmatched="deny", allow_hosts=("127.0.0.1",), allow_private=("127.0.0.1/32",))
    with running_proxy([], policy=pol) as px:
        s, resp = connect_raw(px, "example.org:443")
        s.close()
        assert resp.startswith(b"HTTP/1.1 403 ") and b"not an allowed host" in resp
        s, resp = connect_raw(px, f"127.0.0.1:{plain.port}")
        s.close()
        assert resp.startswith(b"HTTP/1.1 200 ")


def test_tunnel_to_refused_port_is_502() -> None:
    with refused_port() as port, running_proxy([], policy=LOCAL) as px:
        s, resp = connect_raw(px, f"127.0.0.1:{port}")
        s.close()
    assert resp.startswith(b"HTTP/1.1 502 ") and b"refused" in resp


class HalfCloseServer(LoopbackServer):
    """Plain TCP: reads until the client's EOF, then answers with the byte count and closes."""

    def __init__(self) -> None:
        super().__init__(tls=False)

    async def serve_connection(self, stream: anyio.abc.ByteStream, sock: anyio.abc.SocketStream,
                               conn_id: int) -> None:
        n = 0
        try:
            while True:
                n += len(await stream.receive())
        except anyio.EndOfStream:
            pass
        await stream.send(f"got {n} bytes".encode())


def test_tunnel_half_close() -> None:
    with HalfCloseServer() as srv, running_proxy([], policy=LOCAL) as px:
        s, resp = connect_raw(px, f"127.0.0.1:{srv.port}")
        assert resp.startswith(b"HTTP/1.1 200 ")
        s.sendall(b"x" * 100_000)
        s.shutdown(socket.SHUT_WR)     # our half ends; the answer must still come back
        got = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        s.close()
        assert px.stats.tunnels == 1
    assert got == b"got 100000 bytes"


def test_tunnel_passes_on_bytes_sent_with_the_connect() -> None:
    """Bytes that arrive in the same read as the CONNECT head (a ClientHello sent at once) go first."""
    with HalfCloseServer() as srv, running_proxy([], policy=LOCAL) as px:
        s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
        auth = base64.b64encode(f"cordon:{TOKEN}".encode()).decode()
        s.sendall(f"CONNECT 127.0.0.1:{srv.port} HTTP/1.1\r\nProxy-Authorization: Basic {auth}\r\n\r\n".encode()
                  + b"y" * 5000)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
        s.close()
    assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"\r\n\r\ngot 5000 bytes")


class BlastServer(LoopbackServer):
    """Plain TCP: sends `pattern_bytes(n)` as fast as the socket takes it, then closes."""

    N = 24 << 20

    def __init__(self) -> None:
        super().__init__(tls=False)

    async def serve_connection(self, stream: anyio.abc.ByteStream, sock: anyio.abc.SocketStream,
                               conn_id: int) -> None:
        from tests.upstream import pattern_bytes

        data = pattern_bytes(self.N)
        for i in range(0, self.N, 1 << 20):
            await stream.send(data[i:i + (1 << 20)])


def test_tunnel_waits_for_a_slow_reader_without_losing_bytes() -> None:
    """The tunnel stops reading the upstream while the client is not reading, and resumes."""
    import hashlib
    import time

    from tests.upstream import pattern_bytes

    with BlastServer() as srv, running_proxy([], policy=LOCAL) as px:
        s, resp = connect_raw(px, f"127.0.0.1:{srv.port}")
        assert resp.startswith(b"HTTP/1.1 200 ")
        got = bytearray(resp.partition(b"\r\n\r\n")[2])
        time.sleep(0.5)                          # both sides' buffers fill: the proxy must pause
        while len(got) < BlastServer.N:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            got += chunk
            if len(got) < (2 << 20):
                time.sleep(0.002)                 # a slow start, pausing and resuming many times
        s.close()
    assert len(got) == BlastServer.N
    assert hashlib.sha256(got).digest() == hashlib.sha256(pattern_bytes(BlastServer.N)).digest()


def test_tunnel_bulk_bytes_arrive_intact(plain: UpstreamServer) -> None:
    import hashlib

    from tests.upstream import pattern_bytes

    with running_proxy([], policy=LOCAL) as px:
        ctx = ssl.create_default_context(cafile=str(plain.ca_file))
        with httpx.Client(proxy=px.url, verify=ctx) as c:
            r = c.get(f"https://127.0.0.1:{plain.port}/bytes?n=20000000")
            up = c.post(f"https://127.0.0.1:{plain.port}/upload", content=pattern_bytes(3_000_000))
        assert px.stats.tunnels == 1
    assert hashlib.sha256(r.content).digest() == hashlib.sha256(pattern_bytes(20_000_000)).digest()
    assert up.json()["body_bytes"] == 3_000_000


def test_absolute_form_plain_http_for_unmatched_host() -> None:
    with UpstreamServer("127.0.0.1", tls=False) as plain, running_proxy([], policy=LOCAL) as px:
        with httpx.Client(proxy=px.url) as c:
            r = c.get(f"http://127.0.0.1:{plain.port}/json", headers={"Authorization": "Bearer mine"})
            r2 = c.get(f"http://127.0.0.1:{plain.port}/json")
        assert r.status_code == 200 and r2.status_code == 200
        rec = plain.requests[0]
        assert rec.target == "/json"
        assert rec.header("host") == f"127.0.0.1:{plain.port}"
        assert rec.header("authorization") == "Bearer mine"   # not a route: end-to-end headers untouched
        assert rec.header("proxy-authorization") is None
        assert plain.connections == 1
        assert px.stats.plain == 2


def test_absolute_form_plain_http_to_private_address_is_refused() -> None:
    with UpstreamServer("127.0.0.1", tls=False) as plain, running_proxy([]) as px:
        with httpx.Client(proxy=px.url) as c:
            r = c.get(f"http://127.0.0.1:{plain.port}/json")
        assert r.status_code == 403
        assert plain.connections == 0


def test_route_credential_never_goes_in_cleartext(up: UpstreamServer) -> None:
    """`http://api.openai.com/...` is forwarded over verified TLS to the route's upstream."""
    with running_proxy([up.route()]) as px, httpx.Client(proxy=px.url) as c:
        r = c.get("http://api.openai.com/v1/models", headers={"Authorization": f"Bearer {PLACEHOLDER}"})
    assert r.status_code == 200
    rec = up.requests[-1]
    assert rec.sni == "api.openai.com"          # it arrived over TLS
    assert rec.header("authorization") == f"Bearer {SECRET}"


def test_route_with_explicit_http_scheme_uses_cleartext() -> None:
    with UpstreamServer("api.openai.com", tls=False) as up:
        route = up.route(upstream_scheme="http")
        with running_proxy([route]) as px, httpx.Client(proxy=px.url) as c:
            r = c.get("http://api.openai.com/v1/models")
        assert r.status_code == 200
        assert up.requests[-1].header("authorization") == f"Bearer {SECRET}"


def test_requests_tunnel_sees_the_upstreams_own_certificate(plain: UpstreamServer) -> None:
    import requests

    with running_proxy([], policy=LOCAL) as px:
        s = requests.Session()
        s.trust_env = False
        r = s.get(f"https://127.0.0.1:{plain.port}/json", proxies={"https": px.url},
                  verify=str(plain.ca_file), headers={"Authorization": "Bearer theirs"}, timeout=20)
        assert r.status_code == 200
        assert px.stats.tunnels == 1
    assert plain.requests[-1].header("authorization") == "Bearer theirs"


def _plain_get(s: socket.socket, url: str) -> bytes:
    """One keep-alive absolute-form GET on `s`; the whole response (Content-Length body)."""
    auth = base64.b64encode(f"cordon:{TOKEN}".encode()).decode()
    s.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic {auth}\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, "the proxy closed the connection"
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += s.recv(65536)
    return head + b"\r\n\r\n" + body


def test_plain_http_on_one_connection_goes_where_each_request_says() -> None:
    """A client connection remembers its last target (authority, checked address, upstream);
    a request naming another host or port is sent there, and back again."""
    with UpstreamServer("127.0.0.1", tls=False) as one, UpstreamServer("127.0.0.1", tls=False) as two, \
            running_proxy([], policy=LOCAL) as px:
        s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
        with s:
            for up, path in ((one, "/a"), (two, "/b"), (two, "/c"), (one, "/d"), (two, "/e?x=1")):
                resp = _plain_get(s, f"http://127.0.0.1:{up.port}{path}")
                assert resp.startswith(b"HTTP/1.1 200 ")
        assert [r.target for r in one.requests] == ["/a", "/d"]
        assert [r.target for r in two.requests] == ["/b", "/c", "/e?x=1"]
        assert {r.header("host") for r in two.requests} == {f"127.0.0.1:{two.port}"}
        assert px.stats.plain == 5


class _Switch:
    """A ConfigSource handing out new routes once, when told to."""

    def __init__(self) -> None:
        self.routes: tuple[Any, ...] | None = None

    def current(self) -> tuple[tuple[Any, ...], Policy] | None:
        fresh, self.routes = self.routes, None
        return (fresh, LOCAL) if fresh is not None else None

    def health(self) -> dict[str, Any]:
        return {}


def test_plain_http_connection_follows_a_route_added_meanwhile() -> None:
    """The per-connection memo of the last target's route is dropped with the route table: a
    host that becomes a route host gets the route (and its credential) on the very next
    request of a connection that was forwarding it as an unmatched host."""
    with UpstreamServer("localhost", tls=False) as up:
        switch = _Switch()
        with running_proxy([], policy=LOCAL, config=switch) as px:
            s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
            with s:
                assert _plain_get(s, f"http://localhost:{up.port}/before").startswith(b"HTTP/1.1 200 ")
                switch.routes = (up.route(upstream_scheme="http"),)
                with socket.create_connection(("127.0.0.1", px.port), timeout=10) as other:
                    # a new connection applies the changed config; its answer says it has
                    other.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                    assert other.recv(65536).startswith(b"HTTP/1.1 200 ")
                assert switch.routes is None
                assert _plain_get(s, f"http://localhost:{up.port}/after").startswith(b"HTTP/1.1 200 ")
        before, after = up.requests
        assert before.target == "/before" and before.header("authorization") is None
        assert after.target == "/after" and after.header("authorization") == f"Bearer {SECRET}"


def test_plain_http_on_one_connection_reads_each_requests_own_fields() -> None:
    """What a connection's repeated fields decide (framing, the fields forwarded) is kept
    between its requests; a request whose fields differ is read by its own."""
    auth = b"Proxy-Authorization: Basic " + base64.b64encode(f"cordon:{TOKEN}".encode()) + b"\r\n"
    with UpstreamServer("127.0.0.1", tls=False) as up, running_proxy([], policy=LOCAL) as px:
        url = b"http://127.0.0.1:%d" % up.port
        s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
        with s:
            def ask(head: bytes, body: bytes = b"") -> bytes:
                s.sendall(head + body)
                buf = b""
                while b"\r\n\r\n" not in buf:
                    chunk = s.recv(65536)
                    if not chunk:
                        return buf
                    buf += chunk
                return buf

            same = b"X-Same: 1\r\n" + auth + b"\r\n"
            assert ask(b"GET " + url + b"/1 HTTP/1.1\r\n" + same).startswith(b"HTTP/1.1 200 ")
            assert ask(b"GET " + url + b"/2 HTTP/1.1\r\n" + same).startswith(b"HTTP/1.1 200 ")
            posted = b"POST " + url + b"/upload HTTP/1.1\r\nContent-Length: 5\r\nX-Same: 1\r\n" + auth + b"\r\n"
            assert ask(posted, b"hello").startswith(b"HTTP/1.1 200 ")
            assert ask(b"GET " + url + b"/3 HTTP/1.1\r\n" + same).startswith(b"HTTP/1.1 200 ")
            both = (b"POST " + url + b"/x HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
                    + b"X-Same: 1\r\n" + auth + b"\r\n")
            assert ask(both, b"0\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
        with s:
            assert ask(b"GET " + url + b"/4 HTTP/1.1\r\n" + same).startswith(b"HTTP/1.1 200 ")
            last = ask(b"GET " + url + b"/5 HTTP/1.1\r\nConnection: close\r\n" + same)
            assert last.startswith(b"HTTP/1.1 200 ") and b"\r\nConnection: close\r\n" in last
            while s.recv(65536):   # the proxy closes after the answer the client asked to be the last
                pass
        got = [(r.method, r.path, r.body, r.header("x-same"), r.header("proxy-authorization")) for r in up.requests]
        assert got == [("GET", "/1", b"", "1", None), ("GET", "/2", b"", "1", None),
                       ("POST", "/upload", b"hello", "1", None), ("GET", "/3", b"", "1", None),
                       ("GET", "/4", b"", "1", None), ("GET", "/5", b"", "1", None)]


def test_plain_http_relays_each_response_by_its_own_head() -> None:
    """An upstream connection keeps its last response head's parse and what it decided; a
    repeated head is relayed the same way, a different head (or the same head answering a
    HEAD request) by its own framing."""
    from anyio.from_thread import start_blocking_portal

    script = [
        (b"GET", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
        (b"GET", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
        (b"GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nworld\r\n0\r\n\r\n"),
        (b"HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
        (b"GET", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nagain"),
    ]
    seen: list[bytes] = []

    async def answer(conn: anyio.abc.SocketStream) -> None:
        async with conn:
            buf = b""
            for _method, reply in script:
                while b"\r\n\r\n" not in buf:
                    try:
                        buf += await conn.receive()
                    except anyio.EndOfStream:
                        return
                head, _, buf = buf.partition(b"\r\n\r\n")
                seen.append(head.split(b"\r\n", 1)[0])
                await conn.send(reply)

    async def listen(*, task_status: anyio.abc.TaskStatus[int]) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        async with listener:
            task_status.started(listener.extra(anyio.abc.SocketAttribute.local_port))
            await listener.serve(answer)

    auth = b"Proxy-Authorization: Basic " + base64.b64encode(f"cordon:{TOKEN}".encode()) + b"\r\n"
    with start_blocking_portal() as portal, running_proxy([], policy=LOCAL) as px, \
            socket.create_connection(("127.0.0.1", px.port), timeout=10) as s:
        fut, port = portal.start_task(listen)
        f = s.makefile("rb")
        got = []
        for i, (method, _answer) in enumerate(script):
            s.sendall(method + b" http://127.0.0.1:%d/%d HTTP/1.1\r\n" % (port, i) + auth + b"\r\n")
            status = f.readline()
            fields = {}
            while (line := f.readline()) not in (b"\r\n", b""):
                k, _, v = line.partition(b":")
                fields[k.strip().lower()] = v.strip()
            if method == b"HEAD":
                body = b""
            elif b"content-length" in fields:
                body = f.read(int(fields[b"content-length"]))
            else:   # chunked, as the upstream sent it
                body = b""
                while (size := int(f.readline().strip(), 16)):
                    body += f.read(size)
                    f.readline()
                f.readline()
            got.append((status.split(b" ")[1], fields.get(b"content-length"), body))
        fut.cancel()
    assert got == [(b"200", b"5", b"hello"), (b"200", b"5", b"hello"), (b"200", None, b"world"),
                   (b"200", b"5", b""), (b"200", b"5", b"again")]
    assert [line.split(b" ")[0] for line in seen] == [m for m, _ in script]
