"""An upstream that sends an unsolicited extra response on a keep-alive connection cannot hand it
to the next client: a pooled connection with any unread byte (in cordon's buffer, the TLS
session's, or the socket's) is closed, never reused."""

from __future__ import annotations

import ssl

import httpx

from tests.proxy_harness import PLACEHOLDER, running_proxy
from tests.security.scripted import ScriptedUpstream

STRAY = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray"


def test_connection_with_unread_bytes_is_never_reused() -> None:
    with ScriptedUpstream(lambda req: [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
                                             b"ok" + STRAY]) as up, \
            running_proxy([up.route()]) as px:
        ctx = ssl.create_default_context(cafile=str(px.ca_file))
        bodies = []
        for _ in range(5):
            # a fresh client connection each time: only the upstream leg could be shared
            with httpx.Client(proxy=px.url, verify=ctx, timeout=10) as c:
                bodies.append(c.get(f"https://{up.host}/v1/x",
                                    headers={"Authorization": f"Bearer {PLACEHOLDER}"}).content)
        assert bodies == [b"ok"] * 5
        assert up.accepted == 5, "each exchange needed a new upstream connection"
