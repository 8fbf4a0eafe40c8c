"""Requests that try to move a route's credential to another host.

After `CONNECT api.openai.com:443` every request must name that host in `Host`
and in the TLS SNI (else 421, nothing forwarded); an absolute-form target inside
the tunnel must name it too. Over plain HTTP, an absolute-form request for a
route host is forwarded over verified TLS (the credential never travels in
cleartext), and a request for another host carries no credential at all.
"""

from __future__ import annotations

import pytest

from cordon.core.model import Policy
from tests.proxy_harness import PLACEHOLDER, SECRET, running_proxy
from tests.security.wire import HOST, Scene, proxy_auth_line, recv_response
from tests.upstream import UpstreamServer

H = HOST.encode()


@pytest.mark.parametrize("host", [
    b"evil.example", b"api.openai.com.evil.example", b"evil.example:443", b"api.openai.co",
    b"127.0.0.1", b"[::1]", b"api.openai.com@evil.example", b"localhost",
])
def test_host_header_naming_another_host_is_421(sc: Scene, host: bytes) -> None:
    r = sc.send(sc.tunnel(), b"GET /v1/models HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert r is not None and r.status in (400, 421), r and r.head
    assert sc.up.requests == []


@pytest.mark.parametrize("host", [b"API.OPENAI.COM", b"api.openai.com.", b"api.openai.com:443"])
def test_host_header_spellings_of_the_same_host_are_served(sc: Scene, host: bytes) -> None:
    r = sc.send(sc.tunnel(), b"GET /v1/models HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert r is not None and r.status == 200
    assert sc.up.requests[-1].header("authorization") == f"Bearer {SECRET}"


@pytest.mark.parametrize("sni", ["api.openai.com:443", "API.OPENAI.COM.:443", "api.openai.com:8443"])
def test_sni_with_a_port_naming_the_host_is_served(sc: Scene, sni: str) -> None:
    """`hey` and some other clients put `host:port` in the TLS server name: the host part counts."""
    r = sc.send(sc.tunnel(sni=sni), b"GET /v1/models HTTP/1.1\r\nHost: " + H + b"\r\n\r\n")
    assert r is not None and r.status == 200, r and r.head
    assert sc.up.requests[-1].header("authorization") == f"Bearer {SECRET}"


def test_second_host_header_is_refused(sc: Scene) -> None:
    """Two Host fields: the upstream might believe either (RFC 9112 §3.2 says 400)."""
    for hosts in ((H, b"evil.example"), (b"evil.example", H), (H, H)):
        s = sc.tunnel()
        r = sc.send(s, b"GET /v1/models HTTP/1.1\r\nHost: " + hosts[0] + b"\r\nHost: " + hosts[1] + b"\r\n\r\n")
        assert r is not None and r.status in (400, 421), hosts
    assert sc.up.requests == []


@pytest.mark.parametrize("fields", [
    b"Host: evil.example\r\n", b"Host: \r\n", b"", b"Host: " + H + b"\r\nHost: evil.example\r\n",
    b"Host: " + H + b"\r\nHost: " + H + b"\r\n",
])
def test_a_host_that_passed_on_a_connection_does_not_vouch_for_the_next_request(sc: Scene, fields: bytes) -> None:
    """The Host check is each request's own: after a served request on a kept-alive tunnel, one
    naming another host, an empty Host, none at all, or two (the same value twice too) are refused."""
    s = sc.tunnel()
    r = sc.send(s, b"GET /v1/models HTTP/1.1\r\nHost: " + H + b"\r\n\r\n")
    assert r is not None and r.status == 200
    r = sc.send(s, b"GET /v1/models HTTP/1.1\r\n" + fields + b"\r\n")
    assert r is not None and r.status in (400, 421), r and r.head
    assert len(sc.up.requests) == 1


def test_missing_host_in_http11_is_400(sc: Scene) -> None:
    r = sc.send(sc.tunnel(), b"GET /v1/models HTTP/1.1\r\nX: 1\r\n\r\n")
    assert r is not None and r.status == 400
    assert sc.up.requests == []


@pytest.mark.parametrize("sni", ["evil.example", "api.openai.com.evil.example", "localhost", "evil.example:443",
                                 "api.openai.com:443:443", "evil.example:api.openai.com"])
def test_sni_naming_another_host_is_421(sc: Scene, sni: str) -> None:
    r = sc.send(sc.tunnel(sni=sni), b"GET /v1/models HTTP/1.1\r\nHost: " + H + b"\r\n\r\n")
    assert r is not None and r.status == 421
    assert sc.up.requests == []


def test_absolute_form_inside_the_tunnel_naming_another_host_is_421(sc: Scene) -> None:
    for target in (b"https://evil.example/v1/models", b"http://evil.example/v1/models",
                   b"https://evil.example:443/v1/models"):
        r = sc.send(sc.tunnel(), b"GET " + target + b" HTTP/1.1\r\nHost: " + H + b"\r\n\r\n")
        assert r is not None and r.status == 421, target
    r = sc.send(sc.tunnel(), b"GET https://" + H + b"/v1/ok HTTP/1.1\r\nHost: " + H + b"\r\n\r\n")
    assert r is not None and r.status == 200
    assert [q.path for q in sc.up.requests] == ["/v1/ok"]


def test_after_a_421_the_connection_still_refuses_then_serves_correct_requests(sc: Scene) -> None:
    s = sc.tunnel()
    s.sendall(b"GET /v1/a HTTP/1.1\r\nHost: evil.example\r\n\r\n")
    r1 = recv_response(s)
    assert r1 is not None and r1.status == 421
    if not r1.closed:
        s.sendall(b"GET /v1/b HTTP/1.1\r\nHost: " + H + b"\r\n\r\n")
        r2 = recv_response(s)
        assert r2 is not None and r2.status == 200
    assert [q.path for q in sc.up.requests] in ([], ["/v1/b"])


def test_connect_to_a_route_host_with_another_port_still_verifies_the_route_upstream(sc: Scene) -> None:
    """CONNECT api.openai.com:8443 is the route host: intercepted, forwarded to the route's upstream."""
    s = sc.tunnel(port=8443)
    r = sc.send(s, b"GET /v1/models HTTP/1.1\r\nHost: " + H + b":8443\r\n\r\n")
    assert r is not None and r.status == 200
    assert sc.up.requests[-1].sni == HOST


# -- absolute-form over plain HTTP -----------------------------------------------------------------

@pytest.mark.parametrize("target", [
    b"http://api.openai.com/v1/models", b"HTTP://API.OPENAI.COM/v1/models", b"http://api.openai.com./v1/models",
    b"http://api.openai.com:80/v1/models", b"http://api.openai.com?x=1",
])
def test_absolute_form_to_a_route_goes_over_verified_tls(sc: Scene, target: bytes) -> None:
    s = sc.raw()
    r = sc.send(s, b"GET " + target + b" HTTP/1.1\r\nHost: evil.example\r\n" + proxy_auth_line()
                + b"Authorization: Bearer " + PLACEHOLDER.encode() + b"\r\nConnection: close\r\n\r\n")
    assert r is not None and r.status == 200, r and r.head
    rec = sc.up.requests[-1]
    assert rec.sni == HOST, "the upstream leg must be TLS"
    assert rec.header_all("host") == [HOST], "the Host header is the route's, not the client's"
    assert rec.header_all("authorization") == [f"Bearer {SECRET}"]
    assert rec.header("proxy-authorization") is None


@pytest.mark.parametrize("target", [b"http://cordon@api.openai.com/v1/models",
                                    b"http://api.openai.com:0/", b"http://api.openai.com:99999/",
                                    b"ftp://api.openai.com/", b"http:///v1/models", b"http://[::1/"])
def test_malformed_absolute_targets_are_400(sc: Scene, target: bytes) -> None:
    r = sc.send(sc.raw(), b"GET " + target + b" HTTP/1.1\r\n" + proxy_auth_line() + b"\r\n")
    assert r is not None and r.status == 400, (target, r and r.head)
    assert sc.up.requests == []


def test_plain_request_to_another_host_never_carries_the_credential(caplog: pytest.LogCaptureFixture) -> None:
    """An unmatched plain-HTTP host whose Host header claims to be the route host gets no secret,
    and neither the proxy token nor cordon's own credentials leave the machine."""
    with UpstreamServer(HOST) as route_up, UpstreamServer("127.0.0.1", tls=False) as plain, \
            running_proxy([route_up.route()], policy=Policy(allow_private=("127.0.0.1/32",))) as px:
        from tests.security.wire import Scene
        sc = Scene(up=route_up, px=px, caplog=caplog)
        try:
            r = sc.send(sc.raw(), b"GET http://127.0.0.1:%d/v1/models HTTP/1.1\r\nHost: " % plain.port + H
                        + b"\r\n" + proxy_auth_line() + b"Authorization: Bearer " + PLACEHOLDER.encode()
                        + b"\r\nConnection: close\r\n\r\n")
            assert r is not None and r.status == 200
            (rec,) = plain.requests
            assert rec.header_all("host") == [f"127.0.0.1:{plain.port}"]
            assert rec.header_all("authorization") == [f"Bearer {PLACEHOLDER}"]   # untouched, not injected
            assert SECRET not in rec.raw() and rec.header("proxy-authorization") is None
            assert route_up.requests == []
            sc.assert_nothing_leaked()
        finally:
            sc.close()
