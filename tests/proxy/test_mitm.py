"""Route hosts through the real proxy over loopback TLS: injection, streaming, reuse, scrubbing."""

from __future__ import annotations

import json
import ssl
import subprocess
from collections.abc import Iterator

import httpx
import requests

from tests.proxy_harness import PLACEHOLDER, SECRET, RunningProxy, running_proxy
from tests.upstream import UpstreamServer, pattern_bytes


def client(px: RunningProxy) -> httpx.Client:
    ctx = ssl.create_default_context(cafile=str(px.ca_file))
    return httpx.Client(proxy=px.url, verify=ctx, timeout=20)


def assert_injected(up: UpstreamServer) -> None:
    assert up.requests, "the upstream saw no request"
    for r in up.requests:
        assert r.header_all("authorization") == [f"Bearer {SECRET}"]
        assert PLACEHOLDER not in r.raw()
        assert r.header("proxy-authorization") is None
        assert r.sni == "api.openai.com"


def test_curl_gets_secret_injected(px: RunningProxy, up: UpstreamServer) -> None:
    out = subprocess.run(["curl", "-sS", "--fail", "-H", f"Authorization: Bearer {PLACEHOLDER}",
                          "https://api.openai.com/v1/models"],
                         env=px.env(), capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["path"] == "/v1/models"
    assert_injected(up)


def test_httpx_keepalive_reuses_both_legs(px: RunningProxy, up: UpstreamServer) -> None:
    with client(px) as c:
        for i in range(5):
            body = json.dumps({"i": i}).encode()
            r = c.post("https://api.openai.com/v1/responses", content=body,
                       headers={"Authorization": f"Bearer {PLACEHOLDER}", "X-Api-Key": "other"})
            assert r.status_code == 200
            assert r.json()["body_bytes"] == len(body)
    assert_injected(up)
    assert len(up.requests) == 5
    assert up.connections == 1, "the upstream connection was not reused"
    assert px.stats.connections == 1, "the client connection was not kept alive"
    assert px.stats.routes["openai"].requests == 5


def test_requests_library(px: RunningProxy, up: UpstreamServer) -> None:
    s = requests.Session()
    s.trust_env = False
    r = s.get("https://api.openai.com/v1/models", proxies={"https": px.url}, verify=str(px.ca_file),
              headers={"Authorization": f"Bearer {PLACEHOLDER}"}, timeout=20)
    assert r.status_code == 200
    assert_injected(up)


def test_client_copies_of_credentials_are_stripped(up: UpstreamServer) -> None:
    route = up.route(header_name="x-api-key", scheme=None)
    with running_proxy([route]) as px, client(px) as c:
        r = c.get("https://api.openai.com/v1/messages",
                  headers=[("x-api-key", PLACEHOLDER), ("X-API-KEY", "second"), ("Authorization", "Bearer x")])
        assert r.status_code == 200
    rec = up.requests[-1]
    assert rec.header_all("x-api-key") == [SECRET]
    assert rec.header("authorization") is None


def test_basic_auth_route(up: UpstreamServer) -> None:
    import base64

    route = up.route(auth_type="basic", username="api", scheme=None)
    with running_proxy([route]) as px, client(px) as c:
        assert c.get("https://api.openai.com/x", auth=("api", PLACEHOLDER)).status_code == 200
    want = "Basic " + base64.b64encode(f"api:{SECRET}".encode()).decode()
    assert up.requests[-1].header_all("authorization") == [want]


def test_path_prefix_limits_injection(up: UpstreamServer) -> None:
    route = up.route(paths=("/v1/",))
    with running_proxy([route]) as px, client(px) as c:
        c.get("https://api.openai.com/v1/messages", headers={"Authorization": f"Bearer {PLACEHOLDER}"})
        c.get("https://api.openai.com/api/event_logging", headers={"Authorization": f"Bearer {PLACEHOLDER}"})
    inside, outside = up.requests
    assert inside.header("authorization") == f"Bearer {SECRET}"
    assert outside.header("authorization") is None, "client credential must be stripped, none injected"


def test_request_bodies_stream_both_framings(px: RunningProxy, up: UpstreamServer) -> None:
    big = pattern_bytes(3_000_000)

    def gen() -> Iterator[bytes]:
        for i in range(0, len(big), 100_000):
            yield big[i:i + 100_000]

    with client(px) as c:
        r1 = c.post("https://api.openai.com/upload", content=big)            # Content-Length
        r2 = c.post("https://api.openai.com/upload", content=gen())          # chunked
    import hashlib

    digest = hashlib.sha256(big).hexdigest()
    assert r1.json()["sha256"] == digest and r2.json()["sha256"] == digest
    assert up.requests[0].header("content-length") == str(len(big))
    assert up.requests[1].header("transfer-encoding") == "chunked"


def test_expect_100_continue(px: RunningProxy, up: UpstreamServer) -> None:
    body = b"x" * 200_000
    out = subprocess.run(["curl", "-sS", "--fail", "-H", "Expect: 100-continue", "--data-binary", "@-",
                          "--expect100-timeout", "30", "https://api.openai.com/upload"],
                         input=body, env=px.env(), capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["body_bytes"] == len(body)
    assert up.requests[-1].header("expect") == "100-continue"


def test_large_download_and_chunked_response(px: RunningProxy) -> None:
    with client(px) as c:
        r = c.get("https://api.openai.com/bytes?n=5000000")
        assert r.content == pattern_bytes(5_000_000)
        r = c.get("https://api.openai.com/chunked?n=50&size=10000")
        assert r.content == b"".join(bytes([65 + i % 26]) * 10000 for i in range(50))


def test_sse_event_arrives_before_upstream_finishes(px: RunningProxy, up: UpstreamServer) -> None:
    """The upstream holds the rest of the stream until the test has seen event 0."""
    gate = up.gate("sse-first")
    with client(px) as c, c.stream("GET", "https://api.openai.com/sse?n=3&gate=sse-first") as r:
        lines = r.iter_lines()
        first = next(line for line in lines if line)
        assert first == 'data: {"i": 0}'
        gate.open()  # only now may the upstream send the rest
        rest = [line for line in lines if line]
    assert rest == ['data: {"i": 1}', 'data: {"i": 2}', "data: [DONE]"]


def test_echoed_secret_is_scrubbed(px: RunningProxy, up: UpstreamServer) -> None:
    with client(px) as c:
        r = c.get("https://api.openai.com/echo", headers={"Authorization": f"Bearer {PLACEHOLDER}"})
    assert SECRET not in r.text and SECRET not in str(r.headers)
    assert r.headers["x-echo-authorization"] == f"Bearer {PLACEHOLDER}"
    assert ["Authorization", f"Bearer {PLACEHOLDER}"] in r.json()["headers"]
    assert up.requests[-1].header("authorization") == f"Bearer {SECRET}"


def _mitm_raw(px: RunningProxy, connect_host: str = "api.openai.com") -> ssl.SSLSocket:
    import base64
    import socket

    s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
    cred = base64.b64encode(f"cordon:{px.token}".encode()).decode()
    s.sendall(f"CONNECT {connect_host}:443 HTTP/1.1\r\nProxy-Authorization: Basic {cred}\r\n\r\n".encode())
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    return ssl.create_default_context(cafile=str(px.ca_file)).wrap_socket(s, server_hostname="api.openai.com")


def _read_until_closed(s: ssl.SSLSocket) -> bytes:
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except (ssl.SSLError, OSError):
            break
        if not chunk:
            break
        out += chunk
    return out


def test_pipelined_requests_are_answered_in_order(px: RunningProxy, up: UpstreamServer) -> None:
    with _mitm_raw(px) as s:
        s.sendall(b"GET /json?a=1 HTTP/1.1\r\nHost: api.openai.com\r\n\r\n"
                  b"POST /upload HTTP/1.1\r\nHost: api.openai.com\r\nContent-Length: 3\r\n\r\nabc"
                  b"GET /json?a=3 HTTP/1.1\r\nHost: api.openai.com\r\nConnection: close\r\n\r\n")
        out = _read_until_closed(s)
    assert out.count(b"HTTP/1.1 200 ") == 3
    assert [r.target for r in up.requests] == ["/json?a=1", "/upload", "/json?a=3"]
    assert up.requests[1].body == b"abc"


def test_http10_client_gets_a_close_delimited_stream(px: RunningProxy) -> None:
    with _mitm_raw(px) as s:
        s.sendall(b"GET /chunked?n=3&size=4 HTTP/1.0\r\nHost: api.openai.com\r\n\r\n")
        out = _read_until_closed(s)
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower() and b"Connection: close" in head
    assert body == b"AAAABBBBCCCC"


def test_connect_host_matches_case_insensitively_with_trailing_dot(px: RunningProxy, up: UpstreamServer) -> None:
    with _mitm_raw(px, "API.OpenAI.com.") as s:
        s.sendall(b"GET /json HTTP/1.1\r\nHost: api.openai.com:443\r\nConnection: close\r\n\r\n")
        assert _read_until_closed(s).startswith(b"HTTP/1.1 200 ")
    assert up.requests[-1].header("authorization") == f"Bearer {SECRET}"


def test_head_request_keeps_content_length(px: RunningProxy) -> None:
    with client(px) as c:
        r = c.head("https://api.openai.com/bytes?n=12345")
    assert r.status_code == 200 and r.headers["content-length"] == "12345" and r.content == b""
