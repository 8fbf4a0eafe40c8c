"""The real Codex CLI and Claude Code on a subscription login under `cordon exec`, offline.

`cordon login` imports a made-up (well-formed) login; `cordon route edit` points the
login's routes at network-level mocks of the provider (tests/mock_oauth.py). The
mocks answer only the real access token; the agent's files, environment, output
and cordon's log must hold placeholders only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cordon.core.oauth import PLACEHOLDER_CLAUDE_ACCESS
from tests.codex_files import CODEX
from tests.conftest import NODE_MODULES, cordon_argv, subprocess_env, write
from tests.mock_oauth import MockProvider
from tests.oauth_fixtures import (
    ACCOUNT_ID,
    CLAUDE_ACCESS,
    CLAUDE_REFRESH,
    CODEX_REFRESH,
    claude_credentials,
    codex_access,
    codex_auth_json,
    codex_id_token,
    write_claude,
    write_codex,
)

CLAUDE = NODE_MODULES / ".bin" / "claude"
QUIET_CODEX_CONFIG = """\
check_for_update_on_startup = false
[analytics]
enabled = false
[features]
plugins = false
"""
CODEX_ACCESS = codex_access(tag="e2e")

pytestmark = pytest.mark.slow


def need(binary: Path) -> str:
    if not binary.exists() or shutil.which("node") is None:
        pytest.skip(f"{binary.name} is not installed (scripts/test installs tests/node)")
    return str(binary)


def cordon_run(project: Path, *args: str, env: dict[str, str] | None = None,
               timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run cordon; a run that outlives `timeout` (below pytest's own limit) fails with what it
    had printed so far, so a stall can be read from the log (cordon's debug lines name each
    request and where it went)."""
    try:
        return subprocess.run(cordon_argv(*args), cwd=project, env=subprocess_env(env), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        def tail(b: bytes | str | None) -> str:
            s = b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
            return s[-4000:]
        pytest.fail(f"cordon {' '.join(args[:3])} ran over {timeout:g} s\nstdout: {tail(e.stdout)}\n"
                    f"stderr: {tail(e.stderr)}")


def point_routes_at(project: Path, m: MockProvider) -> None:
    api, auth = ("codex", "codex-auth") if m.name == "codex" else ("claude", "claude-auth")
    for name, svc in ((api, m.api), (auth, m.token)):
        r = cordon_run(project, "route", "edit", name, "--upstream-address", svc.address,
                       "--upstream-ca-file", str(m.ca_file))
        assert r.returncode == 0, r.stderr


def assert_only_placeholders(secrets: list[str], r: subprocess.CompletedProcess[str], *dirs: Path) -> None:
    for s in secrets:
        assert s not in r.stdout, "a real token reached the agent's stdout"
        assert s not in r.stderr, "a real token reached stderr or cordon's log"
        for d in dirs:
            for f in d.rglob("*"):
                if f.is_file() and not f.is_symlink():
                    assert s.encode() not in f.read_bytes(), f"a real token is in {f}"


@pytest.fixture
def codex_login(project: Path, home: Path) -> Iterator[MockProvider]:
    write_codex(home, codex_auth_json(access=CODEX_ACCESS))
    (project / "cordon.toml").write_text("")
    r = cordon_run(project, "login", "codex", "--scope", "project")
    assert r.returncode == 0, r.stderr
    write(project / ".codex" / "config.toml", QUIET_CODEX_CONFIG)
    with MockProvider("codex", access=CODEX_ACCESS, refresh=CODEX_REFRESH, account_id=ACCOUNT_ID,
                      reply="Hello from the ChatGPT subscription mock") as m:
        point_routes_at(project, m)
        yield m


def test_codex_subscription_session(codex_login: MockProvider, project: Path, home: Path) -> None:
    codex = need(CODEX)
    m = codex_login
    r = cordon_run(project, "exec", "--log-level", "debug", "--", codex, "exec", "--skip-git-repo-check",
                   "--color", "never", "say hi", env={"CODEX_API_KEY": "sk-some-api-key-in-the-shell"})
    assert r.returncode == 0, r.stderr[-4000:]
    assert m.reply in r.stdout
    assert "CODEX_API_KEY" in r.stderr                        # dropped, and said so: it overrides the login
    paths = {q.path for q in m.api.requests}
    assert "/backend-api/wham/accounts/check" in paths and "/backend-api/codex/responses" in paths
    assert any(q.header("upgrade") for q in m.api.requests), "Codex tried its WebSocket first"
    for q in m.api.requests:
        assert q.header("authorization") == f"Bearer {CODEX_ACCESS}", q.path
        assert q.header("chatgpt-account-id") == ACCOUNT_ID
    auth = json.loads((project / ".codex" / "auth.json").read_text())
    assert auth["auth_mode"] == "chatgpt" and auth["tokens"]["account_id"] == ACCOUNT_ID
    assert_only_placeholders([CODEX_ACCESS, CODEX_REFRESH, codex_id_token().rsplit(".", 1)[1]], r,
                             project / ".codex", home / ".codex")
    assert m.token.requests == []


def test_codex_forced_expiry_refreshes_once_and_agent_logout_leaves_the_login(
        codex_login: MockProvider, project: Path, home: Path) -> None:
    codex = need(CODEX)
    m = codex_login
    # the stored access token expires: the proxy refreshes it with the real refresh token, once
    import os
    from dataclasses import replace

    from cordon.store.logins import LoginStore
    from cordon.store.paths import Paths
    env = dict(os.environ)
    s = LoginStore(Paths.from_env(env), env)
    cur = s.load("codex")
    assert cur is not None
    expired = codex_access(exp=time.time() - 30, tag="expired")
    s.save(replace(cur, access_token=expired, expires_at=time.time() - 30))
    m.family.access = expired
    r = cordon_run(project, "exec", "--", codex, "exec", "--skip-git-repo-check", "--color", "never", "say hi")
    assert r.returncode == 0, r.stderr[-4000:]
    assert m.refreshes == [CODEX_REFRESH]
    after = s.load("codex")
    assert after is not None and after.refresh_token == m.family.refresh and after.access_token == m.family.access
    # the agent logs out: its revoke is answered by cordon, and the real login goes on working
    r = cordon_run(project, "exec", "--log-level", "info", "--", codex, "logout")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "the agent's revoke call was answered by cordon" in r.stderr
    assert [q.path for q in m.token.requests if "revoke" in q.path] == []
    r = cordon_run(project, "exec", "--", codex, "exec", "--skip-git-repo-check", "--color", "never", "again")
    assert r.returncode == 0, r.stderr[-4000:]
    assert m.reply in r.stdout
    assert len(m.refreshes) == 1 and not m.family.revoked
    assert_only_placeholders([expired, m.family.access, m.family.refresh, CODEX_REFRESH], r, project / ".codex")
    # `cordon logout` gives the user's file back with the tokens cordon rotated
    r = cordon_run(project, "logout", "codex")
    assert r.returncode == 0, r.stderr
    back = json.loads((home / ".codex" / "auth.json").read_text())["tokens"]
    assert (back["access_token"], back["refresh_token"]) == (m.family.access, m.family.refresh)
    assert back["account_id"] == ACCOUNT_ID and back["id_token"] == cur.id_token


@pytest.fixture
def claude_login(project: Path, home: Path) -> Iterator[MockProvider]:
    write_claude(home, claude_credentials())
    (project / "cordon.toml").write_text("")
    r = cordon_run(project, "login", "claude", "--scope", "project")
    assert r.returncode == 0, r.stderr
    with MockProvider("claude", access=CLAUDE_ACCESS, refresh=CLAUDE_REFRESH,
                      reply="Hello from the Claude subscription mock") as m:
        point_routes_at(project, m)
        yield m


def claude_env() -> dict[str, str]:
    return {"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
            "ANTHROPIC_API_KEY": "sk-ant-api-key-in-the-shell"}


def test_claude_subscription_session(claude_login: MockProvider, project: Path, home: Path) -> None:
    claude = need(CLAUDE)
    m = claude_login
    r = cordon_run(project, "exec", "--log-level", "debug", "--", claude, "-p", "say hi", env=claude_env())
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-4000:])
    assert m.reply in r.stdout
    msgs = [q for q in m.api.requests if q.path == "/v1/messages"]
    assert msgs, [q.path for q in m.api.requests]
    for q in m.api.requests:
        if q.header("authorization") is not None:
            assert q.header("authorization") == f"Bearer {CLAUDE_ACCESS}", q.path
        assert q.header("x-api-key") is None
    assert "oauth-2025-04-20" in (msgs[0].header("anthropic-beta") or "")
    assert_only_placeholders([CLAUDE_ACCESS, CLAUDE_REFRESH], r, home / ".claude", project)
    assert PLACEHOLDER_CLAUDE_ACCESS in (home / ".claude" / ".credentials.json").read_text()


def test_claude_401_refreshes_once_and_retries(claude_login: MockProvider, project: Path) -> None:
    claude = need(CLAUDE)
    m = claude_login
    m.fail_next = [401]
    r = cordon_run(project, "exec", "--", claude, "-p", "say hi", env=claude_env())
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-4000:])
    assert m.reply in r.stdout
    assert m.refreshes == [CLAUDE_REFRESH] and not m.family.revoked
    assert_only_placeholders([CLAUDE_ACCESS, CLAUDE_REFRESH, m.family.access, m.family.refresh], r, project)


def test_the_agents_environment_holds_placeholders_only(project: Path, home: Path) -> None:
    write_codex(home, codex_auth_json(access=CODEX_ACCESS))
    write_claude(home, claude_credentials())
    for name in ("codex", "claude"):
        r = cordon_run(project, "login", name)
        assert r.returncode == 0, r.stderr
    # no cordon.toml in the project: the user's logins still apply (they live in the user config)
    r = cordon_run(project, "exec", "--", "env", env={"ANTHROPIC_API_KEY": "sk-ant-api-shell",
                                                      "CODEX_API_KEY": "sk-shell"})
    assert r.returncode == 0, r.stderr
    env = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    assert env["CLAUDE_CODE_OAUTH_TOKEN"] == PLACEHOLDER_CLAUDE_ACCESS
    assert env["CLAUDE_CODE_SUBSCRIPTION_TYPE"] == "max"
    assert "ANTHROPIC_API_KEY" not in env and "CODEX_API_KEY" not in env
    assert_only_placeholders([CODEX_ACCESS, CODEX_REFRESH, CLAUDE_ACCESS, CLAUDE_REFRESH], r,
                             home / ".codex", home / ".claude")


def test_session_ca_is_constrained_to_the_login_hosts(project: Path, home: Path) -> None:
    from cryptography import x509
    write_codex(home, codex_auth_json(access=CODEX_ACCESS))
    write_claude(home, claude_credentials())
    for name in ("codex", "claude"):
        assert cordon_run(project, "login", name).returncode == 0
    r = cordon_run(project, "exec", "--", "sh", "-c", 'cat "$NODE_EXTRA_CA_CERTS"')
    assert r.returncode == 0, r.stderr
    ca = x509.load_pem_x509_certificate(r.stdout.encode())
    nc = ca.extensions.get_extension_for_class(x509.NameConstraints).value
    assert {n.value for n in nc.permitted_subtrees or []} == {
        "chatgpt.com", "auth.openai.com", "api.anthropic.com", "platform.claude.com"}
    # a workspace origin an earlier session learned from accounts/check joins them
    import os
    from dataclasses import replace

    from cordon.store.logins import LoginStore
    from cordon.store.paths import Paths
    env = dict(os.environ)
    s = LoginStore(Paths.from_env(env), env)
    cur = s.load("codex")
    assert cur is not None
    s.save(replace(cur, origins=("backend.example.com",)))
    r = cordon_run(project, "exec", "--", "sh", "-c", 'cat "$NODE_EXTRA_CA_CERTS"')
    ca = x509.load_pem_x509_certificate(r.stdout.encode())
    nc = ca.extensions.get_extension_for_class(x509.NameConstraints).value
    assert "backend.example.com" in {n.value for n in nc.permitted_subtrees or []}


def test_claude_agent_logout_leaves_the_real_login_working(claude_login: MockProvider, project: Path,
                                                          home: Path) -> None:
    claude = need(CLAUDE)
    m = claude_login
    r = cordon_run(project, "exec", "--log-level", "info", "--", claude, "auth", "logout", env=claude_env())
    assert m.token.requests == [], "the agent's logout reached the token endpoint"
    assert "the agent's revoke call was answered by cordon" in r.stderr
    r = cordon_run(project, "exec", "--", claude, "-p", "say hi", env=claude_env())
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-4000:])
    assert m.reply in r.stdout and m.refreshes == []


def test_exec_never_replaces_a_newer_real_codex_login(project: Path, home: Path) -> None:
    f = write_codex(home, codex_auth_json(access=CODEX_ACCESS))
    assert cordon_run(project, "login", "codex").returncode == 0
    newer = codex_auth_json(refresh="rt_NEWER-real-login")
    f.write_text(newer)                                   # `codex login` again, outside cordon
    r = cordon_run(project, "exec", "--", "true")
    assert r.returncode == 1 and "cordon login codex --from" in r.stderr
    assert f.read_text() == newer


def test_zero_config_keeps_subscription_mode(project: Path, home: Path) -> None:
    write_claude(home, claude_credentials())
    assert cordon_run(project, "login", "claude").returncode == 0
    (home / ".config" / "cordon" / "cordon.toml").unlink()        # no configuration at all now
    r = cordon_run(project, "exec", "--", "env", env={"ANTHROPIC_API_KEY": "sk-ant-api03-a-real-api-key"})
    assert r.returncode == 0, r.stderr
    env = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    assert "ANTHROPIC_API_KEY" not in env                          # neither the key nor a placeholder
    assert env["CLAUDE_CODE_OAUTH_TOKEN"] == PLACEHOLDER_CLAUDE_ACCESS
    assert "sk-ant-api03-a-real-api-key" not in r.stdout


def test_two_sessions_refresh_an_expired_login_once_between_them(claude_login: MockProvider,
                                                               project: Path) -> None:
    """Two `cordon exec` processes at once, the login expired: one refresh with the real refresh token."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (scripts/test installs it)")
    import os
    from dataclasses import replace

    from cordon.store.logins import LoginStore
    from cordon.store.paths import Paths
    m = claude_login
    env = dict(os.environ)
    s = LoginStore(Paths.from_env(env), env)
    cur = s.load("claude")
    assert cur is not None
    s.save(replace(cur, expires_at=time.time() - 10))
    curl = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Authorization: Bearer x",
            "-H", "content-type: application/json", "-d", "{}", "https://api.anthropic.com/v1/messages"]
    procs = [subprocess.Popen(cordon_argv("exec", "--", *curl), cwd=project, env=subprocess_env(),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [o[0] for o in outs] == ["200", "200"], outs
    assert m.refreshes == [CLAUDE_REFRESH]                       # once between the two processes
    after = s.load("claude")
    assert after is not None and after.refresh_token == m.family.refresh and not m.family.revoked
