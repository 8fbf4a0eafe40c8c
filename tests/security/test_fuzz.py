"""Property-based fuzzing (hypothesis) of the request parser, body framing, the chunked decoder and
the header rewrite — then of the live proxy with the same generators.

Properties: malformed input only ever raises `ProtocolError` with a client-error status; what
parses re-serialises to the same head (no line a client smuggled in appears); the rewrite leaves
exactly one credential, only where the route injects, and every other end-to-end field in order.
Example counts are bounded (CI), no deadline, no example database.
"""

from __future__ import annotations

import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cordon.core.errors import ProtocolError
from cordon.core.http1 import (
    HOP_BY_HOP,
    ChunkedDecoder,
    parse_request_head,
    request_framing,
    serialize_request_head,
    strip_hop_by_hop,
    tokens,
)
from cordon.core.inject import rewrite_headers, stripped_names
from cordon.core.model import Auth, Route, Secret, SecretSpec
from cordon.core.routes import injects_on
from tests.proxy_harness import SECRET
from tests.security.wire import HOST, SECRET_FORMS, proxy_auth_line, recv_response, scene

FUZZ = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.function_scoped_fixture])
CLIENT_ERRORS = {400, 431, 501, 505}

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
NAMES = ["Host", "Content-Length", "Transfer-Encoding", "Connection", "Authorization", "authorization",
         "Proxy-Authorization", "X-Api-Key", "x-api-key", "Upgrade", "TE", "Keep-Alive", "Trailer",
         "Proxy-Connection", "Cookie", "Accept", "X-Custom", "x-goog-api-key", "Content-Type"]
names = st.one_of(st.sampled_from(NAMES), st.text(TCHAR, min_size=1, max_size=12))
visible = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(str.strip)
values = st.one_of(visible, st.sampled_from(["chunked", "close", "keep-alive", "Upgrade", "5", "0",
                                             "x-api-key, authorization", "Bearer dummy-replaced-by-cordon"]))
fields = st.lists(st.tuples(names, values), max_size=12)
noise = st.sampled_from([b"\r\n", b"\n", b"\r", b"\x00", b" ", b"\t", b":", b"\x0b", b"\x7f", b"\xff", b"\r\n "])


@st.composite
def heads(draw: st.DrawFn) -> bytes:
    """A plausible request head, then (often) a few bytes spliced in at random places."""
    method = draw(st.sampled_from(["GET", "POST", "CONNECT", "PUT", "get", "G(T"]))
    target = draw(st.sampled_from(["/v1/x", "http://api.openai.com/v1", "*", "api.openai.com:443", "/a%0d%0ab"]))
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1 "]))
    lines = [f"{method} {target} {version}"] + [f"{k}: {v}" for k, v in draw(fields)]
    eol = draw(st.sampled_from(["\r\n", "\n"]))
    raw = bytearray((eol.join(lines) + eol + eol).encode())
    for _ in range(draw(st.integers(0, 3))):
        pos = draw(st.integers(0, len(raw)))
        raw[pos:pos] = draw(noise)
    return bytes(raw)


def check_parsed_or_refused(raw: bytes) -> None:
    try:
        req = parse_request_head(raw)
    except ProtocolError as e:
        assert e.status in CLIENT_ERRORS
        return
    for k, v in req.headers:
        assert k and all(chr(c) in TCHAR for c in k)
        assert not any((c < 0x20 and c != 0x09) or c == 0x7F for c in v), "a control character got through"
        assert v == v.strip(b" \t")
    again = parse_request_head(serialize_request_head(req.method, req.target, req.headers))
    assert (again.method, again.target, again.headers) == (req.method, req.target, req.headers)
    try:
        framing = request_framing(req)
    except ProtocolError as e:
        assert e.status in (400, 501)
        return
    if tokens(req.headers, b"transfer-encoding"):
        assert framing.kind == "chunked" and req.get(b"content-length") is None


@FUZZ
@given(heads())
def test_parser_on_plausible_heads(raw: bytes) -> None:
    check_parsed_or_refused(raw)


@FUZZ
@given(st.binary(max_size=300))
def test_parser_on_arbitrary_bytes(raw: bytes) -> None:
    check_parsed_or_refused(raw)


def _decode(pieces: list[bytes]) -> tuple[str, bytes, bool]:
    dec = ChunkedDecoder(400)
    out = b""
    try:
        for p in pieces:
            out += dec.feed(p)
    except ProtocolError as e:
        assert e.status == 400
        return "error", b"", False
    return "ok", out, dec.done


chunk_bodies = st.one_of(
    st.binary(max_size=120),
    st.lists(st.binary(min_size=1, max_size=30), max_size=5).map(
        lambda cs: b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in cs) + b"0\r\n\r\n"))


@FUZZ
@given(chunk_bodies, st.lists(st.integers(0, 200), max_size=6), st.lists(noise, max_size=2),
       st.lists(st.integers(0, 200), max_size=2))
def test_chunked_decoder_does_not_depend_on_how_bytes_arrive(body: bytes, cuts: list[int], junk: list[bytes],
                                                            spots: list[int]) -> None:
    data = bytearray(body)
    for j, pos in zip(junk, spots, strict=False):
        p = min(pos, len(data))
        data[p:p] = j
    whole = _decode([bytes(data)])
    points = sorted({min(c, len(data)) for c in cuts})
    pieces = [bytes(data[a:b]) for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    split = _decode(pieces)
    if whole[0] == "ok" and split[0] == "ok":
        assert whole == split
    elif whole[0] == "ok" or split[0] == "ok":
        # an error can only show up once enough bytes arrived: the incomplete side must not be done
        done_side = whole if whole[0] == "ok" else split
        assert not done_side[2] or whole[0] == split[0]


AUTH_NAMES = ["Authorization", "x-api-key", "X-Goog-Api-Key", "api-key"]


@st.composite
def routes(draw: st.DrawFn) -> Route:
    header = draw(st.sampled_from(AUTH_NAMES))
    kind = draw(st.sampled_from(["header", "basic"])) if header == "Authorization" else "header"
    scheme = "Bearer" if header == "Authorization" and kind == "header" else None
    paths = tuple(draw(st.lists(st.sampled_from(["/v1/", "/api/", "/"]), max_size=2, unique=True)))
    auth = Auth(type=kind, header_name=header, scheme=scheme, username="u" if kind == "basic" else None,  # type: ignore[arg-type]
                secret=SecretSpec(source="env", var="X"))
    return Route(name="r", host=HOST, auth=auth, paths=paths)


@FUZZ
@given(fields, routes(), st.sampled_from(["/v1/models", "/api/x", "/telemetry", "/", "/v1"]))
def test_rewrite_leaves_exactly_one_credential_and_everything_else(raw_fields: list[tuple[str, str]], route: Route,
                                                                  path: str) -> None:
    headers = [(k.encode(), v.encode()) for k, v in raw_fields]
    hop = strip_hop_by_hop(headers)
    assert not any(k.lower() in HOP_BY_HOP | {b"content-length"} for k, _ in hop)
    named = set(tokens(headers, b"connection"))
    assert not any(k.lower() in named for k, _ in hop), "a field named by Connection was forwarded"
    out, injected = rewrite_headers(hop, route, path.encode(), Secret(SECRET))
    drop = stripped_names(route)
    creds = [(k, v) for k, v in out if k.lower() in drop]
    assert injected == injects_on(route, path)
    assert len(creds) == (1 if injected else 0)
    carrying = [k for k, v in out if any(f.encode() in v for f in SECRET_FORMS[:1])]
    if route.auth.type == "header":
        assert carrying == ([creds[0][0]] if injected else [])
    assert [f for f in out if f[0].lower() not in drop] == [f for f in hop if f[0].lower() not in drop]
    reparsed = parse_request_head(serialize_request_head(b"GET", path.encode(), out))
    assert reparsed.headers == out


# -- the live proxy, with the same generators ------------------------------------------------------

@pytest.fixture(scope="module")
def live() -> object:
    import logging

    class _Cap:
        text = ""

        def set_level(self, *a: object, **k: object) -> None:
            logging.getLogger("cordon").setLevel(logging.DEBUG)

    handler_records: list[str] = []

    class H(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            handler_records.append(self.format(record))

    h = H()
    logging.getLogger("cordon").addHandler(h)
    cap = _Cap()
    with scene(cap) as sc:  # type: ignore[arg-type]
        yield sc, handler_records
    logging.getLogger("cordon").removeHandler(h)


@settings(max_examples=120, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(heads(), st.booleans())
def test_live_proxy_answers_every_head_and_never_leaks(live: tuple, raw: bytes, inside: bool) -> None:  # type: ignore[type-arg]
    sc, records = live
    s: socket.socket
    if inside:
        s = sc.tunnel()
    else:
        s = sc.raw()
        first, sep, rest = raw.partition(b"\n")
        raw = first + sep + proxy_auth_line() + rest if sep else raw
    try:
        s.sendall(raw + b"0\r\n\r\n")
    except OSError:
        pass
    r = recv_response(s, timeout=15)
    s.close()
    if r is not None and r.status:
        assert r.status in {200, 400, 403, 404, 407, 408, 421, 426, 431, 501, 502, 504, 505}, r.head
        blob = (r.head + r.body).decode("latin-1")
        assert not any(f in blob for f in SECRET_FORMS)
    assert not any(f in line for line in records for f in SECRET_FORMS)


def test_live_proxy_still_serves_after_fuzzing(live: tuple) -> None:  # type: ignore[type-arg]
    sc, _ = live
    sc.healthy()
