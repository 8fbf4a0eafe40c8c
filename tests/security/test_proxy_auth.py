"""Guessing at the proxy token: every wrong form is 407 on every entry point, the comparison
runs over every stored token with equal-length digests (hmac.compare_digest), and neither
the real token nor a guess appears in a log line or reaches an upstream."""

from __future__ import annotations

import base64
import hmac
from pathlib import Path

import pytest

from cordon.core.model import Policy
from cordon.proxy.auth import ProxyAuth
from tests.proxy_harness import TOKEN
from tests.security.wire import HOST, Scene, proxy_auth_line, recv_response, scene
from tests.upstream import UpstreamServer


def basic(user_pass: bytes) -> bytes:
    return b"Basic " + base64.b64encode(user_pass)


GUESSES = [
    None, b"", b"Basic", b"Basic ", basic(b"cordon:"), basic(b"cordon:" + TOKEN.encode()[:-1]),
    basic(b"cordon:" + TOKEN.encode() + b"x"), basic(b"cordon:" + TOKEN.upper().encode()),
    basic(TOKEN.encode() + b":"), basic(TOKEN.encode()), basic(b":" + TOKEN.encode()[1:]),
    basic(b"cordon:" + TOKEN.encode() + b"\x00"), b"Basic " + base64.b64encode(b"cordon:" + TOKEN.encode())[:-2],
    b"Basic !!!!", b"Bearer " + TOKEN.encode()[:-1], b"Bearer", b"Digest username=cordon",
    b"basicc " + base64.b64encode(b"cordon:" + TOKEN.encode()), TOKEN.encode(),
]


def guess_line(g: bytes | None) -> bytes:
    return b"" if g is None else b"Proxy-Authorization: " + g + b"\r\n"


@pytest.mark.parametrize("guess", GUESSES, ids=range(len(GUESSES)))
def test_wrong_credentials_are_407_everywhere(sc: Scene, guess: bytes | None) -> None:
    g = guess_line(guess)
    for req in (b"CONNECT " + HOST.encode() + b":443 HTTP/1.1\r\n" + g + b"\r\n",
                b"CONNECT example.org:443 HTTP/1.1\r\n" + g + b"\r\n",
                b"GET http://" + HOST.encode() + b"/v1/models HTTP/1.1\r\n" + g + b"\r\n",
                b"GET http://example.org/ HTTP/1.1\r\n" + g + b"\r\n"):
        r = sc.send(sc.raw(), req)
        assert r is not None and r.status == 407, (req, r)
        assert r.header("proxy-authenticate") == 'Basic realm="cordon"'
    r = sc.send(sc.raw(), b"GET /status HTTP/1.1\r\n" + g + b"\r\n")
    assert r is not None and r.status == 401
    assert sc.up.requests == []
    if guess and len(guess) > 8:
        assert guess.decode("latin-1") not in sc.caplog.text


def test_bearer_proxy_authorization_is_refused_even_with_the_right_token(sc: Scene) -> None:
    """Only the documented form opens the proxy: `Proxy-Authorization: Basic`. `Bearer` is refused
    on every entry point; `/status` takes `Authorization: Bearer <token>` (and only there)."""
    g = b"Proxy-Authorization: Bearer " + TOKEN.encode() + b"\r\n"
    for req in (b"CONNECT " + HOST.encode() + b":443 HTTP/1.1\r\n" + g + b"\r\n",
                b"CONNECT example.org:443 HTTP/1.1\r\n" + g + b"\r\n",
                b"GET http://" + HOST.encode() + b"/v1/models HTTP/1.1\r\n" + g + b"\r\n"):
        r = sc.send(sc.raw(), req)
        assert r is not None and r.status == 407, (req, r)
    r = sc.send(sc.raw(), b"GET /status HTTP/1.1\r\n" + g + b"\r\n")
    assert r is not None and r.status == 401
    r = sc.send(sc.raw(), b"GET /status HTTP/1.1\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n\r\n")
    assert r is not None and r.status == 200
    assert sc.up.requests == []


def test_many_guesses_on_one_connection_then_the_right_token(sc: Scene) -> None:
    s = sc.raw()
    for i in range(300):
        s.sendall(b"GET http://example.org/ HTTP/1.1\r\nProxy-Authorization: "
                  + basic(b"cordon:guess-%d" % i) + b"\r\n\r\n")
        r = recv_response(s)
        assert r is not None and r.status == 407 and not r.closed
    s.sendall(b"CONNECT " + HOST.encode() + b":443 HTTP/1.1\r\n" + proxy_auth_line() + b"\r\n")
    r = recv_response(s)
    assert r is not None and r.status == 200
    assert "guess-" not in sc.caplog.text


def test_a_wrong_first_proxy_authorization_field_is_not_rescued_by_a_second(sc: Scene) -> None:
    r = sc.send(sc.raw(), b"CONNECT " + HOST.encode() + b":443 HTTP/1.1\r\nProxy-Authorization: "
                + basic(b"cordon:wrong") + b"\r\n" + proxy_auth_line() + b"\r\n")
    assert r is not None and r.status == 407


def test_request_body_after_a_407_is_not_read_as_a_request(sc: Scene) -> None:
    """A POST refused with 407 closes the connection: its body is never parsed as the next request."""
    smuggled = b"CONNECT " + HOST.encode() + b":443 HTTP/1.1\r\n" + proxy_auth_line() + b"\r\n"
    s = sc.raw()
    s.sendall(b"POST http://example.org/ HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(smuggled) + smuggled)
    r = recv_response(s)
    assert r is not None and r.status == 407 and r.closed
    assert recv_response(s) is None


def test_comparison_is_over_every_token_with_equal_length_digests(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr("cordon.proxy.auth.hmac.compare_digest", counting)
    pa = ProxyAuth({"tok-one-" + "a" * 40: "one", "tok-two-" + "b" * 40: "two", TOKEN: "three"})
    for presented in (TOKEN.encode(), b"tok-one-" + b"a" * 40, b"", b"x", b"t" * 10_000, TOKEN.encode()[:-1]):
        calls.clear()
        pa.check_token(presented)
        assert len(calls) == 3, "every stored token must be compared, whether or not one matched"
        assert all(a == b == 32 for a, b in calls), "fixed-length digests: timing says nothing about length"
    assert pa.check_token(TOKEN.encode()) == "three"
    assert pa.check_header(basic(b"anyone:" + TOKEN.encode())) == "three"
    assert pa.check_header(b"Bearer " + TOKEN.encode(), bearer=True) == "three"


def test_a_remembered_header_lets_no_near_miss_through(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Proxy-Authorization value that passed is remembered (plain-HTTP clients send it on
    every request); what is recognised is that whole value, compared in constant time with
    every remembered one, and the memory is bounded."""
    pa = ProxyAuth({TOKEN: "main", "tok-two-" + "b" * 40: "two"})
    good = basic(b"cordon:" + TOKEN.encode())
    assert pa.check_header(good) == "main"
    assert pa.check_header(basic(b"cordon:tok-two-" + b"b" * 40)) == "two"
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("cordon.proxy.auth.hmac.compare_digest", counting)
    assert pa.check_header(good) == "main"
    assert len(calls) == 2, "every remembered value is compared, whether or not one matched"
    flipped = good[:-12] + bytes([good[-12] ^ 1]) + good[-11:]
    assert pa.check_header(flipped) is None
    assert pa.check_header(basic(b"cordon:" + TOKEN.encode()[:-1] + b"x")) is None
    fresh = ProxyAuth({TOKEN: "main", "tok-two-" + "b" * 40: "two"})
    for other in (good[:-1], good + b"=", good.lower(), b" " + good[1:], good + b" ", b"x" + good):
        assert pa.check_header(other) == fresh.check_header(other), other   # remembering changes no answer
    assert pa.check_header(good, bearer=True) is None   # the memory is for Basic Proxy-Authorization only
    monkeypatch.undo()
    for i in range(40):   # any user name: each a distinct accepted value
        assert pa.check_header(basic(b"user%d:" % i + TOKEN.encode())) == "main"
    assert len(pa._passed) <= 16


def test_a_near_miss_after_the_right_token_on_one_connection_is_407(sc: Scene) -> None:
    s = sc.raw()
    good = proxy_auth_line()
    req = b"GET http://" + HOST.encode() + b"/v1/models HTTP/1.1\r\n"
    r = sc.send(s, req + good + b"\r\n")
    assert r is not None and r.status == 200 and not r.closed
    near = good[:-14] + bytes([good[-14] ^ 1]) + good[-13:]
    s.sendall(req + near + b"\r\n")
    r = recv_response(s)
    assert r is not None and r.status == 407
    assert len(sc.up.requests) == 1


def test_a_revoked_token_is_refused_after_it_passed(tmp_path: Path) -> None:
    """The remembered values belong to one token set: revoking or rotating a token makes the
    next check of a value that passed before fail (the running proxy's token file)."""
    from cordon.app.start import token_auth
    from cordon.store.tokens import TokenStore, TokenWatcher

    store = TokenStore(tmp_path / "tokens.toml")
    codex, main = store.ensure("codex"), store.ensure("default")
    auth = token_auth(TokenWatcher(store.path))
    h_codex, h_main = basic(b"cordon:" + codex.encode()), basic(b"cordon:" + main.encode())
    for _ in range(2):
        assert auth.check_header(h_codex) == "codex"
        assert auth.check_header(h_main) == "default"
    store.revoke("codex")
    assert auth.check_header(h_codex) is None
    store.rotate("default")
    assert auth.check_header(h_main) is None
    assert auth.check_header(basic(b"cordon:" + store.load()["default"].encode())) == "default"


def test_a_token_rotated_between_two_requests_of_one_connection_is_407(tmp_path: Path) -> None:
    """A plain-HTTP connection keeps the client its repeated fields named, for the token set
    that named it: a rotation between two requests makes the next one 407, on the same
    connection (the running proxy's token file, re-read by a stat per check here)."""
    import socket

    from cordon.app.start import token_auth
    from cordon.store.tokens import TokenStore, TokenWatcher
    from tests.proxy_harness import running_proxy

    store = TokenStore(tmp_path / "tokens.toml")
    old = store.ensure("default")
    with UpstreamServer("127.0.0.1", tls=False) as plain, \
            running_proxy([], policy=Policy(allow_private=("127.0.0.1/32",)), token=old,
                          auth=token_auth(TokenWatcher(store.path))) as px, \
            socket.create_connection(("127.0.0.1", px.port), timeout=10) as s:
        req = (b"GET http://127.0.0.1:%d/x HTTP/1.1\r\nProxy-Authorization: " % plain.port
               + basic(b"cordon:" + old.encode()) + b"\r\n\r\n")
        for _ in range(2):
            s.sendall(req)
            r = recv_response(s)
            assert r is not None and r.status == 200 and not r.closed
        store.rotate("default")
        s.sendall(req)
        r = recv_response(s)
        assert r is not None and r.status == 407
        assert len(plain.requests) == 2


def test_the_token_never_reaches_an_upstream(caplog: pytest.LogCaptureFixture) -> None:
    """Proxy-Authorization is hop-by-hop: stripped on the MITM, plain-HTTP and route legs,
    even when a client repeats it inside the TLS tunnel."""
    with UpstreamServer("127.0.0.1", tls=False) as plain, \
            scene(caplog, policy=Policy(allow_private=("127.0.0.1/32",))) as sc:
        s = sc.tunnel()
        sc.send(s, b"GET /v1/models HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n" + proxy_auth_line() + b"\r\n")
        sc.send(sc.raw(), b"GET http://" + HOST.encode() + b"/v1/models HTTP/1.1\r\n" + proxy_auth_line()
                + b"Connection: close\r\n\r\n")
        sc.send(sc.raw(), b"GET http://127.0.0.1:%d/x HTTP/1.1\r\n" % plain.port + proxy_auth_line()
                + b"Connection: proxy-authorization\r\nConnection: close\r\n\r\n")
        recs = sc.up.requests + plain.requests
        assert len(recs) == 3
        for rec in recs:
            assert rec.header("proxy-authorization") is None
            assert TOKEN not in rec.raw()
        sc.assert_nothing_leaked()


def test_health_needs_no_token_and_reveals_nothing(sc: Scene) -> None:
    r = sc.send(sc.raw(), b"GET /health HTTP/1.1\r\n\r\n")
    assert r is not None and r.status == 200
    assert b"openai" not in r.body and HOST.encode() not in r.body
