"""Refusals answered inside TLS, for the few denied hosts a client retries on a refused CONNECT.

Under `[policy] unmatched = "deny"` a denied host gets `403` on its CONNECT. The Codex
CLI treats that as a network error and retries its model discovery
(`chatgpt.com/backend-api/codex/models`) with backoff: about nine seconds before
its first API call. For the hosts in `ANSWERED` cordon instead accepts the CONNECT,
terminates TLS with a leaf from its own CA, and answers every request with an
HTTP `403` (JSON body), which Codex takes as final at once. Nothing is ever
forwarded to such a host and no credential is involved. Allowed hosts
(`allow_hosts`) are tunnelled as usual.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from typing import TYPE_CHECKING

import anyio

from cordon.core.http1 import simple_response
from cordon.proxy.conn import Conn
from cordon.proxy.transport.fasttls import TLSConn

if TYPE_CHECKING:
    from cordon.proxy.server import Proxy

log = logging.getLogger("cordon.proxy")

# Codex's model discovery (with an API key too): refused by an HTTP answer, not a failed CONNECT
ANSWERED = frozenset({"chatgpt.com"})


def answered_hosts(unmatched: str, allow_hosts: frozenset[str]) -> frozenset[str]:
    """The hosts a proxy with this policy refuses inside TLS (their leaf must be issuable)."""
    return ANSWERED - allow_hosts if unmatched == "deny" else frozenset()


def body(host: str) -> bytes:
    message = f"cordon: {host} is not an allowed host ([policy] unmatched = \"deny\")"
    return json.dumps({"error": {"message": message, "type": "cordon_policy", "code": "host_denied"}}).encode()


async def serve_refusal(px: Proxy, client: Conn, host: str, who: str) -> None:
    """TLS with the client, then `403` to every request on the connection; then close."""
    try:
        ctx = px.settings.issuer.server_context(host)
        with anyio.fail_after(px.timeouts.handshake):
            tls = await TLSConn.wrap(client.stream, ctx, server_side=True, prefix=bytes(client.buf))
    except Exception as e:   # no leaf for the host (a CA that cannot sign it), or the client gave up
        reason = e.reason if isinstance(e, ssl.SSLError) and e.reason else type(e).__name__
        log.info("refusing %s inside TLS failed: %s", host, reason)
        return
    client.buf.clear()
    inner = Conn(tls)
    try:
        req = await px.read_request(inner)
        if req is None:
            return
        t0 = time.monotonic()
        px.stats.refused += 1
        answer = simple_response(403, body(host), content_type=b"application/json", close=True)
        try:
            await inner.send(answer)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            return
        px.log_exchange(None, host, req, 403, len(answer), t0, "denied host: refused inside TLS", who)
    finally:
        await inner.aclose()
