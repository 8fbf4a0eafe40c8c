"""Credential stripping, injection and echo scrubbing (pure)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cordon.core.inject import InjectionError, credential_header, rewrite_headers
from cordon.core.model import Auth, Route, Secret, SecretSpec
from cordon.core.scrub import EchoScrub, Scrubber

SPEC = SecretSpec(source="env", var="K")


def route(**auth: object) -> Route:
    return Route(name="r", host="api.example.com", auth=Auth(secret=SPEC, **auth))  # type: ignore[arg-type]


def test_header_with_and_without_scheme() -> None:
    assert credential_header(route(type="header", scheme="Bearer"), Secret("s1")) == (b"Authorization", b"Bearer s1")
    assert credential_header(route(type="header", header_name="x-api-key"), Secret("s2")) == (b"x-api-key", b"s2")


def test_basic() -> None:
    name, value = credential_header(route(type="basic", username="u"), Secret("p:w"))
    assert name == b"Authorization"
    assert base64.b64decode(value.split(b" ")[1]) == b"u:p:w"


def test_secret_with_line_break_is_refused() -> None:
    with pytest.raises(InjectionError):
        credential_header(route(type="header", scheme="Bearer"), Secret("a\r\nX-Evil: 1"))


def test_rewrite_strips_every_client_copy_and_injects_once() -> None:
    r = route(type="header", header_name="x-api-key")
    hs = [(b"X-API-KEY", b"dummy"), (b"x-api-key", b"dummy2"), (b"Authorization", b"Bearer d"),
          (b"Proxy-Authorization", b"Basic t"), (b"Accept", b"*/*")]
    out, injected = rewrite_headers(hs, r, b"/v1/x", Secret("real"))
    assert injected and out == [(b"Accept", b"*/*"), (b"x-api-key", b"real")]


def test_path_prefixes() -> None:
    r = Route(name="r", host="h", auth=Auth(type="header", secret=SPEC, scheme="Bearer"), paths=("/v1/",))
    out, injected = rewrite_headers([(b"Authorization", b"Bearer d")], r, b"/v1/messages?x=1", Secret("s"))
    assert injected and out == [(b"Authorization", b"Bearer s")]
    out, injected = rewrite_headers([(b"Authorization", b"Bearer d")], r, b"/api/telemetry", Secret("s"))
    assert not injected and out == []


def test_scrub_headers() -> None:
    sc = EchoScrub.of([(b"sk-12345", b"PH")])
    assert sc.headers([(b"X", b"a sk-12345 b"), (b"sk-12345", b"1")]) == [(b"X", b"a PH b"), (b"PH", b"1")]


def test_scrubber_across_chunk_boundaries_and_no_holdback_for_sse() -> None:
    s = Scrubber(EchoScrub.of([(b"sk-SECRET", b"dummy")]))
    assert s.feed(b'data: {"k": "sk-SEC') == b'data: {"k": "'
    assert s.feed(b'RET"}\n\n') == b'dummy"}\n\n'
    assert s.feed(b"data: x\n\n") == b"data: x\n\n"   # nothing held back: an SSE event goes out at once
    assert s.flush() == b""
    assert s.hits == 1


def test_scrubber_tail_that_is_not_a_secret_is_released_at_flush() -> None:
    s = Scrubber(EchoScrub.of([(b"sk-SECRET", b"dummy")]))
    assert s.feed(b"abc sk-S") == b"abc "
    assert s.flush() == b"sk-S"


@given(st.lists(st.sampled_from([b"sk-SECRET", b"sk-", b"SEC", b"x", b"RET", b"sk-SECsk-SECRET", b"\n\n"]),
                max_size=20), st.integers(1, 7))
def test_scrubber_equals_whole_body_replace(parts: list[bytes], step: int) -> None:
    body = b"".join(parts)
    s = Scrubber(EchoScrub.of([(b"sk-SECRET", b"[placeholder]")]))
    out = b"".join(s.feed(body[i:i + step]) for i in range(0, len(body), step)) + s.flush()
    assert out == body.replace(b"sk-SECRET", b"[placeholder]")


def test_echo_scrub_is_worked_out_once_per_secret_and_form_and_follows_a_new_value() -> None:
    """The proxy asks for every request; the answer is remembered per secret and per route form."""
    import gc

    from cordon.core.inject import _SCRUBS, echo_scrub
    bearer, basic = route(type="header", scheme="Bearer"), route(type="basic", username="u")
    s = Secret("sk-the-first-real-value-0123")
    first = echo_scrub(bearer, s)
    assert first is not None and echo_scrub(bearer, Secret("sk-the-first-real-value-0123")) is first
    as_basic = echo_scrub(basic, s)
    assert as_basic is not None and as_basic is not first
    assert base64.b64encode(b"u:sk-the-first-real-value-0123") in dict(as_basic.pairs)
    rotated = echo_scrub(bearer, Secret("sk-the-second-real-value-456"))
    assert rotated is not None and dict(rotated.pairs) == {b"sk-the-second-real-value-456": b"dummy-replaced-by-cordon"}
    del s, first, as_basic, rotated
    gc.collect()
    assert not any(k.reveal().startswith("sk-the-") for k in _SCRUBS)   # nothing outlives its secret
