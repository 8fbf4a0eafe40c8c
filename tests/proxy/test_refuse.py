"""Under `[policy] unmatched = "deny"`, Codex's model-discovery host is refused inside TLS (an
HTTP 403 Codex takes as final) instead of on the CONNECT (which it retries for seconds); every
other denied host still gets 403 on its CONNECT, and an allowed one is tunnelled."""

from __future__ import annotations

import json
import socket
import ssl

from cordon.core.model import Policy
from tests.proxy_harness import RunningProxy, running_proxy
from tests.security.wire import proxy_auth_line, recv_response


def connect(px: RunningProxy, host: str) -> tuple[socket.socket, int]:
    s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
    s.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n".encode() + proxy_auth_line() + b"\r\n")
    r = recv_response(s)
    assert r is not None
    return s, r.status


def test_discovery_host_is_refused_inside_tls_under_deny() -> None:
    with running_proxy([], policy=Policy(unmatched="deny")) as px:
        s, status = connect(px, "chatgpt.com")
        if status != 200:
            s.close()
        assert status == 200
        ctx = ssl.create_default_context(cafile=str(px.ca_file))
        with ctx.wrap_socket(s, server_hostname="chatgpt.com") as t:     # a leaf for the host, verified
            t.sendall(b"GET /backend-api/codex/models?client_version=1 HTTP/1.1\r\nHost: chatgpt.com\r\n\r\n")
            r = recv_response(t)
        assert r is not None and r.status == 403 and r.closed
        assert r.header("content-type") == "application/json"
        assert json.loads(r.body)["error"]["code"] == "host_denied"
        assert px.stats.refused == 1


def test_other_denied_hosts_still_get_403_on_connect() -> None:
    with running_proxy([], policy=Policy(unmatched="deny")) as px:
        s, status = connect(px, "example.com")
        s.close()
        assert status == 403


def test_tunnel_policy_and_allow_hosts_are_untouched() -> None:
    """Without deny, or with the host allowed, nothing is answered by cordon: the CONNECT goes to
    the network as usual (here, with no DNS or a guarded address, it fails with 502)."""
    for policy in (Policy(), Policy(unmatched="deny", allow_hosts=("chatgpt.com",))):
        with running_proxy([], policy=policy) as px:
            s, status = connect(px, "chatgpt.com")
            s.close()
            assert status != 200 or px.stats.tunnels == 1, policy
            assert px.stats.refused == 0
