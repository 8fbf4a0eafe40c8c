"""Subscription logins in the proxy: the real access token injected, refresh and revoke answered locally,
the real tokens refreshed once (on expiry, on a 401, across proxies), against mocks of both providers."""

from __future__ import annotations

import json
import os
import ssl
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from cordon.core.model import Route
from cordon.core.oauth import PLACEHOLDER_CLAUDE_ACCESS, PLACEHOLDER_REFRESH, Login, parse_client_file
from cordon.store.config import parse_config
from cordon.store.generation import generation_file
from cordon.store.logins import LoginStore
from cordon.store.paths import Paths
from tests.mock_oauth import MockProvider
from tests.oauth_fixtures import (
    ACCOUNT_ID,
    CLAUDE_ACCESS,
    CLAUDE_REFRESH,
    CODEX_REFRESH,
    claude_credentials,
    codex_access,
    codex_auth_json,
)
from tests.proxy_harness import RunningProxy, running_proxy

CODEX_ACCESS = codex_access(tag="first")


def store() -> LoginStore:
    return LoginStore(Paths.from_env(os.environ), os.environ)


def routes_for(m: MockProvider, tmp: Path) -> list[Route]:
    return list(parse_config(m.route_overrides(), tmp / "cordon.toml").routes)


@pytest.fixture
def codex(home: Path) -> Iterator[MockProvider]:
    store().save(parse_client_file("codex", codex_auth_json(access=CODEX_ACCESS)))
    with MockProvider("codex", access=CODEX_ACCESS, refresh=CODEX_REFRESH, account_id=ACCOUNT_ID) as m:
        yield m


@pytest.fixture
def claude(home: Path) -> Iterator[MockProvider]:
    store().save(parse_client_file("claude", claude_credentials()))
    with MockProvider("claude", access=CLAUDE_ACCESS, refresh=CLAUDE_REFRESH) as m:
        yield m


def proxy_for(m: MockProvider, tmp: Path) -> AbstractContextManager[RunningProxy]:
    paths = Paths.from_env(os.environ)
    return running_proxy(routes_for(m, tmp), secrets={}, logins=LoginStore(paths, os.environ),
                         secrets_gen_file=generation_file(paths.cordon_home))


def client(px: RunningProxy) -> httpx.Client:
    return httpx.Client(proxy=px.url, verify=ssl.create_default_context(cafile=str(px.ca_file)), timeout=20)


def codex_call(px: RunningProxy) -> httpx.Response:
    with client(px) as c:
        return c.post("https://chatgpt.com/backend-api/codex/responses", json={"model": "m", "stream": True},
                      headers={"Authorization": "Bearer placeholder-from-agent", "chatgpt-account-id": ACCOUNT_ID})


def test_codex_gets_the_real_token_and_keeps_its_headers(codex: MockProvider, tmp_path: Path) -> None:
    with proxy_for(codex, tmp_path) as px:
        r = codex_call(px)
        with client(px) as c:
            check = c.get("https://chatgpt.com/backend-api/wham/accounts/check",
                          headers={"Authorization": "Bearer placeholder-from-agent"})
    assert r.status_code == 200 and "response.completed" in r.text
    assert check.status_code == 200 and json.loads(check.content)["default_account_id"] == ACCOUNT_ID
    for q in codex.api.requests:
        assert q.header("authorization") == f"Bearer {CODEX_ACCESS}"
        assert "placeholder" not in q.raw()
    assert codex.api.requests[0].header("chatgpt-account-id") == ACCOUNT_ID
    assert codex.refreshes == []


def test_claude_gets_the_real_token_and_its_beta_header_stays(claude: MockProvider, tmp_path: Path) -> None:
    with proxy_for(claude, tmp_path) as px, client(px) as c:
        r = c.post("https://api.anthropic.com/v1/messages?beta=true", json={"stream": True},
                   headers={"Authorization": f"Bearer {PLACEHOLDER_CLAUDE_ACCESS}",
                            "anthropic-beta": "claude-code-20250219,oauth-2025-04-20", "x-app": "cli"})
    assert r.status_code == 200 and "message_stop" in r.text
    q = claude.api.requests[0]
    assert q.header("authorization") == f"Bearer {CLAUDE_ACCESS}"
    assert q.header("anthropic-beta") == "claude-code-20250219,oauth-2025-04-20" and q.header("x-app") == "cli"
    assert PLACEHOLDER_CLAUDE_ACCESS not in q.raw()


@pytest.mark.parametrize("name", ["codex", "claude"])
def test_an_agents_refresh_and_revoke_are_answered_locally(name: str, request: pytest.FixtureRequest,
                                                          tmp_path: Path) -> None:
    m: MockProvider = request.getfixturevalue(name)
    token_url = ("https://auth.openai.com/oauth/token" if name == "codex"
                 else "https://platform.claude.com/v1/oauth/token")
    revoke_url = ("https://auth.openai.com/oauth/revoke" if name == "codex"
                  else "https://platform.claude.com/v1/oauth/token/revoke")
    with proxy_for(m, tmp_path) as px, client(px) as c:
        r = c.post(token_url, json={"grant_type": "refresh_token", "refresh_token": PLACEHOLDER_REFRESH,
                                    "client_id": "x"})
        assert r.status_code == 200
        got = r.json()
        assert got["refresh_token"] == PLACEHOLDER_REFRESH
        for v in got.values():
            assert CODEX_ACCESS not in str(v) and CLAUDE_ACCESS not in str(v)
        rv = c.post(revoke_url, json={"token": PLACEHOLDER_REFRESH, "token_type_hint": "refresh_token"})
        assert rv.status_code == 200
        # the agent "logged out"; the real login goes on working
        api = ("https://chatgpt.com/backend-api/codex/responses" if name == "codex"
               else "https://api.anthropic.com/v1/messages")
        after = c.post(api, json={"stream": True}, headers={"Authorization": "Bearer placeholder"})
    assert after.status_code == 200
    assert m.token.requests == [], "an agent's refresh or revoke reached the provider"


def test_expired_access_token_is_refreshed_once_and_the_rotated_pair_stored(codex: MockProvider,
                                                                          tmp_path: Path) -> None:
    s = store()
    cur = s.load("codex")
    assert cur is not None
    expired = codex_access(exp=time.time() - 60, tag="expired")
    s.save(replace(cur, access_token=expired, expires_at=time.time() - 60))
    codex.family.access = expired
    with proxy_for(codex, tmp_path) as px:
        assert codex_call(px).status_code == 200
        assert codex_call(px).status_code == 200
    assert codex.refreshes == [CODEX_REFRESH]                  # one refresh, with the real refresh token
    after = s.load("codex")
    assert after is not None
    assert (after.access_token, after.refresh_token) == (codex.family.access, codex.family.refresh)
    assert after.last_refresh and after.expires_at and after.expires_at > time.time()
    assert [q.header("authorization") for q in codex.api.requests] == [f"Bearer {codex.family.access}"] * 2


def test_a_401_refreshes_once_and_retries_once(claude: MockProvider, tmp_path: Path) -> None:
    claude.fail_next = [401]
    with proxy_for(claude, tmp_path) as px, client(px) as c:
        r = c.post("https://api.anthropic.com/v1/messages", json={"stream": False, "messages": ["x" * 100_000]},
                   headers={"Authorization": "Bearer placeholder"})
    assert r.status_code == 200 and r.json()["content"][0]["text"] == claude.reply
    assert claude.refreshes == [CLAUDE_REFRESH]
    first, retry = claude.api.requests
    assert first.header("authorization") == f"Bearer {CLAUDE_ACCESS}"
    assert retry.header("authorization") == f"Bearer {claude.family.access}" != f"Bearer {CLAUDE_ACCESS}"
    assert retry.body == first.body                             # the same request, replayed
    stored = store().load("claude")
    assert stored is not None and stored.refresh_token == claude.family.refresh


def test_a_401_that_persists_is_passed_on_after_one_refresh(claude: MockProvider, tmp_path: Path) -> None:
    claude.fail_next = [401, 401]
    with proxy_for(claude, tmp_path) as px, client(px) as c:
        r = c.post("https://api.anthropic.com/v1/messages", json={}, headers={"Authorization": "Bearer p"})
    assert r.status_code == 401
    assert len(claude.refreshes) == 1 and len(claude.api.requests) == 2


def test_many_401s_at_once_spend_the_refresh_token_once(claude: MockProvider, tmp_path: Path) -> None:
    claude.fail_next = [401] * 4
    with proxy_for(claude, tmp_path) as px:
        results: list[int] = []

        def one() -> None:
            with client(px) as c:
                results.append(c.post("https://api.anthropic.com/v1/messages", json={},
                                      headers={"Authorization": "Bearer p"}).status_code)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: one(), range(4)))
    assert claude.refreshes == [CLAUDE_REFRESH], "the rotating refresh token was spent more than once"
    assert not claude.family.revoked
    assert results.count(200) >= 1


def test_two_proxies_sharing_a_login_refresh_once_and_both_use_the_rotated_token(
        claude: MockProvider, tmp_path: Path) -> None:
    s = store()
    cur = s.load("claude")
    assert cur is not None
    s.save(replace(cur, expires_at=time.time() - 1))            # both proxies see it expired
    with proxy_for(claude, tmp_path) as a, proxy_for(claude, tmp_path) as b:
        statuses: list[int] = []

        def via(px: RunningProxy) -> None:
            with client(px) as c:
                statuses.append(c.post("https://api.anthropic.com/v1/messages", json={},
                                       headers={"Authorization": "Bearer p"}).status_code)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(via, (a, b, a, b)))
        assert claude.refreshes == [CLAUDE_REFRESH]
        assert statuses == [200] * 4
        # later (the token is no longer just issued), a 401 seen by one proxy rotates the login;
        # the other picks the new token up from the store
        rotated = s.load("claude")
        assert rotated is not None
        s.save(replace(rotated, last_refresh="2026-01-01T00:00:00Z"))
        claude.fail_next = [401]
        via(a)
        via(b)
    assert len(claude.refreshes) == 2 and not claude.family.revoked
    assert claude.api.requests[-1].header("authorization") == f"Bearer {claude.family.access}"


def test_workspace_origin_named_by_accounts_check_gets_the_token(home: Path, tmp_path: Path) -> None:
    store().save(parse_client_file("codex", codex_auth_json(access=CODEX_ACCESS)))
    with MockProvider("codex", access=CODEX_ACCESS, refresh=CODEX_REFRESH, account_id=ACCOUNT_ID,
                      workspace_origin="https://eu.chatgpt.com") as m, proxy_for(m, tmp_path) as px, \
            client(px) as c:
        c.get("https://chatgpt.com/backend-api/wham/accounts/check", headers={"Authorization": "Bearer p"})
        after = c.get("https://eu.chatgpt.com/backend-api/codex/x", headers={"Authorization": "Bearer p"})
    assert after.status_code == 404            # the mock answered: the request reached it with the real token
    assert m.api.requests[-1].header("authorization") == f"Bearer {CODEX_ACCESS}"
    stored = store().load("codex")
    assert isinstance(stored, Login) and stored.origins == ("eu.chatgpt.com",)


def test_a_chunked_refresh_is_answered_and_other_token_calls_pass_unchanged(codex: MockProvider,
                                                                          tmp_path: Path) -> None:
    def chunks(data: bytes) -> Iterator[bytes]:
        yield data[:10]
        yield data[10:]
    refresh = json.dumps({"grant_type": "refresh_token", "refresh_token": PLACEHOLDER_REFRESH}).encode()
    code = b"grant_type=authorization_code&code=abc&client_id=x"
    with proxy_for(codex, tmp_path) as px, client(px) as c:
        r = c.post("https://auth.openai.com/oauth/token", content=chunks(refresh),
                   headers={"content-type": "application/json"})
        assert r.status_code == 200 and r.json()["refresh_token"] == PLACEHOLDER_REFRESH
        other = c.post("https://auth.openai.com/oauth/token", content=chunks(code),
                       headers={"content-type": "application/x-www-form-urlencoded"})
    assert other.status_code == 404                    # the mock's answer: it was forwarded
    assert [q.body for q in codex.token.requests] == [code]
    assert codex.refreshes == []


def test_401s_that_persist_do_not_refresh_once_per_request(claude: MockProvider, tmp_path: Path) -> None:
    claude.fail_next = [401] * 6
    with proxy_for(claude, tmp_path) as px, client(px) as c:
        statuses = [c.post("https://api.anthropic.com/v1/messages", json={},
                           headers={"Authorization": "Bearer p"}).status_code for _ in range(3)]
    assert statuses == [401, 401, 401]
    assert claude.refreshes == [CLAUDE_REFRESH]          # the fresh token was rejected too: no more refreshes
