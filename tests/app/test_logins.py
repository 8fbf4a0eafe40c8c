"""`cordon login|logout`: the real tokens move into the keyring, the client keeps placeholders, and back."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from cordon.core.oauth import PLACEHOLDER_REFRESH, jwt_claims
from cordon.store.config import load_config
from cordon.store.logins import LoginStore
from cordon.store.paths import Paths
from tests import configs
from tests.oauth_fixtures import (
    ACCOUNT_ID,
    CLAUDE_ACCESS,
    CLAUDE_REFRESH,
    CODEX_REFRESH,
    codex_access,
    codex_auth_json,
    write_claude,
    write_codex,
)


def store() -> LoginStore:
    return LoginStore(Paths.from_env(os.environ), os.environ)


def test_codex_login_moves_tokens_and_leaves_placeholders(cordon, project: Path, home: Path) -> None:
    access = codex_access()
    f = write_codex(home, codex_auth_json(access=access))
    r = cordon("login", "codex")
    assert r.status == 0, r.stderr
    assert "placeholders" in r.stdout and "cordon logout codex" in r.stdout
    text = f.read_text()
    assert access not in text and CODEX_REFRESH not in text            # the real tokens left the file
    d = json.loads(text)
    assert d["auth_mode"] == "chatgpt" and d["OPENAI_API_KEY"] is None
    assert d["tokens"]["account_id"] == ACCOUNT_ID
    assert d["tokens"]["refresh_token"] == PLACEHOLDER_REFRESH
    claims = jwt_claims(d["tokens"]["id_token"])
    assert claims is not None and claims["https://api.openai.com/auth"]["chatgpt_plan_type"] == "pro"
    assert (jwt_claims(d["tokens"]["access_token"]) or {}).get("exp") == 4102444800
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    held = store().load("codex")
    assert held is not None and held.access_token == access and held.refresh_token == CODEX_REFRESH
    assert access not in (home / ".config" / "cordon" / "logins.json").read_text()
    cfg = load_config(home / ".config" / "cordon" / "cordon.toml")   # no project config: the user's
    assert {(r.name, r.host, r.auth.role) for r in cfg.routes} == {
        ("codex", "chatgpt.com", "api"), ("codex-auth", "auth.openai.com", "auth")}


def test_login_logout_round_trip_gives_the_current_tokens_back(cordon, project: Path, home: Path) -> None:
    f = write_claude(home)
    assert cordon("login", "claude").status == 0
    assert CLAUDE_ACCESS not in f.read_text() and CLAUDE_REFRESH not in f.read_text()
    # the proxy rotated the tokens meanwhile
    from dataclasses import replace
    s = store()
    cur = s.load("claude")
    assert cur is not None
    s.save(replace(cur, access_token="sk-ant-oat01-ROTATED", refresh_token="sk-ant-ort01-ROTATED"))
    r = cordon("logout", "claude")
    assert r.status == 0, r.stderr
    back = json.loads(f.read_text())["claudeAiOauth"]
    assert back["accessToken"] == "sk-ant-oat01-ROTATED" and back["refreshToken"] == "sk-ant-ort01-ROTATED"
    assert back["subscriptionType"] == "max"
    assert s.load("claude") is None
    assert load_config(home / ".config" / "cordon" / "cordon.toml").routes == ()


def test_login_refuses_a_placeholder_file_and_a_missing_one(cordon, project: Path, home: Path) -> None:
    r = cordon("login", "codex")
    assert r.status == 1 and "no such file" in r.stderr and "codex login" in r.stderr
    write_codex(home)
    assert cordon("login", "codex").status == 0
    r = cordon("login", "codex")          # the file holds cordon's placeholders now
    assert r.status == 1 and "placeholders" in r.stderr


def test_login_refuses_a_host_an_api_key_route_holds(cordon, project: Path, home: Path) -> None:
    (project / "cordon.toml").write_text(configs.render(configs.anthropic()))
    f = write_claude(home)
    r = cordon("login", "claude")
    assert r.status == 1 and "cordon route remove anthropic" in r.stderr
    assert CLAUDE_ACCESS in f.read_text()                  # nothing changed
    assert store().load("claude") is None


def test_logout_refuses_to_overwrite_a_newer_real_login(cordon, project: Path, home: Path) -> None:
    f = write_codex(home)
    assert cordon("login", "codex").status == 0
    f.write_text(codex_auth_json(refresh="rt_NEWER-login"))
    r = cordon("logout", "codex")
    assert r.status == 1 and "--to" in r.stderr
    assert "rt_NEWER-login" in f.read_text()
    r = cordon("logout", "codex", "--to", str(home / "codex-auth.json"))
    assert r.status == 0
    assert CODEX_REFRESH in (home / "codex-auth.json").read_text()


def log_in_to_both(cordon, home: Path) -> str:
    """`cordon login codex` and `cordon login claude` from the agents' own files; the Codex access token."""
    access = codex_access()
    write_codex(home, codex_auth_json(access=access))
    write_claude(home)
    assert cordon("login", "codex").status == 0
    assert cordon("login", "claude").status == 0
    return access


def test_status_doctor_and_secret_check_show_each_login_never_a_token(cordon, project: Path, home: Path) -> None:
    from cordon.app.doctor import run_doctor, to_json
    access = log_in_to_both(cordon, home)
    tokens = [access, CODEX_REFRESH, CLAUDE_ACCESS, CLAUDE_REFRESH]
    st = cordon("status")
    assert "codex: plan pro, access token expires 20" in st.stdout
    assert "claude: plan max" in st.stdout and "last refreshed" in st.stdout
    js = json.loads(cordon("status", "--json").stdout)
    assert {x["login"]: x["plan"] for x in js["logins"]} == {"claude": "max", "codex": "pro"}
    chk = cordon("secret", "check")
    assert chk.status == 0, chk.stdout + chk.stderr
    assert "login codex" in chk.stdout and "plan pro" in chk.stdout
    rep = to_json(run_doctor(Paths.from_env(os.environ), os.environ, config=None, scope=None, manager=None,
                             probes=False))
    checks = {c["id"]: c for c in rep["checks"]}
    assert checks["login.codex"]["status"] == "ok" and "plan pro" in checks["login.codex"]["message"]
    assert checks["login.claude"]["details"]["plan"] == "max"
    for out in (st.stdout, st.stderr, json.dumps(js), chk.stdout, json.dumps(rep)):
        for t in tokens:
            assert t not in out
    # a login whose tokens left the keyring is a doctor failure
    from cordon.store.logins import keyring_spec
    from cordon.store.secrets import delete_keyring_secret
    delete_keyring_secret(keyring_spec("claude"), os.environ)
    rep = to_json(run_doctor(Paths.from_env(os.environ), os.environ, config=None, scope=None, manager=None,
                             probes=False))
    assert {c["id"]: c["status"] for c in rep["checks"]}["login.claude"] == "fail"


def test_setup_keeps_subscription_mode(cordon, project: Path, home: Path) -> None:
    access = log_in_to_both(cordon, home)
    for name in ("claude-code", "codex"):
        r = cordon("setup", name, "--scope", "project")
        assert r.status == 0, r.stderr
    cfg = load_config(project / "cordon.toml")
    by_host = {r.host: r for r in cfg.routes}
    assert by_host["api.anthropic.com"].auth.type == "login"      # not an x-api-key route
    assert by_host["chatgpt.com"].auth.login == "codex"
    settings = json.loads((project / ".claude" / "settings.local.json").read_text())
    assert "ANTHROPIC_API_KEY" not in settings["env"]
    auth = json.loads((project / ".codex" / "auth.json").read_text())
    assert auth["auth_mode"] == "chatgpt" and auth["tokens"]["refresh_token"] == PLACEHOLDER_REFRESH
    for f in (project / ".codex").rglob("*"):
        if f.is_file():
            assert access not in f.read_text() and CODEX_REFRESH not in f.read_text()


def test_cordon_start_injects_and_refreshes_a_login(cordon, project: Path, home: Path) -> None:
    """The long-lived proxy serves a login like a session does: injection, and a 401 refreshed once."""
    import ssl

    import httpx

    from cordon.store.tokens import TokenStore
    from tests.mock_oauth import MockProvider
    from tests.startproc import started
    write_claude(home)
    with MockProvider("claude", access=CLAUDE_ACCESS, refresh=CLAUDE_REFRESH) as m:
        (project / "cordon.toml").write_text(m.route_overrides())
        assert cordon("allow").status == 0                 # a project file written by hand
        assert cordon("login", "claude").status == 0
        sd = Paths.from_env(os.environ, cwd=project).state_dir("project", project)
        with started("--log-level", "info", cwd=project) as sp:
            token = TokenStore.for_state_dir(sd).load()["default"]
            ctx = ssl.create_default_context(cafile=str(sd / "certs" / "ca-cert.pem"))
            m.fail_next = [401]
            with httpx.Client(proxy=f"http://cordon:{token}@127.0.0.1:{sp.port}", verify=ctx, timeout=20) as c:
                r = c.post("https://api.anthropic.com/v1/messages", json={},
                           headers={"Authorization": "Bearer placeholder"})
            assert r.status_code == 200
        assert m.refreshes == [CLAUDE_REFRESH]
        assert m.api.requests[-1].header("authorization") == f"Bearer {m.family.access}"
        stored = store().load("claude")
        assert stored is not None and stored.refresh_token == m.family.refresh
        for t in (CLAUDE_ACCESS, CLAUDE_REFRESH, m.family.access, m.family.refresh):
            assert t not in sp.stderr


def test_the_proxys_store_tells_the_log_redaction_every_token_it_handles(home: Path) -> None:
    from dataclasses import replace

    from cordon.app.logins import proxy_login_store
    from cordon.core.oauth import parse_client_file
    from tests.oauth_fixtures import claude_credentials
    told: list[str] = []
    s = proxy_login_store(Paths.from_env(os.environ), os.environ, told.append)
    first = parse_client_file("claude", claude_credentials())
    s.save(first)
    assert s.load("claude") is not None
    s.save(replace(first, access_token="sk-ant-oat01-ROTATED", refresh_token="sk-ant-ort01-ROTATED"))
    assert told == [CLAUDE_ACCESS, CLAUDE_REFRESH, "sk-ant-oat01-ROTATED", "sk-ant-ort01-ROTATED"]


def test_login_from_a_copy_also_disarms_the_clients_own_file(cordon, project: Path, home: Path) -> None:
    access = codex_access()
    f = write_codex(home, codex_auth_json(access=access))
    copy = home / "auth-copy.json"
    copy.write_text(f.read_text())
    r = cordon("login", "codex", "--from", str(copy))
    assert r.status == 0, r.stderr
    assert f"rewrote {f} with placeholders too" in r.stdout
    for p in (f, copy):
        assert access not in p.read_text() and CODEX_REFRESH not in p.read_text()
