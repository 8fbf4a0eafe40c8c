"""Minimal relays for bench/floor.py: the least work a Python proxy can do on each path.

Each is a CONNECT proxy on 127.0.0.1 that parses nothing after the CONNECT line:

  tls-threads  TLS from the client (the bench upstream's own leaf), TLS to the
               upstream, plaintext copied both ways by one blocking thread per
               connection (select() on both sockets: an SSL object must not be
               read and written by two threads at once)
  tls-asyncio  the same on asyncio's streams and its own TLS (start_tls)
  tls-uvloop   tls-asyncio on uvloop
  splice       an opaque tunnel, splice(2) socket -> pipe -> socket, two threads
  copy         an opaque tunnel, recv_into + sendall, two threads
  http-uvloop  a plain `http://` forwarder (bench/plain.py) on uvloop's protocols:
               absolute-form request line and headers split, the request
               rewritten to origin form without the proxy's own headers and
               sent over one kept-alive upstream connection per client
               connection (opened once, to the address the name resolves to);
               the answer copied back without parsing (a non-pipelining client
               waits for it anyway)

Apart from that one request split, no HTTP parsing, no credential, no scrubbing, no timeouts, no limits: they do
strictly less than any real proxy, so what they reach is a ceiling for a
Python proxy on this machine, not a contender. Prints the port, then serves
until killed.

    python bench/relays.py MODE --cert leaf.pem --key leaf.key --ca ca.pem --upstream-port N
    python bench/relays.py http-uvloop
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import select
import socket
import ssl
import sys
import threading
from collections.abc import Callable

BUF = 1 << 18
PIPE = 1 << 20


def _connect_target(head: bytes) -> tuple[str, int]:
    host, _, port = head.split(b" ", 2)[1].decode().rpartition(":")
    return host, int(port)


def _read_connect(c: socket.socket) -> bytes:
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = c.recv(4096)
        if not data:
            raise ConnectionError("client left")
        buf += data
    return buf


def _close(*socks: socket.socket) -> None:
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def _copy(a: socket.socket, b: socket.socket) -> None:
    buf = bytearray(BUF)
    view = memoryview(buf)
    try:
        while True:
            n = a.recv_into(buf)
            if not n:
                break
            b.sendall(view[:n])
        b.shutdown(socket.SHUT_WR)
    except OSError:
        _close(a, b)


def _splice(a: socket.socket, b: socket.socket) -> None:
    r, w = os.pipe()
    try:
        fcntl.fcntl(w, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE)
        while True:
            n = os.splice(a.fileno(), w, PIPE)
            if not n:
                b.shutdown(socket.SHUT_WR)
                return
            while n:
                n -= os.splice(r, b.fileno(), n)
    except OSError:
        _close(a, b)
    finally:
        os.close(r)
        os.close(w)


def _send_all(s: ssl.SSLSocket, data: memoryview) -> None:
    while data:
        try:
            data = data[s.send(data):]
        except (ssl.SSLWantWriteError, BlockingIOError):
            select.select([], [s], [])
        except ssl.SSLWantReadError:
            select.select([s], [], [])


def _tls_relay(a: ssl.SSLSocket, b: ssl.SSLSocket) -> None:
    """Both TLS sockets non-blocking: a readable socket may hold only a TLS 1.3
    session ticket, and a blocking read would then wait for data that never comes."""
    buf = bytearray(BUF)
    view = memoryview(buf)
    other = {a: b, b: a}
    a.setblocking(False)
    b.setblocking(False)
    try:
        while True:
            ready = [s for s in (a, b) if s.pending()] or select.select([a, b], [], [])[0]
            for s in ready:
                try:
                    n = s.recv_into(buf)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    continue
                if not n:
                    return
                _send_all(other[s], view[:n])
    except OSError:
        pass
    finally:
        _close(a, b)


def _both_ways(fn: Callable[[socket.socket, socket.socket], None], a: socket.socket, b: socket.socket) -> None:
    # blocking threads on purpose: the floor of a thread-per-connection design
    t = threading.Thread(target=fn, args=(b, a), daemon=True)  # noqa: TID251
    t.start()
    fn(a, b)
    t.join()
    _close(a, b)


def serve_threads(mode: str, port: int, args: argparse.Namespace) -> None:
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(args.cert, args.key)
    sctx.set_alpn_protocols(["http/1.1"])
    cctx = ssl.create_default_context(cafile=args.ca)
    cctx.set_alpn_protocols(["http/1.1"])

    def handle(c: socket.socket) -> None:
        try:
            host, tport = _connect_target(_read_connect(c))
            c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if mode == "tls-threads":
                u = socket.create_connection(("127.0.0.1", args.upstream_port))
                u.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                tc = sctx.wrap_socket(c, server_side=True)
                tu = cctx.wrap_socket(u, server_hostname=host)
                _tls_relay(tc, tu)
            else:
                u = socket.create_connection((host, tport))
                _both_ways(_splice if mode == "splice" else _copy, c, u)
        except (OSError, ValueError):
            _close(c)

    lsock = socket.create_server(("127.0.0.1", port), backlog=1024)
    print(lsock.getsockname()[1], flush=True)
    while True:
        c, _ = lsock.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=handle, args=(c,), daemon=True).start()  # noqa: TID251


async def serve_asyncio(port: int, args: argparse.Namespace) -> None:
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(args.cert, args.key)
    sctx.set_alpn_protocols(["http/1.1"])
    cctx = ssl.create_default_context(cafile=args.ca)
    cctx.set_alpn_protocols(["http/1.1"])

    async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(BUF):
                w.write(data)
                await w.drain()
        except OSError:
            pass
        w.close()

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            head = await r.readuntil(b"\r\n\r\n")
            host, _ = _connect_target(head)
            w.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await w.drain()
            await w.start_tls(sctx)
            ur, uw = await asyncio.open_connection("127.0.0.1", args.upstream_port, ssl=cctx,
                                                  server_hostname=host)
            await asyncio.gather(pump(r, uw), pump(ur, w))
        except (OSError, ValueError, asyncio.IncompleteReadError):
            w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


_HOP = (b"proxy-authorization", b"proxy-connection")


class _HttpUp(asyncio.Protocol):
    """The upstream leg of `http-uvloop`: whatever arrives goes to the client as it is."""

    def __init__(self, client: _HttpClient) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        t = self.client.transport
        if t is not None:
            t.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.up_lost()


class _HttpClient(asyncio.Protocol):
    """The client leg of `http-uvloop`: split each request head, rewrite it, send it upstream."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.up: asyncio.Transport | None = None
        self.target = b""
        self.queued: list[bytes] = []
        self.connecting = False
        self.body_left = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]   # uvloop's TCPTransport is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if self.up is not None:
            self.up.close()

    def up_lost(self) -> None:
        self.up = None
        if self.transport is not None:
            self.transport.close()

    def send_up(self, data: bytes) -> None:
        if self.up is not None:
            self.up.write(data)
        else:
            self.queued.append(data)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        while buf:
            if self.body_left:
                part = buf[:self.body_left]
                self.body_left -= len(part)
                buf = buf[len(part):]
                self.send_up(part)
                continue
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head, buf = buf[:end], buf[end + 4:]
            line, _, fields = head.partition(b"\r\n")
            method, url, version = line.split(b" ")
            if not url.startswith(b"http://"):
                assert self.transport is not None
                self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                self.transport.close()
                return
            target, _, path = url[7:].partition(b"/")
            kept = []
            for f in fields.split(b"\r\n"):
                name = f.partition(b":")[0].lower()
                if name in _HOP:
                    continue
                if name == b"content-length":
                    self.body_left = int(f.partition(b":")[2])
                kept.append(f)
            out = b"%s /%s %s\r\n%s\r\n\r\n" % (method, path, version, b"\r\n".join(kept))
            if target != self.target:
                self.open(target)
            self.send_up(out)
        self.buf = buf

    def open(self, target: bytes) -> None:
        if self.up is not None:
            self.up.close()
            self.up = None
        self.target = target
        host, _, port = target.decode().rpartition(":")
        self.connecting = True
        asyncio.get_running_loop().create_task(self._connect(host, int(port or 80)))

    async def _connect(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            t, _ = await loop.create_connection(lambda: _HttpUp(self), host, port)
        except OSError:
            if self.transport is not None:
                self.transport.close()
            return
        self.up = t
        for data in self.queued:
            t.write(data)
        self.queued.clear()


async def serve_http(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_HttpClient, "127.0.0.1", port, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=["tls-threads", "tls-asyncio", "tls-uvloop", "splice", "copy", "http-uvloop"])
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--ca")
    ap.add_argument("--upstream-port", type=int, help="the MITM upstream's port on 127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    if args.mode == "http-uvloop":
        import uvloop
        uvloop.run(serve_http(args.port))
    elif not (args.cert and args.key and args.ca and args.upstream_port):
        ap.error(f"{args.mode} needs --cert, --key, --ca and --upstream-port")
    elif args.mode in ("tls-asyncio", "tls-uvloop"):
        if args.mode == "tls-uvloop":
            import uvloop
            uvloop.run(serve_asyncio(args.port, args))
        else:
            asyncio.run(serve_asyncio(args.port, args))
    else:
        serve_threads(args.mode, args.port, args)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
