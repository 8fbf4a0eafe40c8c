"""Every failure is an HTTP answer: 400, 407, 408, 421, 431, 502, 504 — and one bad connection
never disturbs the others."""

from __future__ import annotations

import base64
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from cordon.core import certs
from cordon.core.model import Route
from cordon.proxy.forward import Timeouts
from tests.ports import refused_port
from tests.proxy_harness import PLACEHOLDER, SECRET, TOKEN, RunningProxy, read_to_eof, running_proxy
from tests.upstream import UpstreamServer

_sockets: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_sockets() -> Iterator[None]:
    yield
    while _sockets:
        _sockets.pop().close()


def raw(px: RunningProxy) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
    _sockets.append(s)
    return s


@pytest.fixture
def px(up: UpstreamServer) -> Iterator[RunningProxy]:
    with running_proxy([up.route()], timeouts=Timeouts(response=1.0, head=1.0)) as p:
        yield p


def client(px: RunningProxy) -> httpx.Client:
    return httpx.Client(proxy=px.url, verify=ssl.create_default_context(cafile=str(px.ca_file)), timeout=20)


def with_address(route: Route, address: str, ca_file: Path | str | None = "keep") -> Route:
    upstream = replace(route.upstream, address=address)
    if not isinstance(ca_file, str):
        upstream = replace(upstream, ca_file=ca_file)
    return replace(route, upstream=upstream)


def proxy_auth() -> str:
    return f"Proxy-Authorization: Basic {base64.b64encode(f'cordon:{TOKEN}'.encode()).decode()}\r\n"


def mitm_socket(px: RunningProxy, host: str = "api.openai.com", sni: str | None = None) -> ssl.SSLSocket:
    s = raw(px)
    s.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n{proxy_auth()}\r\n".encode())
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    ctx = ssl.create_default_context(cafile=str(px.ca_file))
    if sni is not None:
        ctx.check_hostname = False
    t = ctx.wrap_socket(s, server_hostname=sni or host)
    _sockets.append(t)
    return t


# -- upstream failures ---------------------------------------------------------------------

def test_upstream_refused_is_502(up: UpstreamServer) -> None:
    with refused_port() as port, running_proxy([with_address(up.route(), f"127.0.0.1:{port}")]) as px, \
            client(px) as c:
        r = c.get("https://api.openai.com/v1/models")
    assert r.status_code == 502
    assert r.text.count("\n") == 1 and "refused" in r.text


def test_upstream_certificate_for_another_name_is_502() -> None:
    with UpstreamServer("evil.example") as other:
        route = other.route()
        route = replace(route, host="api.openai.com")
        with running_proxy([route]) as px, client(px) as c:
            r = c.get("https://api.openai.com/v1/models")
    assert r.status_code == 502
    assert "TLS" in r.text and "api.openai.com" in r.text
    assert other.requests == [], "nothing may be sent to an upstream that failed verification"


def test_upstream_with_untrusted_ca_is_502(up: UpstreamServer) -> None:
    with running_proxy([with_address(up.route(), up.address, ca_file=None)]) as px, client(px) as c:
        r = c.get("https://api.openai.com/v1/models")
    assert r.status_code == 502
    assert "certificate" in r.text
    assert up.requests == []


def test_upstream_tls_failure_names_the_ca_file_it_trusted(up: UpstreamServer, tmp_path: Path) -> None:
    """A route's ca_file for another CA: the 502 says which file was trusted, the first thing to check."""
    wrong = tmp_path / "wrong-ca.pem"
    wrong.write_bytes(certs.create_ca("some other CA").cert_pem)
    with running_proxy([with_address(up.route(), up.address, ca_file=wrong)]) as px, client(px) as c:
        r = c.get("https://api.openai.com/v1/models")
    assert r.status_code == 502
    assert f"(trusting the system roots and {wrong})" in r.text
    assert up.requests == []


@pytest.mark.parametrize("content", [None, b"not a certificate\n"])
def test_an_unusable_ca_file_is_502_naming_it(up: UpstreamServer, tmp_path: Path, content: bytes | None) -> None:
    bad = tmp_path / "ca.pem"
    if content is not None:
        bad.write_bytes(content)
    with running_proxy([with_address(up.route(), up.address, ca_file=bad)]) as px, client(px) as c:
        r = c.get("https://api.openai.com/v1/models")
    assert r.status_code == 502
    assert f"cannot use the CA file {bad} for upstream api.openai.com:443" in r.text
    assert up.requests == []


def test_upstream_closing_without_answer_or_sending_garbage_is_502(px: RunningProxy) -> None:
    with client(px) as c:
        r1 = c.get("https://api.openai.com/close")
        r2 = c.get("https://api.openai.com/garbage")
        r3 = c.get("https://api.openai.com/json")   # the client connection is still usable
    assert r1.status_code == 502 and "without answering" in r1.text
    assert r2.status_code == 502 and "malformed" in r2.text
    assert r3.status_code == 200


def test_upstream_timeout_is_504(px: RunningProxy) -> None:
    with client(px) as c:
        r = c.get("https://api.openai.com/slow?delay=10")
    assert r.status_code == 504
    assert "did not answer" in r.text


def test_failures_while_a_large_body_streams_up(px: RunningProxy) -> None:
    body = b"u" * 1_000_000   # over the prefetch size: sent while the response is awaited
    with client(px) as c:
        r1 = c.post("https://api.openai.com/slow?delay=10", content=body)
        r2 = c.post("https://api.openai.com/close", content=body)
        r3 = c.post("https://api.openai.com/upload", content=iter([body]))
    assert r1.status_code == 504
    assert r2.status_code == 502
    assert r3.status_code == 200 and r3.json()["body_bytes"] == len(body)


def test_missing_secret_is_502_naming_the_route(up: UpstreamServer) -> None:
    with running_proxy([up.route()], secrets={}) as px, client(px) as c:
        r = c.get("https://api.openai.com/v1/models")
    assert r.status_code == 502
    assert "route 'openai'" in r.text
    assert up.requests == []


# -- malformed client requests -------------------------------------------------------------

def test_malformed_request_is_400(px: RunningProxy, up: UpstreamServer) -> None:
    t = mitm_socket(px)
    t.sendall(b"NOT A REQUEST\r\n\r\n")
    assert read_to_eof(t).startswith(b"HTTP/1.1 400 ")
    s = raw(px)
    s.sendall(b"GET /x HTTP/1.1\r\nBad Header\r\n\r\n")
    assert read_to_eof(s).startswith(b"HTTP/1.1 400 ")
    assert up.requests == []


def test_head_over_64k_is_431(px: RunningProxy, up: UpstreamServer) -> None:
    t = mitm_socket(px)
    t.sendall(b"GET / HTTP/1.1\r\nHost: api.openai.com\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
    assert read_to_eof(t).startswith(b"HTTP/1.1 431 ")
    s = raw(px)
    s.sendall(b"CONNECT api.openai.com:443 HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
    assert read_to_eof(s).startswith(b"HTTP/1.1 431 ")
    assert up.requests == []


def test_content_length_with_transfer_encoding_is_400(px: RunningProxy, up: UpstreamServer) -> None:
    s = mitm_socket(px)
    s.sendall(b"POST /v1/x HTTP/1.1\r\nHost: api.openai.com\r\nContent-Length: 4\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    resp = read_to_eof(s)
    assert resp.startswith(b"HTTP/1.1 400 ") and b"smuggling" in resp
    assert up.requests == []


def test_slow_head_is_cut_off_with_408(px: RunningProxy) -> None:
    s = raw(px)
    s.sendall(b"CONNECT api.openai.com:443 HTTP/1.1\r\n")   # ...and never the rest (slowloris)
    resp = read_to_eof(s)
    assert resp.startswith(b"HTTP/1.1 408 ")


# -- refusals --------------------------------------------------------------------------------

def test_host_header_mismatch_is_421_and_nothing_forwarded(px: RunningProxy, up: UpstreamServer) -> None:
    s = mitm_socket(px)
    s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: attacker.example\r\n\r\n")
    assert s.recv(65536).startswith(b"HTTP/1.1 421 ")
    assert up.requests == []


def test_sni_mismatch_is_421_and_nothing_forwarded(px: RunningProxy, up: UpstreamServer) -> None:
    s = mitm_socket(px, sni="other.example")
    s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: api.openai.com\r\n\r\n")
    assert s.recv(65536).startswith(b"HTTP/1.1 421 ")
    assert up.requests == []


def test_missing_or_wrong_proxy_token_is_407(px: RunningProxy, up: UpstreamServer) -> None:
    for auth in ("", "Proxy-Authorization: Basic " + base64.b64encode(b"cordon:wrong").decode() + "\r\n",
                 "Proxy-Authorization: Bearer nope\r\n", "Proxy-Authorization: Basic !!!\r\n"):
        s = raw(px)
        s.sendall(f"CONNECT api.openai.com:443 HTTP/1.1\r\n{auth}\r\n".encode())
        resp = s.recv(65536)
        s.close()
        assert resp.startswith(b"HTTP/1.1 407 "), auth
        assert b'Proxy-Authenticate: Basic realm="cordon"' in resp
    with httpx.Client(proxy=px.bare_url) as c:
        assert c.get("http://example.org/").status_code == 407
    assert up.requests == []


# -- isolation and logs ------------------------------------------------------------------------

def test_bad_connections_do_not_disturb_others(px: RunningProxy, up: UpstreamServer) -> None:
    slow = raw(px)
    slow.sendall(b"CONNECT api.openai.com:443 HTTP/1.1\r\n")            # stalls mid-head
    junk = raw(px)
    junk.sendall(b"\x16\x03\x01garbage-that-is-not-http\r\n\r\n")       # TLS to a plain proxy port
    half = mitm_socket(px)
    half.sendall(b"POST /upload HTTP/1.1\r\nHost: api.openai.com\r\nContent-Length: 1000\r\n\r\npartial")
    with client(px) as c:
        for _ in range(3):
            assert c.get("https://api.openai.com/json").status_code == 200
    assert read_to_eof(junk).startswith(b"HTTP/1.1 400 ")
    for s in (slow, junk, half):
        s.close()


def test_logs_name_routes_but_never_secrets_or_tokens(up: UpstreamServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="cordon.proxy")
    with running_proxy([up.route()]) as px, client(px) as c:
        c.get("https://api.openai.com/v1/models?key=abc", headers={"Authorization": f"Bearer {PLACEHOLDER}"})
        c.get("https://api.openai.com/echo")
        time.sleep(0.05)
    text = caplog.text
    assert "route=openai" in text and "host=api.openai.com" in text and "status=200" in text
    assert "client=default" in text
    for forbidden in (SECRET, TOKEN, PLACEHOLDER, "Bearer", "key=abc"):
        assert forbidden not in text


def test_a_crashing_resolver_is_502_not_a_dropped_connection(up: UpstreamServer) -> None:
    class Broken:
        def resolve(self, route: Route) -> object:
            raise RuntimeError(f"backend exploded while holding {SECRET}")

    with running_proxy([up.route()], resolver=Broken()) as px, client(px) as c:
        r = c.get("https://api.openai.com/v1/models")
    assert r.status_code == 502
    assert "RuntimeError" in r.text and SECRET not in r.text


def test_unresolvable_upstream_is_502(up: UpstreamServer) -> None:
    with running_proxy([with_address(up.route(), "no-such-host.invalid:443")]) as px, client(px) as c:
        r = c.get("https://api.openai.com/v1/models")
    assert r.status_code == 502 and "resolve" in r.text


def test_tunnel_to_unresolvable_host_is_502(px: RunningProxy) -> None:
    s = raw(px)
    s.sendall(f"CONNECT no-such-host.invalid:443 HTTP/1.1\r\n{proxy_auth()}\r\n".encode())
    resp = read_to_eof(s)
    assert resp.startswith(b"HTTP/1.1 502 ") and b"resolve" in resp
