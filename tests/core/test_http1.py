"""HTTP/1.1 framing without sockets: heads, framing decisions, chunked decoding, hop-by-hop."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cordon.core.errors import ProtocolError
from cordon.core.http1 import (
    MAX_HEAD,
    NO_BODY,
    ChunkedDecoder,
    FieldMemo,
    encode_chunk,
    end_chunks,
    find_head_end,
    parse_request_head,
    parse_response_head,
    request_framing,
    response_framing,
    strip_hop_by_hop,
)


def req(raw: bytes):  # type: ignore[no-untyped-def]
    return parse_request_head(raw)


def test_parse_request_keeps_order_and_case() -> None:
    r = req(b"POST /v1/x?q=1 HTTP/1.1\r\nHost: a\r\nX-Api-Key:  k \r\nx-api-key: k2\r\n\r\n")
    assert (r.method, r.target, r.version) == (b"POST", b"/v1/x?q=1", b"HTTP/1.1")
    assert r.headers == [(b"Host", b"a"), (b"X-Api-Key", b"k"), (b"x-api-key", b"k2")]
    assert r.keep_alive


def test_a_head_ends_at_the_first_blank_line_whatever_its_line_endings() -> None:
    """`X: y\\n\\r\\n` ends the head (as in h11): what follows is a body, not more fields."""
    for sep in (b"\r\n\r\n", b"\n\n", b"\r\n\n", b"\n\r\n"):
        raw = b"GET / HTTP/1.1\r\nHost: a\r\nX: y" + sep + b"Content-Length: 5\r\n\r\nhello"
        end = find_head_end(raw)
        assert raw[end:] == b"Content-Length: 5\r\n\r\nhello", sep
        assert request_framing(req(raw[:end])) == NO_BODY, sep


def test_leading_blank_lines_and_bare_lf() -> None:
    assert req(b"\r\nGET / HTTP/1.0\nHost: a\n\n").version == b"HTTP/1.0"
    assert find_head_end(b"GET / HTTP/1.1\nA: b\n\nrest") == len(b"GET / HTTP/1.1\nA: b\n\n")
    assert find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n") == -1


@pytest.mark.parametrize("raw", [
    b"GET /\r\n\r\n", b"GET  / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\nNo colon\r\n\r\n",
    b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nA: b\x00c\r\n\r\n", b"G(ET / HTTP/1.1\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
])
def test_malformed_requests_are_400(raw: bytes) -> None:
    with pytest.raises(ProtocolError) as ei:
        req(raw)
    assert ei.value.status == 400


def test_error_messages_do_not_echo_header_content() -> None:
    with pytest.raises(ProtocolError) as ei:
        req(b"GET / HTTP/1.1\r\nAuthorization Bearer sk-secret\r\n\r\n")
    assert "sk-secret" not in ei.value.message


def test_http2_preface_is_505_and_huge_head_431() -> None:
    with pytest.raises(ProtocolError) as ei:
        req(b"PRI * HTTP/2.0\r\n\r\n")
    assert ei.value.status == 505
    with pytest.raises(ProtocolError) as ei:
        req(b"GET / HTTP/1.1\r\nA: " + b"x" * MAX_HEAD + b"\r\n\r\n")
    assert ei.value.status == 431


def test_request_framing() -> None:
    assert request_framing(req(b"GET / HTTP/1.1\r\n\r\n")).kind == "none"
    assert request_framing(req(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n")).length == 5
    assert request_framing(req(b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n")).length == 5
    assert request_framing(req(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")).kind == "chunked"
    for bad, status in [(b"Content-Length: 5\r\nTransfer-Encoding: chunked", 400),
                        (b"Content-Length: 5\r\nContent-Length: 6", 400),
                        (b"Content-Length: -1", 400), (b"Content-Length: 0x10", 400),
                        (b"Transfer-Encoding: gzip", 400), (b"Transfer-Encoding: gzip, chunked", 501)]:
        with pytest.raises(ProtocolError) as ei:
            request_framing(req(b"POST / HTTP/1.1\r\n" + bad + b"\r\n\r\n"))
        assert ei.value.status == status, bad


def test_response_framing() -> None:
    def resp(extra: bytes, status: int = 200):  # type: ignore[no-untyped-def]
        return parse_response_head(b"HTTP/1.1 %d X\r\n" % status + extra + b"\r\n")

    assert response_framing(b"HEAD", resp(b"Content-Length: 10\r\n")).kind == "none"
    assert response_framing(b"GET", resp(b"", 204)).kind == "none"
    assert response_framing(b"GET", resp(b"", 304)).kind == "none"
    assert response_framing(b"GET", resp(b"Content-Length: 10\r\n")).length == 10
    assert response_framing(b"GET", resp(b"Transfer-Encoding: chunked\r\n")).kind == "chunked"
    assert response_framing(b"GET", resp(b"")).kind == "close"
    with pytest.raises(ProtocolError) as ei:
        parse_response_head(b"garbage\r\n\r\n")
    assert ei.value.status == 502


def test_chunked_decoder_byte_by_byte_with_trailers_and_next_message() -> None:
    wire = b"5;ext=1\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\nX-T: 1\r\n\r\nGET /next"
    dec = ChunkedDecoder()
    out = b"".join(dec.feed(wire[i:i + 1]) for i in range(len(wire)))
    assert out == b"hello world!" and dec.done
    assert dec.trailers == [(b"X-T", b"1")]
    assert dec.unused == b"GET /next"


@pytest.mark.parametrize("bad", [b"zz\r\n", b"5\r\nhelloXX", b"1" * 20 + b"\r\n"])
def test_chunked_decoder_rejects_garbage(bad: bytes) -> None:
    with pytest.raises(ProtocolError):
        ChunkedDecoder().feed(bad)


@given(st.lists(st.binary(min_size=1, max_size=300), max_size=8), st.integers(1, 50))
def test_chunked_roundtrip(chunks: list[bytes], step: int) -> None:
    wire = b"".join(encode_chunk(c) for c in chunks) + end_chunks()
    dec = ChunkedDecoder()
    out = b"".join(dec.feed(wire[i:i + step]) for i in range(0, len(wire), step))
    assert out == b"".join(chunks) and dec.done and dec.unused == b""


def test_strip_hop_by_hop_including_connection_named_fields() -> None:
    hs = [(b"Connection", b"keep-alive, X-Secret-Hop"), (b"X-Secret-Hop", b"1"), (b"Keep-Alive", b"5"),
          (b"Proxy-Authorization", b"Basic x"), (b"TE", b"trailers"), (b"Transfer-Encoding", b"chunked"),
          (b"Upgrade", b"h2c"), (b"Proxy-Connection", b"keep-alive"), (b"Content-Length", b"3"),
          (b"Accept", b"*/*")]
    assert strip_hop_by_hop(hs) == [(b"Accept", b"*/*")]


# -- FieldMemo: a keep-alive connection's repeated fields are parsed once ---------------------------

def _parsed(head: bytes, memo: FieldMemo | None = None) -> tuple[object, ...]:
    try:
        r = parse_request_head(head, memo)
    except ProtocolError as e:
        return ("refused", e.status, e.message)
    return (r.method, r.target, r.version, list(r.headers))


FIELDS = b"Host: a\r\nProxy-Authorization: Basic eA==\r\nAccept: */*\r\n\r\n"


def test_a_repeated_field_block_is_parsed_once_and_means_the_same() -> None:
    memo = FieldMemo()
    first = parse_request_head(b"GET http://a/1 HTTP/1.1\r\n" + FIELDS, memo)
    second = parse_request_head(b"POST http://b/2?x HTTP/1.0\r\n" + FIELDS, memo)
    assert second.headers is first.headers   # reused: callers may key derived values on it
    assert (second.method, second.target, second.version) == (b"POST", b"http://b/2?x", b"HTTP/1.0")
    assert _parsed(b"POST http://b/2?x HTTP/1.0\r\n" + FIELDS) == _parsed(b"POST http://b/2?x HTTP/1.0\r\n"
                                                                           + FIELDS, memo)


@pytest.mark.parametrize("line", [b"GET http://a/#frag HTTP/1.1", b"GET  http://a/ HTTP/1.1", b"GET http://a/ HTTP/2.0",
                                  b"G(T http://a/ HTTP/1.1", b"GET http://a/\x7f HTTP/1.1"])
def test_the_request_line_is_checked_every_time_whatever_the_memo(line: bytes) -> None:
    memo = FieldMemo()
    parse_request_head(b"GET http://a/ HTTP/1.1\r\n" + FIELDS, memo)
    assert _parsed(line + b"\r\n" + FIELDS, memo) == _parsed(line + b"\r\n" + FIELDS)
    assert _parsed(line + b"\r\n" + FIELDS, memo)[0] == "refused"


@given(st.lists(st.sampled_from([FIELDS, b"Host: a\r\n\r\n", b"Host: a\r\nX: \x01\r\n\r\n", b"Host: a\r\n b\r\n\r\n",
                                 b"Host: a\r\nContent-Length: 3\r\n\r\n", b"Host: a\nAccept: */*\n\n",
                                 FIELDS[:-2] + b"X: 1\r\n\r\n", b"Host:a\r\nHost:a\r\n\r\n"]), max_size=8))
def test_a_connection_s_heads_parse_as_they_would_each_alone(blocks: list[bytes]) -> None:
    """Whatever sequence of field blocks one connection sends, each head (good or refused)
    parses exactly as it would without the memo."""
    memo = FieldMemo()
    for i, block in enumerate(blocks):
        head = b"GET http://a/%d HTTP/1.1\r\n" % i + block
        assert _parsed(head, memo) == _parsed(head)
