"""WebSocket on route hosts: after the upstream's 101, relay frames both ways.

The handshake itself is an ordinary forwarded request (credentials injected
by the caller); once the upstream switches protocols the bytes are relayed
unchanged (extensions such as permessage-deflate stay end to end) until
either side closes. Requests that cannot be upgraded get 426 from the caller
(the Codex CLI falls back to HTTPS at once on 426, but exits on 400).
"""

from __future__ import annotations

from cordon.core.http1 import RequestHead, ResponseHead, serialize_response_head, tokens
from cordon.core.scrub import EchoScrub
from cordon.proxy.conn import Conn, splice

FRAMING = frozenset({b"content-length", b"transfer-encoding", b"keep-alive", b"proxy-connection"})


def upgrade_token(req: RequestHead) -> bytes | None:
    """b"websocket" when the request asks for a WebSocket upgrade, else None.

    Other upgrade protocols (h2c, TLS/1.0) are simply not offered upstream:
    a server may ignore Upgrade (RFC 9110 §7.8), and so does cordon.
    """
    if b"upgrade" in tokens(req.headers, b"connection") and b"websocket" in tokens(req.headers, b"upgrade"):
        return b"websocket"
    return None


async def relay_upgraded(client: Conn, up: Conn, resp: ResponseHead,
                         scrub: EchoScrub | None) -> tuple[int, int]:
    """Send the 101 to the client, then splice; returns (bytes down, bytes up)."""
    headers = [(k, v) for k, v in resp.headers if k.lower() not in FRAMING]
    reason = resp.reason
    if scrub:
        headers, reason = scrub.headers(headers), scrub.scrub(reason)
    await client.send(serialize_response_head(101, reason, headers))
    try:
        to_up, to_client = await splice(client, up, half_close=False)
    finally:
        await up.aclose()
    return to_client, to_up
