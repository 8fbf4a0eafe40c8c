"""HTTP/1.1 message framing for the proxy (RFC 9112), sans-IO.

Parses request and response heads, decides body framing, decodes chunked
bodies incrementally and serialises heads. Bytes in, values out: no sockets,
no policy (injection lives in `inject`). Every malformed input raises
`ProtocolError` with the status the proxy should answer (400, 431, 501, 502).
Parsing works on whole heads (one `split`), never byte by byte.

Hand-written rather than h11, which is an endpoint's state machine (an event
object per message and per body chunk, one connection's life): a proxy only
needs heads and body boundaries, keeps header order and bytes, and relays
bodies as they arrive.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from cordon.core.errors import ProtocolError

MAX_HEAD = 64 * 1024          # larger heads get 431 (RFC 6585 §5)
MAX_CHUNK_LINE = 4096

Headers = list[tuple[bytes, bytes]]

# RFC 9110 §5.6.2 token; header values: visible chars, SP, HTAB, obs-text (no CTLs)
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_TARGET = re.compile(rb"^[\x21-\x7e]+$")
_VERSION = re.compile(rb"^HTTP/1\.[01]$")
_BLANK_LINE = re.compile(rb"\n\r?\n")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")

# The common, well-formed head, checked and split in C: a request or status line, then field
# lines `name:value` (CRLF or bare LF), then the blank line, nothing else. What these accept the
# line-by-line parser below accepts with the same result; anything else (including every
# malformed head) goes through that parser, which names what is wrong.
_TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_FIELD_LINE = _TCHAR + rb"+:[^\x00-\x08\x0a-\x1f\x7f]*\r?\n"
_FAST_FIELDS = re.compile(rb"(?:" + _FIELD_LINE + rb")*\r?\n")
_FAST_FIELD = re.compile(rb"(" + _TCHAR + rb"+):([^\x00-\x08\x0a-\x1f\x7f]*)\r?\n")
_FAST_REQUEST_LINE = re.compile(_TCHAR + rb"+ [\x21-\x7e]+ HTTP/1\.[01]\r?\n")
_FAST_STATUS_LINE = re.compile(rb"(HTTP/1\.[01]) ([0-9]{3})(?: ([^\r\n]*))?\r?\n")

# RFC 9110 §7.6.1: fields a proxy must not forward (plus those `Connection` names)
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                        b"transfer-encoding", b"upgrade", b"proxy-authorization",
                        b"proxy-authenticate"})
_DROP = HOP_BY_HOP | {b"content-length"}   # strip_hop_by_hop when `Connection` names nothing


@dataclass(frozen=True)
class RequestHead:
    method: bytes
    target: bytes
    version: bytes          # b"HTTP/1.1" or b"HTTP/1.0"
    headers: Headers        # in order, original case

    def get(self, name: bytes) -> bytes | None:
        return header_get(self.headers, name)

    @property
    def keep_alive(self) -> bool:
        return wants_keep_alive(self.version, self.headers)


@dataclass(frozen=True)
class ResponseHead:
    status: int
    reason: bytes
    version: bytes
    headers: Headers

    def get(self, name: bytes) -> bytes | None:
        return header_get(self.headers, name)


@dataclass(frozen=True)
class Framing:
    """How a body is delimited: none, a length, chunked, or until the connection closes."""

    kind: Literal["none", "length", "chunked", "close"]
    length: int = 0


NO_BODY = Framing("none")


def header_get(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    n = name.lower()
    ln = len(n)
    for k, v in headers:
        if len(k) == ln and k.lower() == n:   # the length test skips most lower() calls
            return v
    return None


def header_values(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    n = name.lower()
    ln = len(n)
    return [v for k, v in headers if len(k) == ln and k.lower() == n]


def tokens(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """Comma-separated, lower-cased tokens of every `name` field (Connection, Upgrade, TE...)."""
    out: list[bytes] = []
    for v in header_values(headers, name):
        out += [t.strip().lower() for t in v.split(b",") if t.strip()]
    return out


def wants_keep_alive(version: bytes, headers: Sequence[tuple[bytes, bytes]]) -> bool:
    conn = tokens(headers, b"connection")
    if b"close" in conn:
        return False
    if version == b"HTTP/1.0":
        return b"keep-alive" in conn
    return True


def find_head_end(buf: bytes | bytearray, start: int = 0) -> int:
    """Index just past the blank line ending a head, or -1.

    Bare LF endings are accepted, on the last field line and on the blank line
    alike (`\n\n`, `\r\n\n`, `\n\r\n`, `\r\n\r\n`), as h11 and most servers do: a
    head must end where any other parser would end it, or what follows the first
    blank line could be read as more fields here and as a body there.
    """
    m = _BLANK_LINE.search(buf, start)
    return m.end() if m else -1


def _lines(head: bytes) -> list[bytes]:
    lines = head.split(b"\n")
    return [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]


def _parse_fields(lines: Iterable[bytes], status: int) -> Headers:
    headers: Headers = []
    for line in lines:
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            # obs-fold: RFC 9112 §5.2 lets a server reject it with 400
            raise ProtocolError("obsolete line folding in a header", status)
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.match(name):
            raise ProtocolError("malformed header line", status)  # no content: it may hold a credential
        value = value.strip(b" \t")
        if _BAD_VALUE.search(value):
            raise ProtocolError(f"control character in header {name.decode()!r}", status)
        headers.append((name, value))
    return headers


def _fast_fields(block: bytes) -> Headers | None:
    """The fields of a well-formed field block (ending with its blank line), or None."""
    if _FAST_FIELDS.fullmatch(block) is None:
        return None
    return [(name, value.strip(b" \t")) for name, value in _FAST_FIELD.findall(block)]


class FieldMemo:
    """One client connection's last request field block and its parse.

    A keep-alive client repeats the same fields on every request (curl: Host,
    Proxy-Authorization, User-Agent, Accept...); `parse_request_head(head, memo)`
    reuses the parse when the bytes after the request line are exactly those of
    the last request (the same bytes parse the same way: nothing is less strict).
    The heads then share one `headers` list, which is read-only like the rest of
    a head; a caller may key its own derived values on that list's identity.
    """

    __slots__ = ("block", "headers")

    def __init__(self) -> None:
        self.block = b""
        self.headers: Headers = []


def parse_request_head(head: bytes, memo: FieldMemo | None = None) -> RequestHead:
    """Parse `request-line CRLF *(field CRLF) CRLF` (leading empty lines are skipped)."""
    if len(head) > MAX_HEAD:
        raise ProtocolError("request head larger than 64 KiB", 431)
    if head[:1] in (b"\r", b"\n"):
        head = head.lstrip(b"\r\n")
    m = _FAST_REQUEST_LINE.match(head)
    if m is not None:
        block = head[m.end():]
        if memo is not None and block == memo.block:
            fields: Headers | None = memo.headers
        else:
            fields = _fast_fields(block)
            if memo is not None and fields is not None:
                memo.block, memo.headers = block, fields
        if fields is not None:
            method, target, version = head[:m.end()].rstrip(b"\r\n").split(b" ")
            if b"#" not in target:
                return RequestHead(method=method, target=target, version=version, headers=fields)
    return _parse_request_lines(head)


def _parse_request_lines(head: bytes) -> RequestHead:
    """`parse_request_head` line by line: every head the fast path does not take."""
    lines = _lines(head.lstrip(b"\r\n"))
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise ProtocolError("malformed request line", 400)
    method, target, version = parts
    if not _TOKEN.match(method) or not _TARGET.match(target) or not _VERSION.match(version):
        if version.startswith(b"HTTP/2") or version.startswith(b"HTTP/3"):
            raise ProtocolError("only HTTP/1.x is spoken here", 505)
        raise ProtocolError("malformed request line", 400)
    if b"#" in target:
        # RFC 9112 §3.2: no fragment in a request target; servers split the path at it differently
        raise ProtocolError("a request target cannot hold '#'", 400)
    return RequestHead(method=method, target=target, version=version,
                       headers=_parse_fields(lines[1:], 400))


def parse_response_head(head: bytes) -> ResponseHead:
    """Parse a response head from an upstream; garbage raises ProtocolError(502)."""
    if len(head) > MAX_HEAD:
        raise ProtocolError("upstream response head larger than 64 KiB", 502)
    if head[:1] in (b"\r", b"\n"):
        head = head.lstrip(b"\r\n")
    m = _FAST_STATUS_LINE.match(head)
    if m is not None:
        fields = _fast_fields(head[m.end():])
        if fields is not None:
            version, code, reason = m.groups()
            return ResponseHead(status=int(code), reason=reason or b"", version=version, headers=fields)
    return _parse_response_lines(head)


def _parse_response_lines(head: bytes) -> ResponseHead:
    """`parse_response_head` line by line: every head the fast path does not take."""
    lines = _lines(head.lstrip(b"\r\n"))
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not _VERSION.match(parts[0]) or len(parts[1]) != 3 or not parts[1].isdigit():
        raise ProtocolError("upstream sent a malformed status line", 502)
    return ResponseHead(status=int(parts[1]), reason=parts[2] if len(parts) == 3 else b"",
                        version=parts[0], headers=_parse_fields(lines[1:], 502))


def _content_length(headers: Sequence[tuple[bytes, bytes]], status: int,
                    values: list[bytes] | None = None) -> int | None:
    """The body length the Content-Length fields (`values`, when the caller has them) give."""
    if values is None:
        values = header_values(headers, b"content-length")
    if not values:
        return None
    if len(values) == 1 and b"," not in values[0]:
        v = values[0].strip()
    else:
        # "Content-Length: 5, 5" or repeated identical fields are allowed (RFC 9110 §8.6)
        seen = {p.strip() for v in values for p in v.split(b",")}
        if len(seen) != 1:
            raise ProtocolError("conflicting Content-Length values", status)
        (v,) = seen
    if not v.isdigit() or len(v) > 18:
        raise ProtocolError("invalid Content-Length", status)
    return int(v)


def request_framing(req: RequestHead) -> Framing:
    """Body framing of a request (RFC 9112 §6.3); smuggling-prone input is refused with 400."""
    te = tokens(req.headers, b"transfer-encoding")
    cl = header_values(req.headers, b"content-length")
    if te:
        if cl:
            raise ProtocolError("both Content-Length and Transfer-Encoding (refused: request smuggling)", 400)
        if req.version == b"HTTP/1.0":
            raise ProtocolError("Transfer-Encoding in an HTTP/1.0 request", 400)
        if te != [b"chunked"]:
            # codings other than plain chunked cannot be relayed faithfully (RFC 9112 §6.1)
            raise ProtocolError("unsupported Transfer-Encoding", 501 if te[-1] == b"chunked" else 400)
        return Framing("chunked")
    n = _content_length(req.headers, 400, cl)
    if n:
        return Framing("length", n)
    return NO_BODY


def response_framing(request_method: bytes, resp: ResponseHead) -> Framing:
    """Body framing of a response to `request_method` (RFC 9112 §6.3)."""
    s = resp.status
    if request_method == b"HEAD" or s < 200 or s in (204, 304):
        return NO_BODY
    if request_method == b"CONNECT" and 200 <= s < 300:
        return NO_BODY
    te = tokens(resp.headers, b"transfer-encoding")
    if te:
        if te[-1] == b"chunked":
            if len(te) > 1:
                raise ProtocolError("upstream used a transfer coding cordon cannot relay", 502)
            return Framing("chunked")
        return Framing("close")
    n = _content_length(resp.headers, 502)
    if n is not None:
        return Framing("length", n) if n else NO_BODY
    return Framing("close")


class ChunkedDecoder:
    """Incremental decoder of a chunked body (RFC 9112 §7.1).

    `feed(data)` returns the body bytes decoded so far; after the last chunk,
    `done` is True, `trailers` holds the trailer section and `unused` whatever
    followed the body (the next message on the connection).
    """

    __slots__ = ("_buf", "_need", "_state", "_status", "done", "trailers", "unused")

    def __init__(self, status: int = 400) -> None:
        self._buf = bytearray()
        self._need = 0                  # data bytes left in the current chunk
        self._state = "size"            # size | data | data_crlf | trailers
        self.done = False
        self.trailers: Headers = []
        self.unused = b""
        self._status = status

    def feed(self, data: bytes) -> bytes:
        if self.done:
            self.unused += data
            return b""
        buf = self._buf
        buf += data
        out = bytearray()
        pos = 0
        n = len(buf)
        while pos < n:
            st = self._state
            if st == "data":
                take = min(self._need, n - pos)
                out += buf[pos:pos + take]
                pos += take
                self._need -= take
                if self._need == 0:
                    self._state = "data_crlf"
            elif st == "data_crlf":
                c = buf[pos]
                if c == 0x0A:            # bare LF, tolerated like h11 does
                    pos += 1
                elif c == 0x0D:
                    if n - pos < 2:
                        break
                    if buf[pos + 1] != 0x0A:
                        raise ProtocolError("malformed chunked body (missing CRLF after chunk)", self._status)
                    pos += 2
                else:
                    raise ProtocolError("malformed chunked body (missing CRLF after chunk)", self._status)
                self._state = "size"
            elif st == "size":
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    if n - pos > MAX_CHUNK_LINE:
                        raise ProtocolError("chunk size line too long", self._status)
                    break
                line = bytes(buf[pos:nl]).rstrip(b"\r")
                pos = nl + 1
                size_s = line.split(b";", 1)[0].strip(b" \t")
                if _CHUNK_SIZE.fullmatch(size_s) is None:
                    raise ProtocolError("malformed chunk size", self._status)
                size = int(size_s, 16)
                if size == 0:
                    self._state = "trailers"
                else:
                    self._need = size
                    self._state = "data"
            else:  # trailers: up to and including an empty line
                if buf[pos:pos + 2] == b"\r\n" or buf[pos:pos + 1] == b"\n":
                    pos += 2 if buf[pos:pos + 1] == b"\r" else 1
                    self._finish(b"", buf, pos)
                    return bytes(out)
                end = find_head_end(buf, pos)
                if end < 0:
                    if n - pos > MAX_HEAD:
                        raise ProtocolError("trailer section too large", self._status)
                    break
                self._finish(bytes(buf[pos:end]), buf, end)
                return bytes(out)
        del buf[:pos]
        return bytes(out)

    def _finish(self, trailer_block: bytes, buf: bytearray, end: int) -> None:
        self.trailers = _parse_fields(_lines(trailer_block), self._status) if trailer_block else []
        self.unused = bytes(buf[end:])
        buf.clear()
        self.done = True


def encode_chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data) if data else b""


def end_chunks(trailers: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
    return b"0\r\n" + b"".join(k + b": " + v + b"\r\n" for k, v in trailers) + b"\r\n"


def serialize_headers(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    return b"".join([b"%b: %b\r\n" % kv for kv in headers])


def serialize_request_head(method: bytes, target: bytes, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    return method + b" " + target + b" HTTP/1.1\r\n" + serialize_headers(headers) + b"\r\n"


REASONS = {100: b"Continue", 101: b"Switching Protocols", 200: b"OK", 400: b"Bad Request",
           403: b"Forbidden", 404: b"Not Found", 407: b"Proxy Authentication Required",
           421: b"Misdirected Request", 426: b"Upgrade Required", 431: b"Request Header Fields Too Large",
           500: b"Internal Server Error", 501: b"Not Implemented", 502: b"Bad Gateway",
           503: b"Service Unavailable", 504: b"Gateway Timeout", 505: b"HTTP Version Not Supported"}


def serialize_response_head(status: int, reason: bytes, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    return b"HTTP/1.1 %d %b\r\n" % (status, reason or REASONS.get(status, b"")) + serialize_headers(headers) + b"\r\n"


def simple_response(status: int, body: bytes, *, content_type: bytes = b"text/plain; charset=utf-8",
                    extra: Sequence[tuple[bytes, bytes]] = (), close: bool = False) -> bytes:
    """A complete response the proxy itself answers with (errors, /health)."""
    headers: Headers = [(b"Content-Type", content_type), (b"Content-Length", str(len(body)).encode())]
    headers += extra
    if close:
        headers.append((b"Connection", b"close"))
    return serialize_response_head(status, b"", headers) + body


def strip_hop_by_hop(headers: Sequence[tuple[bytes, bytes]], *, keep: frozenset[bytes] = frozenset()) -> Headers:
    """Drop hop-by-hop fields and every field `Connection` names (RFC 9110 §7.6.1).

    `Content-Length` is dropped too: the proxy writes its own framing.
    """
    named = tokens(headers, b"connection")
    drop = (HOP_BY_HOP | set(named) | {b"content-length"}) - keep if named or keep else _DROP
    return [(k, v) for k, v in headers if k.lower() not in drop]
