"""Credential stripping, injection and echo scrubbing (pure).

Given a request's headers and a route, remove every client copy of the
route's credential header plus `Authorization` and `Proxy-Authorization`, and
add the real credential when the path is in scope. A route with a
`query_param` also loses every client copy of that query parameter, and the
credential goes there (type "query", or a header route whose request carried
the parameter: litellm sends Gemini keys as `?key=`). `Scrubber` replaces the
secret in a streamed response body with the placeholder. No I/O, no logging:
the only places a secret's value is turned into bytes are `credential_header`
and `rewrite_query`.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from urllib.parse import quote, unquote_to_bytes

from cordon.core.model import Route, Secret
from cordon.core.routes import injects_on

Headers = list[tuple[bytes, bytes]]

ALWAYS_STRIPPED = (b"authorization", b"proxy-authorization")
SCRUB_MIN = 8   # shorter secrets are not scrubbed: replacing them would mangle ordinary text


class InjectionError(ValueError):
    """The secret cannot be put in a header (it holds a line break or NUL)."""


def credential_header(route: Route, secret: Secret) -> tuple[bytes, bytes]:
    """The (name, value) header carrying `secret` for `route`."""
    value = secret.reveal()
    if any(c in value for c in "\r\n\0"):
        raise InjectionError(f"route '{route.name}': the secret contains a line break or NUL")
    auth = route.auth
    if auth.type == "basic":
        user = auth.username or ""
        token = base64.b64encode(f"{user}:{value}".encode()).decode("ascii")
        return b"Authorization", b"Basic " + token.encode("ascii")
    raw = value.encode("utf-8")
    if auth.scheme:
        raw = auth.scheme.encode("latin-1") + b" " + raw
    return auth.header_name.encode("latin-1"), raw


def stripped_names(route: Route) -> frozenset[bytes]:
    """Lower-case names of the headers whose client copies never reach the upstream."""
    return frozenset((*ALWAYS_STRIPPED, route.auth.header_name.lower().encode("latin-1")))


def rewrite_headers(headers: Sequence[tuple[bytes, bytes]], route: Route, path: bytes,
                    secret: Secret | None) -> tuple[Headers, bool]:
    """Strip client credentials; inject `secret` when the route covers `path`.

    Returns the new header list and whether a credential was injected. With
    `secret=None` (or a path outside `route.paths`) the request only loses
    the client's copies.
    """
    drop = stripped_names(route)
    out = [(k, v) for k, v in headers if k.lower() not in drop]
    if secret is None or not injects_on(route, path.decode("latin-1")):
        return out, False
    out.append(credential_header(route, secret))
    return out, True


def rewrite_query(path: bytes, route: Route, secret: Secret | None) -> tuple[bytes, bool]:
    """Drop every client copy of the route's query parameter; add `secret` there when due.

    Returns the new request target and whether the credential went into it. The
    parameter's name is compared after percent-decoding (`%6Bey=` is `key=`), so no
    spelling of it slips the placeholder (or a key of the client's own) through.
    """
    param = route.auth.query_param
    if param is None:
        return path, False
    base, sep, query = path.partition(b"?")
    if not sep:
        had = False
        kept: list[bytes] = []
    else:
        want = param.encode("ascii")
        pieces = query.split(b"&")
        kept = [q for q in pieces if unquote_to_bytes(q.split(b"=", 1)[0].replace(b"+", b" ")) != want]
        had = len(kept) != len(pieces)
    due = secret is not None and injects_on(route, base.decode("latin-1")) and (route.auth.type == "query" or had)
    if due:
        assert secret is not None
        value = secret.reveal()
        if any(c in value for c in "\r\n\0"):
            raise InjectionError(f"route '{route.name}': the secret contains a line break or NUL")
        kept = [q for q in kept if q] + [param.encode("ascii") + b"=" + quote(value, safe="").encode("ascii")]
    elif not had:
        return path, False
    kept = [q for q in kept if q]
    return base + (b"?" + b"&".join(kept) if kept else b""), due


def rewrite_request(headers: Sequence[tuple[bytes, bytes]], route: Route, path: bytes,
                    secret: Secret | None) -> tuple[Headers, bytes, bool]:
    """`rewrite_headers` and `rewrite_query` together: the credential goes into the query or
    into the header, never both. Returns (headers, target, injected)."""
    new_path, in_query = rewrite_query(path, route, secret)
    header_secret = None if in_query or route.auth.type == "query" else secret
    out, in_header = rewrite_headers(headers, route, path, header_secret)
    return out, new_path, in_query or in_header


def wants_secret(route: Route, path: bytes) -> bool:
    return injects_on(route, path.decode("latin-1"))


def scrub_headers(headers: Sequence[tuple[bytes, bytes]], secret: bytes, placeholder: bytes) -> Headers:
    """Replace the secret in any header value with the placeholder (echo scrubbing)."""
    if not secret:
        return list(headers)
    return [(k, v.replace(secret, placeholder) if secret in v else v) for k, v in headers]


class Scrubber:
    """Streams a body, replacing every occurrence of `secret` with `placeholder`.

    Only the longest tail that could begin the secret is held back between
    chunks (never more than len(secret) - 1 bytes), so an SSE event that ends
    in "\\n\\n" is passed on at once instead of waiting for the next chunk.
    """

    __slots__ = ("_first", "_pending", "_placeholder", "_secret", "hits")

    def __init__(self, secret: bytes, placeholder: bytes) -> None:
        if not secret:
            raise ValueError("empty secret")
        self._secret = secret
        self._placeholder = placeholder
        self._first = secret[:1]
        self._pending = b""
        self.hits = 0

    def feed(self, data: bytes) -> bytes:
        buf = self._pending + data if self._pending else data
        s = self._secret
        if s in buf:
            self.hits += buf.count(s)
            buf = buf.replace(s, self._placeholder)
            # a placeholder never starts a held-back tail: only look after the last one
            floor = buf.rfind(self._placeholder) + len(self._placeholder)
        else:
            floor = 0
        keep = self._tail_len(buf, floor)
        if keep:
            self._pending = buf[-keep:]
            return buf[:-keep]
        self._pending = b""
        return buf

    def _tail_len(self, buf: bytes, floor: int) -> int:
        """Length of the longest suffix of buf[floor:] that is a proper prefix of the secret."""
        s = self._secret
        n = len(buf)
        start = max(floor, n - len(s) + 1)
        i = buf.find(self._first, start)
        while i >= 0:
            if s.startswith(buf[i:]):
                return n - i
            i = buf.find(self._first, i + 1)
        return 0

    def flush(self) -> bytes:
        out, self._pending = self._pending, b""
        return out
