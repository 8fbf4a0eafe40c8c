"""h11 as a differential oracle for cordon.core.http1.

The same bytes go to both parsers. Whenever cordon accepts a head, h11 must
accept it too and agree on the method, target, version, status, every header
(in order) and the body framing: a head the proxy understands differently from
a mainstream parser is how request smuggling starts. cordon may refuse more
than h11 does (it is a proxy; obs-fold, for one, is refused with 400), so a
head only cordon refuses is not a failure.
"""

from __future__ import annotations

import h11
from h11._connection import _body_framing  # the framing decision h11 acts on
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cordon.core import http1
from cordon.core.errors import ProtocolError
from cordon.core.http1 import (
    Framing,
    find_head_end,
    parse_request_head,
    parse_response_head,
    request_framing,
    response_framing,
)

ORACLE = settings(max_examples=400, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow])

token = st.text(alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
                min_size=1, max_size=12).map(str.encode)
# Host is left out: one Host per request is checked by the MITM layer (cordon.proxy.mitm), not here
names = st.one_of(token, st.sampled_from([b"Content-Length", b"content-length", b"Transfer-Encoding",
                                          b"transfer-encoding", b"Connection", b"Upgrade", b"TE"])
                  ).filter(lambda n: n.lower() != b"host")
framing_values = st.sampled_from([b"0", b"5", b"12", b"007", b"5, 5", b"5,5", b"5, 6", b"-1", b"+5", b" 5", b"5 ",
                                  b"1e3", b"", b"chunked", b"Chunked", b"gzip", b"gzip, chunked",
                                  b"chunked, chunked", b"chunked,", b"identity", b"close", b"keep-alive"])
plain_values = st.binary(max_size=20)
field_line = st.tuples(names, st.sampled_from([b":", b": ", b":\t", b" :", b"  : "]),
                       st.one_of(framing_values, plain_values)).map(lambda t: t[0] + t[1] + t[2])
noise_line = st.sampled_from([b" folded", b"\tfolded", b"no colon", b": no name"])
fields = st.lists(st.one_of(field_line, field_line, field_line, noise_line), max_size=6)
eol = st.sampled_from([b"\r\n", b"\n"])
# what follows the head on the wire: nothing yet, a body, or what could pass for more fields
after = st.sampled_from([b"", b"hello", b"Content-Length: 5\r\n\r\nhello", b"X-More: 1\r\n\r\n"])


def _head(draw: st.DrawFn, start: bytes, lines: list[bytes]) -> bytes:
    """Each line, and the blank line, ends in CRLF or a bare LF: mixed endings are where parsers
    disagree on where a head ends."""
    head = b"".join(ln + draw(eol) for ln in [start, *lines, b""])
    return head + draw(after)


@st.composite
def request_heads(draw: st.DrawFn) -> bytes:
    method = draw(st.one_of(st.sampled_from([b"GET", b"POST", b"PUT", b"HEAD", b"DELETE"]), token))
    target = draw(st.sampled_from([b"/", b"/v1/models?x=1", b"*", b"https://api.openai.com/v1", b"/a b", b""]))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.1", b"HTTP/2", b"http/1.1"]))
    lines = [b"Host: api.openai.com", *draw(fields)]   # h11 requires Host on HTTP/1.1; cordon does not care
    return _head(draw, method + b" " + target + b" " + version, lines)


@st.composite
def response_heads(draw: st.DrawFn) -> tuple[bytes, bytes]:
    status = draw(st.sampled_from([b"200", b"204", b"304", b"404", b"502", b"299", b"20", b"2000", b"abc"]))
    reason = draw(st.sampled_from([b" OK", b" Not Found", b"", b" ", b" weird reason"]))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.1", b"HTTP/2"]))
    method = draw(st.sampled_from([b"GET", b"HEAD", b"POST", b"CONNECT"]))
    return method, _head(draw, version + b" " + status + reason, draw(fields))


def _h11_needs_data(conn: h11.Connection) -> bool:
    try:
        return conn.next_event() is h11.NEED_DATA
    except h11.RemoteProtocolError:
        return True   # h11 refuses what it has so far; cordon refuses once the head is complete


def _h11_framing(method: bytes, event: h11.Request | h11.Response) -> tuple[str, int]:
    kind, args = _body_framing(method, event)
    return (("length", args[0]) if args else ("length", 0)) if kind == "content-length" else (kind, 0)


def _ours(f: Framing) -> tuple[str, int]:
    """cordon's framing in h11's terms: no body is a zero length; read-until-close is HTTP/1.0 style."""
    return {"none": ("length", 0), "length": ("length", f.length), "chunked": ("chunked", 0),
            "close": ("http/1.0", 0)}[f.kind]


def _fields(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    # h11 lowercases a Transfer-Encoding value (coding names are case-insensitive, RFC 9112 §7)
    return [(k.lower(), v.lower() if k.lower() == b"transfer-encoding" else v) for k, v in headers]


@ORACLE
@given(request_heads())
def test_a_request_cordon_accepts_parses_the_same_in_h11(raw: bytes) -> None:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(raw)
    end = find_head_end(raw)
    if end < 0:   # cordon waits for the rest of the head; so must h11
        assert _h11_needs_data(conn), raw
        return
    try:
        ours = parse_request_head(raw[:end])   # as the proxy reads it
        framing = request_framing(ours)
    except ProtocolError:
        return
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError as e:
        if _empty_list_element(ours.headers):
            return
        raise AssertionError(f"cordon accepts a request h11 refuses ({e}): {raw!r}") from None
    assert isinstance(event, h11.Request), raw
    assert (event.method, event.target, b"HTTP/" + event.http_version) == (ours.method, ours.target, ours.version)
    assert list(event.headers) == _fields(_collapse_content_length(ours.headers)), raw
    assert _h11_framing(event.method, event) == _ours(framing), raw


@ORACLE
@given(response_heads())
def test_a_response_cordon_accepts_parses_the_same_in_h11(case: tuple[bytes, bytes]) -> None:
    method, raw = case
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=method, target=b"/", headers=[(b"Host", b"a")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(raw)
    end = find_head_end(raw)
    if end < 0:
        assert _h11_needs_data(conn), raw
        return
    try:
        ours = parse_response_head(raw[:end])
        framing = response_framing(method, ours)
    except ProtocolError:
        return
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError as e:
        if _empty_list_element(ours.headers) or _other_coding(ours.headers) or framing_ignores_fields(method, ours):
            return
        raise AssertionError(f"cordon accepts a response h11 refuses ({e}): {raw!r}") from None
    assert isinstance(event, h11.Response | h11.InformationalResponse), raw
    assert (event.status_code, event.reason, b"HTTP/" + event.http_version) == (ours.status, ours.reason,
                                                                                 ours.version)
    assert list(event.headers) == _fields(_collapse_content_length(ours.headers)), raw
    if isinstance(event, h11.Response):
        assert _h11_framing(method, event) == _ours(framing), raw


def _collapse_content_length(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """h11 keeps one Content-Length field where RFC 9110 §8.6 lets identical values repeat."""
    out: list[tuple[bytes, bytes]] = []
    seen = False
    for k, v in headers:
        if k.lower() == b"content-length":
            if seen:
                continue
            seen = True
            v = v.split(b",")[0].strip()
        out.append((k, v))
    return out


def _empty_list_element(headers: list[tuple[bytes, bytes]]) -> bool:
    """`Transfer-Encoding: chunked,`: RFC 9110 §5.6.1 has recipients ignore empty list elements,
    and cordon does; h11 refuses the head. The proxy writes its own framing upstream, so
    accepting it smuggles nothing."""
    return any(k.lower() == b"transfer-encoding" and any(not p.strip() for p in v.split(b","))
               for k, v in headers)


def framing_ignores_fields(method: bytes, resp: object) -> bool:
    """A response to HEAD (or a 1xx, 204, 304, or a 2xx to CONNECT) has no body whatever its
    Content-Length says, so cordon does not validate that field there; h11 still does."""
    status = getattr(resp, "status", 0)
    return method in (b"HEAD", b"CONNECT") or status < 200 or status in (204, 304)


def _other_coding(headers: list[tuple[bytes, bytes]]) -> bool:
    """A response whose last transfer coding is not chunked: RFC 9112 §6.3 has it read until the
    connection closes, which cordon does (Framing "close"); h11 supports only chunked."""
    from cordon.core.http1 import tokens
    te = tokens(headers, b"transfer-encoding")
    return bool(te) and te[-1] != b"chunked"


# -- the fast path against the line-by-line parser ------------------------------------------------
# parse_request_head / parse_response_head take a well-formed head through two regular expressions
# and hand everything else to the line-by-line parser; on any input, both must give the same
# result, or refuse with the same status and message.

EDGES = [b"X: a\r\r\n", b"X: a\rb", b"\r", b"X:", b"X: \t", b"X:\t a \t", b"X: \x80\xff", b"X: a\x7f",
         b"X: a\x00", b"X: a\tb", b" X: a", b"\tX: a", b"X : a", b"X\x80: a", b"X: a\x0b", b"X:: a", b":a",
         b"X: a\xc3\xa9 ", b"X: " + b"v" * 300]


def _outcome(parse: object, raw: bytes) -> object:
    try:
        return parse(raw)   # type: ignore[operator]
    except ProtocolError as e:
        return ("refused", e.status, e.message)


@ORACLE
@given(request_heads())
def test_the_fast_request_path_agrees_with_the_line_parser(raw: bytes) -> None:
    end = find_head_end(raw)
    head = raw[:end] if end >= 0 else raw
    assert _outcome(parse_request_head, head) == _outcome(http1._parse_request_lines, head), head


@ORACLE
@given(response_heads())
def test_the_fast_response_path_agrees_with_the_line_parser(case: tuple[bytes, bytes]) -> None:
    _method, raw = case
    end = find_head_end(raw)
    head = raw[:end] if end >= 0 else raw
    assert _outcome(parse_response_head, head) == _outcome(http1._parse_response_lines, head), head


@settings(max_examples=600, deadline=None, database=None)
@given(st.lists(st.sampled_from([*EDGES, b"Host: a", b"Content-Length: 5", b"Connection: close", b""]),
                max_size=5),
       st.sampled_from([b"GET http://a/ HTTP/1.1", b"GET /#x HTTP/1.1", b"GET / HTTP/1.1\r", b"GET  / HTTP/1.1",
                        b"\r\nGET / HTTP/1.0", b"G@T / HTTP/1.1", b"GET / HTTP/2.0", b"GET /\x7f HTTP/1.1",
                        b"HTTP/1.1 200 OK", b"HTTP/1.1 200", b"HTTP/1.1 200 ", b"HTTP/1.0 404 a\rb",
                        b"HTTP/1.1 2000 x", b"HTTP/1.1 20x OK", b"HTTP/1.1 200 O\x00K"]),
       eol, eol)
def test_the_fast_paths_agree_on_edge_cases(lines: list[bytes], start: bytes, e1: bytes, e2: bytes) -> None:
    head = start + e1 + b"".join(ln + e1 for ln in lines) + e2
    assert _outcome(parse_request_head, head) == _outcome(http1._parse_request_lines, head), head
    assert _outcome(parse_response_head, head) == _outcome(http1._parse_response_lines, head), head
