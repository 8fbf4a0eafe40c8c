"""Subscription logins (Codex "Sign in with ChatGPT", Claude Pro/Max): the pure parts.

Values in, values out: the two providers' hosts and endpoints, the `Login`
record cordon keeps (and its JSON form), reading and writing each client's own
credential file, the placeholder tokens an agent gets (a JWT without a real
signature for Codex), the refresh request cordon sends and the answer it
applies, the local answers to an agent's refresh and revoke calls, and which
agent requests those are. No I/O; `Login` never shows a token in repr.
Facts behind each choice: reference/subscription-logins.md.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import parse_qs

from cordon.core.model import Auth, Route, SecretSpec

PROVIDERS = ("codex", "claude")
FAR_FUTURE = 4102444800            # 2100-01-01: a placeholder access token that never expires
REFRESH_MARGIN = 300.0             # seconds before expiry at which the proxy refreshes the real tokens
FRESH_FOR = 60.0                   # a token this young that gets a 401 is not refreshed again
PLACEHOLDER_SIGNATURE = "cordon-placeholder-signature"
PLACEHOLDER_REFRESH = "cordon-placeholder-refresh-token"
PLACEHOLDER_CLAUDE_ACCESS = "cordon-placeholder-oauth-access-token"
CLAUDE_DEFAULT_SCOPES = ("user:profile", "user:inference", "user:sessions:claude_code", "user:mcp_servers",
                         "user:file_upload")


@dataclass(frozen=True)
class Provider:
    name: str
    title: str
    api_host: str                  # gets the real access token as Authorization: Bearer
    auth_host: str                 # token endpoint host: refresh and revoke answered by cordon
    token_path: str
    revoke_path: str
    client_id: str
    api_route: str                 # stable route names (`cordon route edit` can move them)
    auth_route: str
    api_key_vars: tuple[str, ...]  # variables that would override the login in the client


CODEX = Provider("codex", "Codex (Sign in with ChatGPT)", "chatgpt.com", "auth.openai.com", "/oauth/token",
                 "/oauth/revoke", "app_EMoamEEZ73f0CkXaXp7hrann", "codex", "codex-auth", ("CODEX_API_KEY",))
CLAUDE = Provider("claude", "Claude Code (Claude Pro/Max)", "api.anthropic.com", "platform.claude.com",
                  "/v1/oauth/token", "/v1/oauth/token/revoke", "9d1c250a-e61b-44d9-88ed-5944d1962f5e", "claude",
                  "claude-auth", ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"))
BY_NAME = {p.name: p for p in (CODEX, CLAUDE)}


class LoginFormatError(ValueError):
    """A client's credential file is not a login cordon can use (the message says why)."""


class PlaceholderFile(LoginFormatError):
    """The file holds cordon's placeholders (the login was imported already)."""


def provider(name: str) -> Provider:
    try:
        return BY_NAME[name]
    except KeyError:
        raise LoginFormatError(f"unknown login '{name}' (use one of: {', '.join(PROVIDERS)})") from None


# --- JWT (payload only: neither client checks a signature) ---------------------------------------

def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The JSON payload of a JWT-shaped token (three non-empty parts), else None."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        return None
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


def jwt_exp(token: str) -> float | None:
    exp = (jwt_claims(token) or {}).get("exp")
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def unsigned_jwt(header: Mapping[str, Any], claims: Mapping[str, Any]) -> str:
    """A JWT with the given header and claims and a dummy signature (Codex decodes, never verifies)."""
    return ".".join((b64url(json.dumps(dict(header), separators=(",", ":")).encode()),
                     b64url(json.dumps(dict(claims), separators=(",", ":")).encode()), PLACEHOLDER_SIGNATURE))


# --- the record cordon keeps -----------------------------------------------------------------------

@dataclass(frozen=True)
class Login:
    """One subscription login as cordon stores it (a JSON blob in the secret store)."""

    provider: str
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    id_token: str = field(default="", repr=False)     # codex
    account_id: str | None = None                     # codex: sent by the client as chatgpt-account-id
    expires_at: float | None = None                   # epoch seconds (None: unknown / never)
    last_refresh: str | None = None                   # ISO 8601, UTC
    scopes: tuple[str, ...] = ()                      # claude
    subscription_type: str | None = None              # claude (plan)
    rate_limit_tier: str | None = None                # claude
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)   # other fields of the client file
    source: str | None = None                         # the client file it came from (logout writes it back)
    origins: tuple[str, ...] = ()                     # codex: workspace origins accounts/check named

    @property
    def plan(self) -> str | None:
        if self.provider == "claude":
            return self.subscription_type
        auth = (jwt_claims(self.id_token) or {}).get("https://api.openai.com/auth")
        plan = auth.get("chatgpt_plan_type") if isinstance(auth, dict) else None
        return str(plan) if plan else None

    def expiring(self, now: float, margin: float = REFRESH_MARGIN) -> bool:
        return self.expires_at is not None and self.expires_at - margin <= now

    def refreshed_within(self, now: float, seconds: float) -> bool:
        """True when cordon refreshed this login less than `seconds` ago (any process)."""
        if not self.last_refresh:
            return False
        try:
            t = dt.datetime.fromisoformat(self.last_refresh.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return False
        return 0 <= now - t < seconds

    def to_json(self) -> str:
        d: dict[str, Any] = {"provider": self.provider, "access_token": self.access_token,
                             "refresh_token": self.refresh_token}
        for k in ("id_token", "account_id", "expires_at", "last_refresh", "subscription_type",
                  "rate_limit_tier", "source"):
            v = getattr(self, k)
            if v:
                d[k] = v
        if self.scopes:
            d["scopes"] = list(self.scopes)
        if self.origins:
            d["origins"] = list(self.origins)
        if self.extra:
            d["extra"] = dict(self.extra)
        return json.dumps(d, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Login:
        try:
            d = json.loads(text)
            if not isinstance(d, dict) or d.get("provider") not in PROVIDERS:
                raise ValueError("not a login record")
            exp = d.get("expires_at")
            return cls(provider=d["provider"], access_token=str(d["access_token"]),
                       refresh_token=str(d["refresh_token"]), id_token=str(d.get("id_token") or ""),
                       account_id=d.get("account_id"), expires_at=float(exp) if exp is not None else None,
                       last_refresh=d.get("last_refresh"), scopes=tuple(d.get("scopes") or ()),
                       subscription_type=d.get("subscription_type"), rate_limit_tier=d.get("rate_limit_tier"),
                       extra=dict(d.get("extra") or {}), source=d.get("source"),
                       origins=tuple(d.get("origins") or ()))
        except (ValueError, KeyError, TypeError) as e:
            raise LoginFormatError(f"the stored login record is damaged ({type(e).__name__})") from None

    def summary(self) -> dict[str, Any]:
        """What status and doctor may show: never a token."""
        return {"login": self.provider, "plan": self.plan, "expires_at": _iso(self.expires_at),
                "last_refresh": self.last_refresh, "account_id": self.account_id}


def _iso(t: float | None) -> str | None:
    return None if t is None else dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")


def now_iso(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- the clients' own files ---------------------------------------------------------------------

def parse_client_file(name: str, text: str, source: str | None = None) -> Login:
    """A `Login` from Codex's auth.json or Claude's .credentials.json; LoginFormatError if it is not one."""
    try:
        d = json.loads(text)
    except ValueError:
        raise LoginFormatError("it is not JSON") from None
    if not isinstance(d, dict):
        raise LoginFormatError("it is not a JSON object")
    if name == "codex":
        tokens = d.get("tokens")
        if not isinstance(tokens, dict) or not tokens.get("access_token") or not tokens.get("refresh_token"):
            raise LoginFormatError("it holds no ChatGPT login (no tokens.access_token / refresh_token); "
                                   "an API-key login needs no `cordon login`: use `cordon route add --preset openai`")
        if d.get("auth_mode") not in (None, "chatgpt"):
            raise LoginFormatError(f"its auth_mode is {d.get('auth_mode')!r}, not \"chatgpt\"")
        access = str(tokens["access_token"])
        extra = {k: v for k, v in d.items() if k not in ("tokens", "last_refresh")}
        login = Login(provider="codex", access_token=access, refresh_token=str(tokens["refresh_token"]),
                      id_token=str(tokens.get("id_token") or ""), account_id=tokens.get("account_id"),
                      expires_at=jwt_exp(access), last_refresh=d.get("last_refresh"), extra=extra, source=source)
    else:
        o = d.get("claudeAiOauth")
        if not isinstance(o, dict) or not o.get("accessToken") or not o.get("refreshToken"):
            raise LoginFormatError("it holds no Claude.ai login (no claudeAiOauth.accessToken / refreshToken)")
        exp = o.get("expiresAt")
        extra = {k: v for k, v in d.items() if k != "claudeAiOauth"}
        extra["claudeAiOauth"] = {k: v for k, v in o.items() if k not in (
            "accessToken", "refreshToken", "expiresAt", "scopes", "subscriptionType", "rateLimitTier")}
        login = Login(provider="claude", access_token=str(o["accessToken"]), refresh_token=str(o["refreshToken"]),
                      expires_at=float(exp) / 1000 if isinstance(exp, int | float) and exp else None,
                      scopes=tuple(o.get("scopes") or ()), subscription_type=o.get("subscriptionType"),
                      rate_limit_tier=o.get("rateLimitTier"), extra=extra, source=source)
    if is_placeholder(login):
        raise PlaceholderFile("it holds cordon's placeholders, not a real login")
    return login


def client_file(login: Login, *, real: bool) -> str:
    """The client's own file for `login`: the real tokens (`real`, for logout) or placeholders."""
    t = login if real else placeholder_login(login)
    if login.provider == "codex":
        d: dict[str, Any] = {"auth_mode": "chatgpt", "OPENAI_API_KEY": None}
        if real:
            d.update({k: v for k, v in login.extra.items()})
        d["tokens"] = {"id_token": t.id_token, "access_token": t.access_token, "refresh_token": t.refresh_token,
                       "account_id": login.account_id}
        d["last_refresh"] = login.last_refresh or now_iso(0)
        return json.dumps(d, indent=2) + "\n"
    oauth: dict[str, Any] = dict(login.extra.get("claudeAiOauth") or {}) if real else {}
    oauth.update({"accessToken": t.access_token, "refreshToken": t.refresh_token,
                  "expiresAt": int(t.expires_at * 1000) if t.expires_at else None,
                  "scopes": list(login.scopes or CLAUDE_DEFAULT_SCOPES),
                  "subscriptionType": login.subscription_type, "rateLimitTier": login.rate_limit_tier})
    top: dict[str, Any] = {k: v for k, v in login.extra.items() if k != "claudeAiOauth"} if real else {}
    top["claudeAiOauth"] = oauth
    return json.dumps(top, separators=(",", ":"))


# --- placeholders ------------------------------------------------------------------------------------

def placeholder_login(login: Login) -> Login:
    """The same login with placeholder tokens: what the agent holds.

    Codex: the id_token keeps the real claims (plan, email, account) under a dummy
    signature; the access token is a JWT that expires in 2100 (Codex then never
    refreshes by itself). Claude: opaque strings, no expiry.
    """
    if login.provider == "codex":
        claims = dict(jwt_claims(login.id_token) or {})
        header = {"alg": "none", "typ": "JWT"}
        id_token = unsigned_jwt(header, claims) if claims else unsigned_jwt(header, {"iss": "cordon"})
        access = unsigned_jwt(header, {"exp": FAR_FUTURE, "iss": "cordon", "cordon": "placeholder"})
        return replace(login, access_token=access, refresh_token=PLACEHOLDER_REFRESH, id_token=id_token,
                       expires_at=FAR_FUTURE)
    return replace(login, access_token=PLACEHOLDER_CLAUDE_ACCESS, refresh_token=PLACEHOLDER_REFRESH,
                   expires_at=None)


def is_placeholder(login: Login) -> bool:
    return login.refresh_token == PLACEHOLDER_REFRESH or login.access_token.endswith(PLACEHOLDER_SIGNATURE) \
        or login.access_token == PLACEHOLDER_CLAUDE_ACCESS


def placeholder_access(login: Login) -> str:
    return placeholder_login(login).access_token


def claude_env(login: Login) -> dict[str, str]:
    """Claude Code's variables for an OAuth login with no refresh token in the agent at all."""
    env = {"CLAUDE_CODE_OAUTH_TOKEN": PLACEHOLDER_CLAUDE_ACCESS,
           "CLAUDE_CODE_OAUTH_SCOPES": " ".join(login.scopes or CLAUDE_DEFAULT_SCOPES)}
    if login.subscription_type:
        env["CLAUDE_CODE_SUBSCRIPTION_TYPE"] = login.subscription_type
    if login.rate_limit_tier:
        env["CLAUDE_CODE_RATE_LIMIT_TIER"] = login.rate_limit_tier
    return env


# --- refresh: cordon's own request, and applying the answer ------------------------------------------

def refresh_request_body(login: Login) -> bytes:
    p = provider(login.provider)
    body: dict[str, Any] = {"grant_type": "refresh_token", "refresh_token": login.refresh_token,
                            "client_id": p.client_id}
    if login.provider == "codex":
        body["refresh_reason"] = "proactive_expiry"
    else:
        body["scope"] = " ".join(login.scopes or CLAUDE_DEFAULT_SCOPES)
    return json.dumps(body, separators=(",", ":")).encode()


def apply_refresh(login: Login, answer: Mapping[str, Any], now: float) -> Login:
    """The login after a token endpoint's 200 answer (fields absent from it are kept)."""
    access = answer.get("access_token")
    if not isinstance(access, str) or not access:
        raise LoginFormatError("the token endpoint's answer has no access_token")
    refresh = answer.get("refresh_token")
    new = replace(login, access_token=access,
                  refresh_token=refresh if isinstance(refresh, str) and refresh else login.refresh_token,
                  last_refresh=now_iso(now))
    if login.provider == "codex":
        idt = answer.get("id_token")
        if isinstance(idt, str) and jwt_claims(idt) is not None:
            new = replace(new, id_token=idt)
        return replace(new, expires_at=jwt_exp(access))
    exp_in = answer.get("expires_in")
    scope = answer.get("scope")
    return replace(new, expires_at=now + float(exp_in) if isinstance(exp_in, int | float) else None,
                   scopes=tuple(scope.split()) if isinstance(scope, str) and scope else login.scopes)


_ERROR_CODE = re.compile(r"[a-z][a-z_.-]{0,39}")


def refresh_error_code(body: bytes) -> str:
    """A short, token-free name for a failed refresh answer (`invalid_grant`, `refresh_token_reused`)."""
    try:
        d = json.loads(body)
    except ValueError:
        return "unreadable answer"
    err = d.get("error") if isinstance(d, dict) else None
    if isinstance(err, dict):
        err = err.get("code") or err.get("type")
    if not err:
        return "no error code"
    # logged: only what has the shape of an OAuth error code (RFC 6749 §5.2: `invalid_grant`),
    # never a value that could be a token the endpoint echoed back
    return err if isinstance(err, str) and _ERROR_CODE.fullmatch(err) else "an unrecognised error code"


# --- what an agent's requests to the token host are -----------------------------------------------------

def classify(p: Provider, method: bytes, path: bytes, body: bytes) -> str | None:
    """"refresh", "revoke" or None (anything else: forwarded without a credential)."""
    if method != b"POST":
        return None
    plain = path.split(b"?", 1)[0].decode("latin-1")
    if plain == p.revoke_path:
        return "revoke"
    if plain != p.token_path:
        return None
    return "refresh" if _grant(body) == "refresh_token" else None


def _grant(body: bytes) -> str | None:
    try:
        d = json.loads(body)
        if isinstance(d, dict):
            g = d.get("grant_type")
            return g if isinstance(g, str) else None
    except ValueError:
        pass
    try:
        form = parse_qs(body.decode("latin-1"))
    except ValueError:
        return None
    g2 = form.get("grant_type")
    return g2[0] if g2 else None


def local_refresh_answer(login: Login) -> bytes:
    """The 200 an agent's refresh gets: its own placeholders again (never invalid_grant: Claude
    would wipe its credentials)."""
    ph = placeholder_login(login)
    if login.provider == "codex":
        d: dict[str, Any] = {"id_token": ph.id_token, "access_token": ph.access_token,
                             "refresh_token": ph.refresh_token}
    else:
        d = {"token_type": "Bearer", "access_token": ph.access_token, "refresh_token": ph.refresh_token,
             "expires_in": 31536000, "scope": " ".join(login.scopes or CLAUDE_DEFAULT_SCOPES)}
    return json.dumps(d).encode()


def workspace_origins(body: bytes) -> list[str]:
    """Hosts named by `workspace_backend_origin` in a Codex accounts/check answer (https only)."""
    try:
        d = json.loads(body)
    except ValueError:
        return []
    out: list[str] = []
    accounts = d.get("accounts") if isinstance(d, dict) else None
    for a in accounts if isinstance(accounts, list) else []:
        origin = a.get("workspace_backend_origin") if isinstance(a, dict) else None
        if isinstance(origin, str) and origin.startswith("https://"):
            host = origin[8:].split("/", 1)[0].split(":", 1)[0].lower().rstrip(".")
            if host and host not in out:
                out.append(host)
    return out


def login_routes(name: str) -> tuple[Route, Route]:
    """The two routes a login needs: its API host (token injected) and its token host (answered locally)."""
    p = provider(name)

    def auth(role: Literal["api", "auth"]) -> Auth:
        return Auth(type="login", secret=SecretSpec(source="login", account=name), header_name="Authorization",
                    scheme="Bearer", placeholder=PLACEHOLDER_CLAUDE_ACCESS, login=name, role=role)
    return (Route(name=p.api_route, host=p.api_host, auth=auth("api")),
            Route(name=p.auth_route, host=p.auth_host, auth=auth("auth")))
