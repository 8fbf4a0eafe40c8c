"""Subscription-login test data: client credential files with made-up (but well-formed) tokens."""

from __future__ import annotations

import json
import time
from pathlib import Path

from cordon.core.oauth import b64url

ACCOUNT_ID = "acct-0d3f9a1c-real"
CODEX_REFRESH = "rt_REAL-codex-refresh-7f1e2d"
CLAUDE_ACCESS = "sk-ant-oat01-REAL-claude-access-4b2c"
CLAUDE_REFRESH = "sk-ant-ort01-REAL-claude-refresh-9e8d"


def jwt(claims: dict[str, object], sig: str = "REAL-signature-abc123") -> str:
    return ".".join((b64url(b'{"alg":"RS256","typ":"JWT"}'), b64url(json.dumps(claims).encode()), sig))


def codex_access(exp: float | None = None, tag: str = "1") -> str:
    return jwt({"exp": int(exp if exp is not None else time.time() + 10 * 86400), "sub": "user-1",
                "tag": f"REAL-codex-access-{tag}"})


def codex_id_token() -> str:
    return jwt({"email": "dev@example.com", "exp": int(time.time() + 3600),
                "https://api.openai.com/auth": {"chatgpt_plan_type": "pro", "chatgpt_account_id": ACCOUNT_ID,
                                                "chatgpt_user_id": "user-1"}})


def codex_auth_json(access: str | None = None, refresh: str = CODEX_REFRESH) -> str:
    return json.dumps({"auth_mode": "chatgpt", "OPENAI_API_KEY": None,
                       "tokens": {"id_token": codex_id_token(), "access_token": access or codex_access(),
                                  "refresh_token": refresh, "account_id": ACCOUNT_ID},
                       "last_refresh": "2026-12-01T10:00:00Z"}, indent=2)


def claude_credentials(access: str = CLAUDE_ACCESS, refresh: str = CLAUDE_REFRESH,
                       expires_at: float | None = None) -> str:
    exp = int((expires_at if expires_at is not None else time.time() + 8 * 3600) * 1000)
    return json.dumps({"claudeAiOauth": {"accessToken": access, "refreshToken": refresh, "expiresAt": exp,
                                         "scopes": ["user:inference", "user:profile", "user:sessions:claude_code"],
                                         "subscriptionType": "max", "rateLimitTier": "default_claude_max_20x"}})


def _write_private(p: Path, text: str) -> Path:
    """`text` in `p` (its folder made), mode 0600 as the agents keep their login files."""
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    p.chmod(0o600)
    return p


def write_codex(home: Path, text: str | None = None) -> Path:
    return _write_private(home / ".codex" / "auth.json", text or codex_auth_json())


def write_claude(home: Path, text: str | None = None) -> Path:
    return _write_private(home / ".claude" / ".credentials.json", text or claude_credentials())
