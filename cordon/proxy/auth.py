"""Who may use the proxy: tokens presented as proxy credentials, checked in constant time.

Clients send `Proxy-Authorization: Basic base64(<any user>:<token>)` (what
`http://cordon:<token>@127.0.0.1:<port>` in HTTPS_PROXY produces), and only
that: `Proxy-Authorization: Bearer` is refused (one documented way in). `/status`
also takes `Authorization: Bearer <token>`. Every stored token is compared on
every check (digests of equal length, `hmac.compare_digest`), so timing says
nothing about which token or how much of it matched. A header value that
already passed is remembered (a plain-HTTP client presents the same one on
every request) and recognised by a constant-time comparison with the
remembered values, without decoding and hashing it again; the memory belongs
to the token set, so a rotated or revoked token is checked afresh.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping

CHALLENGE = b'Basic realm="cordon"'
PASSED_MAX = 16   # accepted Proxy-Authorization values remembered (ProxyAuth._passed)


def _digest(token: str | bytes) -> bytes:
    return hashlib.sha256(token if isinstance(token, bytes) else token.encode()).digest()


class ProxyAuth:
    """Checks presented tokens against a mapping token -> client name."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        if not tokens:
            raise ValueError("ProxyAuth needs at least one token (use auth=None for an open proxy)")
        self._entries = [(_digest(t), name) for t, name in tokens.items()]
        # Proxy-Authorization values that passed, with their client: a plain-HTTP client sends
        # the same one on every request. Compared in constant time like the digests; it lives
        # as long as this object, so a changed token set (a new ProxyAuth) starts empty.
        self._passed: list[tuple[bytes, str]] = []

    def current(self) -> ProxyAuth | None:
        """The token set checks go to now: this one (a token file's watcher hands out its latest)."""
        return self

    @classmethod
    def single(cls, token: str, client: str = "default") -> ProxyAuth:
        return cls({token: client})

    def check_token(self, token: bytes) -> str | None:
        """The client name for `token`, or None. Constant time in the token's content."""
        d = _digest(token)
        found: str | None = None
        for digest, name in self._entries:
            if hmac.compare_digest(digest, d) and found is None:
                found = name
        return found

    def check_header(self, value: bytes | None, *, bearer: bool = False) -> str | None:
        """Check a `Proxy-Authorization` value (Basic), or with `bearer` an `Authorization` one (Bearer)."""
        if not value:
            return None
        if not bearer and self._passed:
            found: str | None = None
            for seen, name in self._passed:
                if hmac.compare_digest(seen, value) and found is None:
                    found = name
            if found is not None:
                return found
        scheme, _, cred = value.strip().partition(b" ")
        scheme = scheme.lower()
        cred = cred.strip()
        if scheme == b"basic" and not bearer:
            try:
                raw = base64.b64decode(cred, validate=True)
            except (binascii.Error, ValueError):
                return None
            _user, sep, token = raw.partition(b":")
            who = self.check_token(token) if sep else None
            if who is not None:
                if len(self._passed) >= PASSED_MAX:
                    del self._passed[0]
                self._passed.append((bytes(value), who))
            return who
        if scheme == b"bearer" and bearer:
            return self.check_token(cred)
        return None
