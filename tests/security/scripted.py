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

from collections.abc import Callable

import anyio
import anyio.abc

from tests.upstream import LoopbackServer, read_raw_request


class ScriptedUpstream(LoopbackServer):
    def __init__(self, respond: Callable[[bytes], bytes | list[bytes]], host: str = "api.openai.com") -> None:
        super().__init__(host)
        self.respond = respond
        self.requests: list[bytes] = []

    async def serve_connection(self, stream: anyio.abc.ByteStream, sock: anyio.abc.SocketStream,
                               conn_id: int) -> None:
        buf = b""
        while (got := await read_raw_request(stream, buf)) is not None:
            head, body, buf = got
            self.requests.append(head + b"\r\n\r\n" + body)
            answer = self.respond(head + b"\r\n\r\n" + body)
            for i, part in enumerate([answer] if isinstance(answer, bytes) else answer):
                if i:
                    await anyio.sleep(0.05)   # a separate TLS record, most likely read separately too
                await stream.send(part)
