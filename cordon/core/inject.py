"""Credential stripping, injection and echo scrubbing (pure).

Given a request's headers and a route, remove every client copy of the
route's credential header plus `Authorization` and `Proxy-Authorization`, and
add the real credential when the path is in scope; `echo_scrub` names every
form of it to scrub from responses (`scrub`). No I/O, no logging:
the only place a secret's value is turned into bytes is `credential_header`.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from cordon.core.model import Route, Secret
from cordon.core.routes import injects_on
from cordon.core.scrub import EchoScrub

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


def wants_secret(route: Route, path: bytes) -> bool:
    return injects_on(route, path.decode("latin-1"))


def echo_scrub(route: Route, secret: Secret) -> EchoScrub | None:
    """What to scrub from responses of `route`'s host: every form of the credential cordon sends.

    The secret (shorter than SCRUB_MIN: not scrubbed) and, for `basic` routes, the
    `base64(user:secret)` cordon put in the header, each replaced by the same form
    of the placeholder.
    """
    value = secret.reveal()
    placeholder = route.auth.placeholder
    pairs: list[tuple[bytes, bytes]] = []
    if len(value) >= SCRUB_MIN:
        pairs.append((value.encode(), placeholder.encode()))
    if route.auth.type == "basic":
        user = route.auth.username or ""
        pairs.append((base64.b64encode(f"{user}:{value}".encode()),
                      base64.b64encode(f"{user}:{placeholder}".encode())))
    return EchoScrub.of(pairs) if pairs else None
