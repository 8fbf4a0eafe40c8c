"""The pure parts of subscription logins: client files, placeholders, refresh answers, agent calls."""

from __future__ import annotations

import json

import pytest

from cordon.core.oauth import (
    CLAUDE,
    CODEX,
    FAR_FUTURE,
    PLACEHOLDER_REFRESH,
    Login,
    LoginFormatError,
    apply_refresh,
    classify,
    client_file,
    is_placeholder,
    jwt_claims,
    local_refresh_answer,
    parse_client_file,
    placeholder_login,
    refresh_error_code,
    refresh_request_body,
    workspace_origins,
)
from tests.oauth_fixtures import (
    ACCOUNT_ID,
    CLAUDE_ACCESS,
    CLAUDE_REFRESH,
    CODEX_REFRESH,
    claude_credentials,
    codex_access,
    codex_auth_json,
)


def test_codex_file_round_trip_and_placeholders() -> None:
    access = codex_access(exp=1_900_000_000)
    login = parse_client_file("codex", codex_auth_json(access=access))
    assert login.expires_at == 1_900_000_000 and login.account_id == ACCOUNT_ID and login.plan == "pro"
    assert "REAL" not in repr(login)                         # tokens stay out of repr
    real = json.loads(client_file(login, real=True))
    assert real["tokens"]["access_token"] == access and real["tokens"]["refresh_token"] == CODEX_REFRESH
    ph = json.loads(client_file(login, real=False))
    tokens = ph["tokens"]
    assert tokens["account_id"] == ACCOUNT_ID and tokens["refresh_token"] == PLACEHOLDER_REFRESH
    assert (jwt_claims(tokens["access_token"]) or {})["exp"] == FAR_FUTURE
    # the id_token keeps the real claims, not the real signature
    assert jwt_claims(tokens["id_token"]) == jwt_claims(login.id_token)
    assert tokens["id_token"].rsplit(".", 1)[1] != login.id_token.rsplit(".", 1)[1]
    assert all(p and "=" not in p for p in tokens["id_token"].split("."))   # unpadded, three parts
    with pytest.raises(LoginFormatError, match="placeholders"):
        parse_client_file("codex", client_file(login, real=False))


def test_claude_file_round_trip_keeps_other_fields() -> None:
    d = json.loads(claude_credentials(expires_at=1_800_000_000))
    d["claudeAiOauth"]["clientId"] = "custom"
    d["organizationUuid"] = "org-1"
    login = parse_client_file("claude", json.dumps(d))
    assert login.expires_at == 1_800_000_000 and login.subscription_type == "max"
    back = json.loads(client_file(login, real=True))
    assert back == d
    ph = json.loads(client_file(login, real=False))["claudeAiOauth"]
    assert ph["expiresAt"] is None and CLAUDE_ACCESS not in json.dumps(ph) and ph["subscriptionType"] == "max"
    assert Login.from_json(login.to_json()) == login


@pytest.mark.parametrize("text, why", [
    ("{", "not JSON"), ('{"auth_mode": "apikey", "OPENAI_API_KEY": "sk-x"}', "no ChatGPT login")])
def test_not_a_codex_login(text: str, why: str) -> None:
    with pytest.raises(LoginFormatError, match=why):
        parse_client_file("codex", text)


def test_refresh_request_and_answer() -> None:
    c = parse_client_file("claude", claude_credentials())
    body = json.loads(refresh_request_body(c))
    assert body["grant_type"] == "refresh_token" and body["refresh_token"] == CLAUDE_REFRESH
    assert body["client_id"] == CLAUDE.client_id and "user:inference" in body["scope"]
    new = apply_refresh(c, {"access_token": "new-a", "expires_in": 3600}, now=1000.0)
    assert new.access_token == "new-a" and new.refresh_token == CLAUDE_REFRESH and new.expires_at == 4600.0
    x = parse_client_file("codex", codex_auth_json())
    nx = apply_refresh(x, {"access_token": codex_access(exp=2_000_000_000), "refresh_token": "r2"}, now=5.0)
    assert nx.refresh_token == "r2" and nx.expires_at == 2_000_000_000 and nx.id_token == x.id_token
    with pytest.raises(LoginFormatError):
        apply_refresh(x, {"error": "x"}, now=0)
    assert refresh_error_code(b'{"error":{"code":"refresh_token_reused"}}') == "refresh_token_reused"
    assert refresh_error_code(b'{"error":"invalid_grant","access_token":"x"}') == "invalid_grant"
    # an endpoint that echoes a token where the code goes: the log gets no part of it
    for echoed in ("rt_Ab12Cd34Ef56", "eyJhbGciOi.eyJzdWIi.c2ln", "x" * 41):
        assert refresh_error_code(json.dumps({"error": echoed}).encode()) == "an unrecognised error code"


def test_agent_calls_are_classified() -> None:
    refresh = json.dumps({"grant_type": "refresh_token", "refresh_token": "p"}).encode()
    assert classify(CODEX, b"POST", b"/oauth/token", refresh) == "refresh"
    assert classify(CODEX, b"POST", b"/oauth/token", b"grant_type=refresh_token&refresh_token=p") == "refresh"
    assert classify(CODEX, b"POST", b"/oauth/token", b"grant_type=authorization_code&code=c") is None
    assert classify(CODEX, b"POST", b"/oauth/revoke", b"{}") == "revoke"
    assert classify(CLAUDE, b"POST", b"/v1/oauth/token/revoke", b"{}") == "revoke"
    assert classify(CLAUDE, b"GET", b"/v1/oauth/hello", b"") is None


def test_local_refresh_answer_is_placeholders() -> None:
    for login in (parse_client_file("codex", codex_auth_json()), parse_client_file("claude", claude_credentials())):
        answer = json.loads(local_refresh_answer(login))
        assert answer["refresh_token"] == PLACEHOLDER_REFRESH
        assert answer["access_token"] == placeholder_login(login).access_token
        assert is_placeholder(placeholder_login(login)) and not is_placeholder(login)


def test_workspace_origins() -> None:
    body = json.dumps({"accounts": [{"workspace_backend_origin": "https://eu.chatgpt.com"},
                                    {"workspace_backend_origin": "http://plain.example"},
                                    {"workspace_backend_origin": "https://EU.chatgpt.com./x"}]}).encode()
    assert workspace_origins(body) == ["eu.chatgpt.com"]
    assert workspace_origins(b"not json") == []
