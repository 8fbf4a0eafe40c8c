"""A scripted HTTPS upstream on 127.0.0.1 for adversarial tests: each request's answer is
whatever bytes a test function returns, sent as one write on a keep-alive connection.

    with ScriptedUpstream(lambda req: b"HTTP/1.1 200 OK\\r\\n...") as up:   # or a list: sent apart
        up.route()          # a Route for the host, pointing here, trusting up.ca_file
        up.requests         # every request head (bytes) received, in order

Lets a test play an upstream that misbehaves in ways a real server library
would refuse to: unsolicited extra responses, a secret in a reason phrase or a
header name, trailers echoed back.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cordon.core import certs
from cordon.core.model import Route
from tests.upstream import UpstreamServer


class ScriptedUpstream:
    def __init__(self, respond: Callable[[bytes], bytes | list[bytes]], host: str = "api.openai.com") -> None:
        self.host = host
        self.respond = respond
        self.requests: list[bytes] = []
        self.accepted = 0
        self.ca = certs.create_ca("cordon scripted upstream CA")
        self._tmp = Path(tempfile.mkdtemp(prefix="cordon-scripted-"))
        self.ca_file = self._tmp / "ca.pem"
        self.ca_file.write_bytes(self.ca.cert_pem)
        leaf = certs.issue_leaf(self.ca, host)
        (self._tmp / "leaf.pem").write_bytes(leaf.chain_pem + leaf.key_pem)
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.load_cert_chain(self._tmp / "leaf.pem")
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._stop = False
        self._threads = ThreadPoolExecutor(32)   # the accept loop and one per connection, joined on exit

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def route(self, **kw: Any) -> Route:
        return UpstreamServer.route(self, **kw)  # type: ignore[arg-type]  (uses host, address, ca_file)

    def __enter__(self) -> ScriptedUpstream:
        self._threads.submit(self._accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        for sock in (self._sock, *self._conns):
            try:
                sock.shutdown(socket.SHUT_RDWR)   # wakes a thread blocked in accept or recv
            except OSError:
                pass
            sock.close()
        self._threads.shutdown(wait=True)
        shutil.rmtree(self._tmp, ignore_errors=True)

    def _accept(self) -> None:
        while not self._stop:
            try:
                s, _ = self._sock.accept()
            except OSError:
                return
            self.accepted += 1
            self._conns.append(s)
            self._threads.submit(self._serve, s)

    def _serve(self, raw: socket.socket) -> None:
        try:
            raw.settimeout(10)
            s = self._ctx.wrap_socket(raw, server_side=True)
            self._conns.append(s)
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    data = s.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                n = 0
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        n = int(v)
                while len(buf) < n:
                    buf += s.recv(65536)
                body, buf = buf[:n], buf[n:]
                self.requests.append(head + b"\r\n\r\n" + body)
                answer = self.respond(head + b"\r\n\r\n" + body)
                for i, part in enumerate([answer] if isinstance(answer, bytes) else answer):
                    if i:
                        time.sleep(0.05)   # a separate TLS record, most likely read separately too
                    s.sendall(part)
        except (OSError, ssl.SSLError, ValueError):
            pass
