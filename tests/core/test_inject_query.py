"""The credential in a query parameter (`type = "query"`, or a header route's `query_param`)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cordon.core.inject import InjectionError, rewrite_query, rewrite_request
from cordon.core.model import Auth, Route, Secret, SecretSpec

SPEC = SecretSpec(source="env", var="K")
GEMINI = Route(name="gemini", host="generativelanguage.googleapis.com",
               auth=Auth(type="header", secret=SPEC, header_name="x-goog-api-key", query_param="key"))
QUERY = Route(name="q", host="api.example.com", auth=Auth(type="query", secret=SPEC, query_param="api_key"),
              paths=("/v1/",))


def test_header_route_puts_the_key_where_the_client_put_its_own() -> None:
    # litellm: ?key=<placeholder>, and an x-goog-api-key of its own too
    hs = [(b"x-goog-api-key", b"dummy"), (b"Accept", b"*/*")]
    out, path, injected = rewrite_request(hs, GEMINI, b"/v1beta/models/m:generateContent?key=dummy&alt=sse",
                                          Secret("AIza-real"))
    assert injected and path == b"/v1beta/models/m:generateContent?alt=sse&key=AIza-real"
    assert out == [(b"Accept", b"*/*")]                 # never both places
    # the Gemini CLI: the header only
    out, path, injected = rewrite_request(hs, GEMINI, b"/v1beta/models/m:streamGenerateContent?alt=sse",
                                          Secret("AIza-real"))
    assert injected and path == b"/v1beta/models/m:streamGenerateContent?alt=sse"
    assert out == [(b"Accept", b"*/*"), (b"x-goog-api-key", b"AIza-real")]


@pytest.mark.parametrize("query", [b"key=a&key=b", b"%6Bey=a", b"k%65y=a&x=1", b"key", b"key=&x=1"])
def test_every_spelling_of_the_clients_copy_is_stripped(query: bytes) -> None:
    path, injected = rewrite_query(b"/p?" + query, GEMINI, Secret("REAL"))
    assert injected
    _, _, q = path.partition(b"?")
    assert q.split(b"&")[-1] == b"key=REAL"
    assert q.count(b"key") == 1 and b"=a" not in q and b"=b" not in q


def test_query_type_always_injects_in_scope_and_only_strips_out_of_scope() -> None:
    assert rewrite_query(b"/v1/x", QUERY, Secret("s p&c")) == (b"/v1/x?api_key=s%20p%26c", True)
    assert rewrite_query(b"/other?api_key=dummy&a=1", QUERY, Secret("s")) == (b"/other?a=1", False)
    assert rewrite_query(b"/other?api_key=dummy", QUERY, Secret("s")) == (b"/other", False)
    out, path, injected = rewrite_request([(b"Authorization", b"Bearer x")], QUERY, b"/v1/x", Secret("s"))
    assert out == [] and path == b"/v1/x?api_key=s" and injected


def test_no_query_param_leaves_the_target_alone() -> None:
    r = Route(name="r", host="h", auth=Auth(type="header", secret=SPEC, scheme="Bearer"))
    assert rewrite_query(b"/a?key=dummy", r, Secret("s")) == (b"/a?key=dummy", False)


def test_line_break_in_the_secret_is_refused() -> None:
    with pytest.raises(InjectionError):
        rewrite_query(b"/v1/x", QUERY, Secret("a\r\nb"))


@given(st.lists(st.sampled_from([b"key=dummy", b"a=1", b"key", b"b=%6Bey", b"", b"%6bey=x"]), max_size=6))
def test_the_placeholder_never_survives_and_the_key_is_there_once(pieces: list[bytes]) -> None:
    path, injected = rewrite_query(b"/x?" + b"&".join(pieces), GEMINI, Secret("REAL"))
    had = any(p.split(b"=")[0] in (b"key", b"%6Bey", b"%6bey") for p in pieces)
    assert injected == had
    assert b"dummy" not in path and path.count(b"REAL") == (1 if had else 0)


def test_the_encoded_form_the_query_carried_is_scrubbed_from_echoes() -> None:
    from cordon.core.inject import echo_scrub
    scrub = echo_scrub(GEMINI, Secret("AIza/real+key=1"))
    assert scrub is not None
    out = scrub.scrub(b"GET /x?key=AIza%2Freal%2Bkey%3D1 and AIza/real+key=1")
    assert out == b"GET /x?key=dummy-replaced-by-cordon and dummy-replaced-by-cordon"
