"""Credential stripping, injection and echo scrubbing (pure).

Given a request's headers and a route, remove every client copy of the
route's credential header plus `Authorization` and `Proxy-Authorization`, and
add the real credential when the path is in scope. A route with a
`query_param` also loses every client copy of that query parameter, and the
credential goes there (type "query", or a header route whose request carried
the parameter: litellm sends Gemini keys as `?key=`). `echo_scrub` names every
form of it to scrub from responses (`scrub`). No I/O, no logging: the only
places a secret's value is turned into bytes are `credential_header` and
`rewrite_query`.
"""

from __future__ import annotations

import base64
import weakref
from collections.abc import Sequence
from urllib.parse import quote, unquote_to_bytes

from cordon.core.model import Route, Secret
from cordon.core.routes import injects_on
from cordon.core.scrub import EchoScrub

Headers = list[tuple[bytes, bytes]]

ALWAYS_STRIPPED = (b"authorization", b"proxy-authorization")
SCRUB_MIN = 8   # shorter secrets are not scrubbed: replacing them would mangle ordinary text


class InjectionError(ValueError):
    """The secret cannot be put in a header (it holds a line break or NUL)."""


def _breaks_a_line(value: str) -> bool:
    return "\r" in value or "\n" in value or "\0" in value


def credential_header(route: Route, secret: Secret) -> tuple[bytes, bytes]:
    """The (name, value) header carrying `secret` for `route`."""
    value = secret.reveal()
    if _breaks_a_line(value):
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
        if _breaks_a_line(value):
            raise InjectionError(f"route '{route.name}': the secret contains a line break or NUL")
        kept.append(param.encode("ascii") + b"=" + quote(value, safe="").encode("ascii"))
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


# echo_scrub's answers per secret (the same secret serves request after request, and working one
# out costs tens of microseconds); an entry goes when the last Secret holding that value does
_SCRUBS: weakref.WeakKeyDictionary[Secret, dict[tuple[str, str, str | None, bool], EchoScrub | None]] = (
    weakref.WeakKeyDictionary())


def echo_scrub(route: Route, secret: Secret) -> EchoScrub | None:
    """What to scrub from responses of `route`'s host: every form of the credential cordon sends.

    The secret (shorter than SCRUB_MIN: not scrubbed), its percent-encoded form for a
    route with a `query_param` (when that differs), and, for `basic` routes, the
    `base64(user:secret)` cordon put in the header, each replaced by the same form
    of the placeholder.
    """
    a = route.auth
    key = (a.type, a.placeholder, a.username, bool(a.query_param))
    known = _SCRUBS.get(secret)
    if known is None:
        known = _SCRUBS[secret] = {}
    elif key in known:
        return known[key]
    known[key] = scrub = _echo_scrub(route, secret)
    return scrub


def _echo_scrub(route: Route, secret: Secret) -> EchoScrub | None:
    value = secret.reveal()
    placeholder = route.auth.placeholder
    pairs: list[tuple[bytes, bytes]] = []
    if len(value) >= SCRUB_MIN:
        pairs.append((value.encode(), placeholder.encode()))
    if route.auth.query_param and quote(value, safe="") != value and len(value) >= SCRUB_MIN:
        # the form `rewrite_query` sent (an upstream echoing its request URL shows that one)
        pairs.append((quote(value, safe="").encode(), quote(placeholder, safe="").encode()))
    if route.auth.type == "basic":
        user = route.auth.username or ""
        pairs.append((base64.b64encode(f"{user}:{value}".encode()),
                      base64.b64encode(f"{user}:{placeholder}".encode())))
    return EchoScrub.of(pairs) if pairs else None
