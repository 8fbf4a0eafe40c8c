"""Whether a request path lies under a route's path prefixes (`[routes.match] paths`), decided
so that no upstream can read the same target as a path outside them.

Pure. Servers disagree on how they normalise a path: RFC 3986 §5.2.4 dot-segments,
percent-decoding (once or twice), `;` path parameters (Tomcat, Jetty and Spring read
`/..;x/` as `/../`), backslashes as slashes, overlong UTF-8 and Unicode compatibility
forms. A path is in scope only when every such reading agrees; anything that one of
them could resolve elsewhere is out of scope (the credential is not injected).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def in_scope(prefixes: Sequence[str], target: str) -> bool:
    """True when the origin-form `target` is unambiguously under one of `prefixes`.

    An empty `prefixes` means the whole host. The query (after `?`) plays no part;
    a `#` (a fragment never belongs in a request target, RFC 9112 §3.2) makes the
    target ambiguous.
    """
    if not prefixes:
        return True
    if "#" in target:
        return False
    raw = target.split("?", 1)[0]
    decoded = _decode(raw)
    if decoded is None:
        return False
    # the prefix must hold for the path as sent and as decoded: `/v1%2fx` is `/v1/x` to some servers only
    if not any(raw.startswith(p) and decoded.startswith(p) for p in prefixes):
        return False
    return not _ambiguous(decoded)


def _decode(raw: str) -> str | None:
    """The path percent-decoded once, or None where the decoding itself is ambiguous."""
    if "%" in _ESCAPE.sub("", raw):
        return None   # a stray `%`: servers reject, pass or guess
    try:
        out = _ESCAPE.sub(lambda m: chr(int(m.group(0)[1:], 16)), raw).encode("latin-1").decode("utf-8")
    except UnicodeError:
        return None   # overlong or broken UTF-8 (`%c0%ae` is a dot to some decoders), or not bytes at all
    if _ESCAPE.search(out):
        return None   # double encoding: a server decoding twice sees another path
    return out


def _ambiguous(path: str) -> bool:
    if any(c == "\\" or ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        return True   # a backslash is a slash to some servers; controls are anyone's guess
    norm = unicodedata.normalize("NFKC", path)
    for p in {path, norm}:
        for seg in p.split("/"):
            if seg.split(";", 1)[0] in (".", ".."):
                return True   # a dot-segment, also with path parameters (`..;x`)
    return False
