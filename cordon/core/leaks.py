"""Which of the child's environment variables hold a route's secret (pure).

`cordon exec` drops them from the child's environment. A secret of 8 characters
or more is found anywhere in a value. A shorter one would match ordinary text
(a 4-digit PIN in `COLUMNS`, a path), so it is found only as a whole value or a
whole token of one: separated by whitespace or `:,;=` (`Bearer <s>`, `user:<s>`,
`KEY=<s>`), and, in those forms, base64-encoded as `Authorization: Basic` does.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping

ANYWHERE_MIN = 8
_TOKENS = re.compile(r"[\s:,;=]+")


def holds_secret(value: str, secret: str) -> bool:
    if not secret:
        return False
    if len(secret) >= ANYWHERE_MIN:
        return secret in value
    tokens = set(_TOKENS.split(value.strip()))
    if secret in tokens:
        return True
    for t in value.split():   # `Basic base64(user:secret)`
        if len(t) < 8:
            continue
        try:
            decoded = base64.b64decode(t + "=" * (-len(t) % 4), validate=True).decode("utf-8")
        except ValueError:
            continue
        if secret in _TOKENS.split(decoded):
            return True
    return False


def vars_holding(env: Mapping[str, str], secrets: Iterable[str]) -> list[str]:
    """Names of the variables in `env` holding any of `secrets`, sorted."""
    values = [s for s in secrets if s]
    return sorted(k for k, v in env.items() if any(holds_secret(v, s) for s in values))
