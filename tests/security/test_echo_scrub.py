"""Echo scrubbing: an upstream that sends the credential back never shows it to the client, in any
form cordon sent it (the secret, and `base64(user:secret)` of a `basic` route), in any place of the
response cordon reads (status line reason phrase, 1xx heads, header names and values, the body
however it is split), on every response from a route host, injected or not.

Not claimed (SECURITY.md): compressed bodies, transformed echoes, WebSocket frames."""

from __future__ import annotations

import base64
import itertools
import socket
import ssl
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from cordon.core.scrub import EchoScrub
from tests.proxy_harness import PLACEHOLDER, SECRET, RunningProxy, read_to_eof, running_proxy
from tests.security.scripted import ScriptedUpstream
from tests.security.wire import proxy_auth_line, recv_response

HOST = "api.openai.com"
S = SECRET.encode()
P = PLACEHOLDER.encode()


def fetch(px: RunningProxy, path: str, auth: bytes = b"Bearer " + P) -> bytes:
    """Everything the client receives for one request through a CONNECT tunnel (Connection: close)."""
    s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
    with s:
        s.sendall(f"CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n".encode() + proxy_auth_line() + b"\r\n")
        r = recv_response(s)
        assert r is not None and r.status == 200
        ctx = ssl.create_default_context(cafile=str(px.ca_file))
        with ctx.wrap_socket(s, server_hostname=HOST) as t:
            t.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n".encode()
                      + b"Authorization: " + auth + b"\r\n\r\n")
            return read_to_eof(t)


def header(req: bytes, name: bytes) -> bytes:
    for line in req.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == name:
            return v.strip()
    return b""


def echo_authorization(req: bytes) -> bytes:
    v = header(req, b"authorization")
    return b"HTTP/1.1 200 OK\r\nX-Echo: " + v + b"\r\nContent-Length: %d\r\n\r\n" % len(v) + v


def test_basic_credential_echo_is_scrubbed_in_the_form_it_was_sent() -> None:
    sent = base64.b64encode(b"user:" + S)
    with ScriptedUpstream(echo_authorization) as up, \
            running_proxy([up.route(auth_type="basic", username="user", scheme=None)]) as px:
        got = fetch(px, "/v1/x", auth=b"Basic " + base64.b64encode(b"user:" + P))
        assert header(up.requests[-1], b"authorization") == b"Basic " + sent   # it was injected
    assert sent not in got and S not in got
    assert got.count(base64.b64encode(b"user:" + P)) == 2   # the header and the body, in the client's form


def test_reason_phrases_and_header_names_are_scrubbed() -> None:
    answer = (b"HTTP/1.1 103 " + S + b"\r\nLink: </a>; rel=preload\r\n\r\n"
              b"HTTP/1.1 200 key " + S + b"\r\nx-" + S + b": 1\r\nx-v: " + S + b"\r\nContent-Length: 2\r\n\r\nok")
    with ScriptedUpstream(lambda req: answer) as up, running_proxy([up.route()]) as px:
        got = fetch(px, "/v1/x")
    assert got.startswith(b"HTTP/1.1 103 " + P + b"\r\n"), got
    assert b"HTTP/1.1 200 key " + P + b"\r\n" in got
    assert b"\r\nx-" + P + b": 1\r\n" in got and b"\r\nx-v: " + P + b"\r\n" in got
    assert S not in got


def test_responses_outside_the_route_paths_are_scrubbed() -> None:
    def answer(req: bytes) -> bytes:
        body = b'{"leaked": "' + S + b'"}'
        return b"HTTP/1.1 200 OK\r\nx-k: " + S + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body

    with ScriptedUpstream(answer) as up, running_proxy([up.route(paths=("/v1/",))]) as px:
        got = fetch(px, "/api/event_logging")
        assert header(up.requests[-1], b"authorization") == b""   # not injected here
    assert S not in got and got.count(P) == 2


def test_a_second_copy_after_a_placeholder_formed_with_its_start_is_scrubbed() -> None:
    """The secret begins with the placeholder's end ("cordon"): text that spells the placeholder with
    the start of a second copy must not make the scrubber skip that copy's held-back start."""
    secret = b"cordon-SECRET-0123456789"
    sc = EchoScrub.of([(secret, P)]).scrubber()
    out = sc.feed(secret + b"dummy-replaced-by-" + secret[:6]) + sc.feed(secret[6:]) + sc.flush()
    assert secret not in out


PLACEHOLDERS = st.one_of(st.just(P), st.binary(max_size=12), st.sampled_from([b"", b"*", b"cordon", b"ab"]))


@st.composite
def cases(draw: st.DrawFn) -> tuple[bytes, bytes, bytes, list[int]]:
    secret = draw(st.one_of(st.binary(min_size=8, max_size=24),
                            st.builds(lambda a, b: a + b, st.sampled_from([b"cordon", b"by-cordon", b"ab", b"a"]),
                                      st.binary(min_size=8, max_size=16))))
    placeholder = draw(st.one_of(PLACEHOLDERS, st.builds(lambda k: secret[:k], st.integers(0, 8)),
                                 st.builds(lambda k: secret[-k:], st.integers(1, 8)),
                                 st.builds(lambda k: b"x" + secret[k:] + b"y", st.integers(1, 4))))
    pieces = st.one_of(st.just(secret), st.just(placeholder), st.binary(max_size=8),
                       st.builds(lambda k: secret[:k], st.integers(1, 23)),
                       st.builds(lambda k: secret[k:], st.integers(1, 23)), st.just(P))
    body = b"".join(draw(st.lists(pieces, max_size=12)))
    cuts = sorted(draw(st.lists(st.integers(0, max(0, len(body))), max_size=10)))
    return secret, placeholder, body, cuts


def split(body: bytes, cuts: list[int]) -> list[bytes]:
    edges = [0, *cuts, len(body)]
    return [body[a:b] for a, b in itertools.pairwise(edges)]


@settings(max_examples=400, deadline=None)
@given(cases())
@example((b"cordon-SECRET-0123456789", P, b"cordon-SECRET-0123456789dummy-replaced-by-cordon-SECRET-0123456789",
          [24 + 18 + 6]))
@example((b"cordon\x00\x00", b"", b"dummy-replaced-by-cordoncordon\x00\x00\x00\x00", []))   # an empty placeholder
def test_any_split_of_any_body_leaves_no_copy(case: tuple[bytes, bytes, bytes, list[int]]) -> None:
    secret, placeholder, body, cuts = case
    scrub = EchoScrub.of([(secret, placeholder)])
    sc = scrub.scrubber()
    out = b"".join(sc.feed(part) for part in split(body, cuts)) + sc.flush()
    assert secret not in out
    assert out == scrub.scrub(body), "the split never changes the result"
    if secret not in body:
        assert out == body


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=16), st.lists(st.sampled_from([b"A", b"B", b"x", b"user:", b":"]),
                                                    max_size=10), st.lists(st.integers(0, 200), max_size=8))
def test_every_form_of_a_basic_credential_is_scrubbed(secret: bytes, junk: list[bytes], cuts: list[int]) -> None:
    b64 = base64.b64encode(b"user:" + secret)
    scrub = EchoScrub.of([(secret * 8, P), (b64, base64.b64encode(b"user:" + P))])
    body = b"".join(j + (b64 if i % 2 else secret * 8) for i, j in enumerate(junk))
    sc = scrub.scrubber()
    out = b"".join(sc.feed(part) for part in split(body, sorted(c for c in cuts if c <= len(body)))) + sc.flush()
    assert b64 not in out and secret * 8 not in out


def test_documented_limits_are_listed_in_security_md() -> None:
    text = (Path(__file__).parents[2] / "SECURITY.md").read_text()
    for limit in ("compressed bodies", "transformed echoes", "WebSocket frames"):
        assert limit in text
