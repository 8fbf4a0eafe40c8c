"""With a cordon.toml, a provider key cordon recognises in the environment still never reaches
the child in clear; a key an agent keeps in its own auth file (opencode's auth.json) is
reported, and gives way to the session's placeholder where a route covers its provider."""

from __future__ import annotations

import json
from pathlib import Path

from cordon.app.agentauth import for_session, stored_keys
from cordon.core.model import Auth, Route, SecretSpec
from cordon.core.providerkeys import protect
from cordon.core.routes import PRESETS
from tests import configs
from tests.conftest import write

SECRET = "AIza-real-gemini-7c1f3e9a-DO-NOT-LEAK"
OPENAI_SECRET = "sk-real-openai-0b9d-DO-NOT-LEAK"
PLACEHOLDER = "dummy-replaced-by-cordon"
SHOW = 'for v in GEMINI_API_KEY GOOGLE_API_KEY OPENAI_API_KEY; do eval "echo $v=\\$$v"; done; cat /proc/$$/environ'


def test_unrouted_provider_key_gets_a_session_route(project: Path, cordon_proc) -> None:  # type: ignore[no-untyped-def]
    configs.write(project / "cordon.toml", configs.openai())          # routes only OpenAI
    r = cordon_proc("exec", "--", "sh", "-c", SHOW, cwd=project,
                    env={"CORDON_TEST_REAL_KEY": OPENAI_SECRET, "GEMINI_API_KEY": SECRET})
    assert r.returncode == 0, r.stderr
    assert f"GEMINI_API_KEY={PLACEHOLDER}" in r.stdout.splitlines()
    assert SECRET not in r.stdout and SECRET not in r.stderr
    assert ("GEMINI_API_KEY is set but no route in the config covers generativelanguage.googleapis.com"
            in r.stderr)
    assert "`cordon route add --preset gemini`" in r.stderr


def test_provider_variable_a_route_does_not_list_gets_its_placeholder(project: Path, cordon_proc) -> None:  # type: ignore[no-untyped-def]
    # the route covers api.openai.com with a keyring-less env secret, but names no placeholder variable
    configs.write(project / "cordon.toml", configs.openai())
    r = cordon_proc("exec", "--", "sh", "-c", SHOW, cwd=project,
                    env={"CORDON_TEST_REAL_KEY": OPENAI_SECRET, "OPENAI_API_KEY": "sk-another-real-key-9f8e7d"})
    assert r.returncode == 0, r.stderr
    assert f"OPENAI_API_KEY={PLACEHOLDER}" in r.stdout.splitlines()
    assert "sk-another-real-key-9f8e7d" not in r.stdout
    assert "OPENAI_API_KEY gets route 'openai''s placeholder" in r.stderr


def route(name: str, host: str, var: str = "K", **auth: object) -> Route:
    return Route(name=name, host=host, auth=Auth(type="header", secret=SecretSpec(source="env", var=var),
                                                 header_name="x-k", **auth))  # type: ignore[arg-type]


def test_protect_is_a_no_op_without_provider_keys_or_for_placeholders() -> None:
    routes = [route("o", "api.openai.com")]
    p = protect({"GEMINI_API_KEY": PLACEHOLDER, "PATH": "/bin"}, routes)
    assert p.routes == tuple(routes) and not p.added and not p.covered
    custom = [route("o", "api.openai.com", placeholder="my-ph")]
    assert not protect({"OPENAI_API_KEY": "my-ph"}, custom).covered


def test_protect_leaves_a_preset_host_another_route_has_to_that_route() -> None:
    copilot = route("copilot", "*.githubcopilot.com")
    p = protect({"GH_TOKEN": "ghp_real"}, [copilot])
    (name, added), = p.added
    assert name == "github" and added.hosts == ("api.github.com",)
    assert added.auth.secret.var == "GH_TOKEN"
    assert set(PRESETS["github"].placeholder_env) <= set(added.auth.placeholder_env)


def opencode_auth(home: Path, entries: dict[str, object]) -> Path:
    return write(home / ".local" / "share" / "opencode" / "auth.json", json.dumps(entries))


def test_opencode_keys_are_found_in_the_file_or_the_variable(home: Path) -> None:
    f = opencode_auth(home, {"openai": {"type": "api", "key": "sk-x"}, "github-copilot": {"type": "oauth"},
                             "unknown": {"type": "api", "key": "k"}})
    env = {"XDG_DATA_HOME": str(home / ".local" / "share")}
    assert [(k.provider, k.preset, k.where) for k in stored_keys(env, home)] == [("openai", "openai", str(f))]
    env["OPENCODE_AUTH_CONTENT"] = json.dumps({"google": {"type": "api", "key": "AIza"}})
    assert [(k.provider, k.where) for k in stored_keys(env, home)] == [("google", "OPENCODE_AUTH_CONTENT")]
    env["OPENCODE_AUTH_CONTENT"] = "not json"
    assert stored_keys(env, home) == []


def test_opencode_routed_keys_become_placeholders_the_others_stay(home: Path) -> None:
    opencode_auth(home, {"openai": {"type": "api", "key": "sk-x"}, "anthropic": {"type": "api", "key": "sk-ant"},
                         "github-copilot": {"type": "oauth", "refresh": "r", "access": "a", "expires": 0}})
    env = {"XDG_DATA_HOME": str(home / ".local" / "share")}
    found = for_session(env, home, [PRESETS["openai"].route(SecretSpec(source="env", var="OPENAI_API_KEY"))])
    content = json.loads(found.env["OPENCODE_AUTH_CONTENT"])
    assert content["openai"] == {"type": "api", "key": PLACEHOLDER}
    assert content["anthropic"]["key"] == "sk-ant" and content["github-copilot"]["type"] == "oauth"
    assert [k.provider for k in found.replaced] == ["openai"]
    assert [k.provider for k in found.unrouted] == ["anthropic"]
    assert for_session(env, home, []).env == {}


def test_exec_warns_of_an_opencode_key_no_route_covers(project: Path, home: Path, cordon_proc) -> None:  # type: ignore[no-untyped-def]
    f = opencode_auth(home, {"anthropic": {"type": "api", "key": "sk-ant-stored-in-opencode"}})
    configs.write(project / "cordon.toml", configs.openai())
    r = cordon_proc("exec", "--", "sh", "-c", 'echo "[$OPENCODE_AUTH_CONTENT]"', cwd=project,
                    env={"CORDON_TEST_REAL_KEY": OPENAI_SECRET})
    assert r.returncode == 0, r.stderr
    assert r.stdout == "[]\n"                                   # nothing to replace: the file is opencode's
    assert f"opencode keeps its own anthropic API key in {f}, which no route covers" in r.stderr
    assert "sk-ant-stored-in-opencode" not in r.stderr
    # another agent's session is not told about opencode's keys
    r = cordon_proc("exec", "--", "true", cwd=project, env={"CORDON_TEST_REAL_KEY": OPENAI_SECRET})
    assert r.returncode == 0 and "opencode" not in r.stderr, r.stderr


def test_doctor_reports_opencode_keys_with_the_fix(home: Path) -> None:
    from cordon.app.doctor.checks import check_agent_keys
    from cordon.core.model import Config
    env = {"XDG_DATA_HOME": str(home / ".local" / "share")}
    [c] = check_agent_keys(None, env, home)
    assert c.status == "ok"
    f = opencode_auth(home, {"openai": {"type": "api", "key": "sk-stored-in-opencode-1"},
                             "google": {"type": "api", "key": "AIza-stored-in-opencode-2"}})
    routed = Config(routes=(PRESETS["openai"].route(SecretSpec(source="keyring", account="openai")),))
    by_id = {c.id: c for c in check_agent_keys(routed, env, home)}
    assert set(by_id) == {"agent_keys.opencode.openai", "agent_keys.opencode.google"}
    assert all(c.status == "warn" and c.details["where"] == str(f) for c in by_id.values())
    assert "hands it the placeholder" in by_id["agent_keys.opencode.openai"].message
    assert by_id["agent_keys.opencode.google"].fix is not None
    assert "`cordon route add --preset gemini`" in by_id["agent_keys.opencode.google"].fix
    assert not any("stored-in-opencode" in (c.message + (c.fix or "")) for c in by_id.values())


# every variable the agents of docs/agents.md read their key from
AGENT_VARS = {"GEMINI_API_KEY": "gemini", "GOOGLE_API_KEY": "gemini", "GOOGLE_GENERATIVE_AI_API_KEY": "gemini",
              "OPENAI_API_KEY": "openai", "ANTHROPIC_API_KEY": "anthropic", "GH_TOKEN": "github",
              "GITHUB_TOKEN": "github", "COPILOT_GITHUB_TOKEN": "github"}


def test_zero_config_protects_every_agents_variable(project: Path, cordon_proc) -> None:  # type: ignore[no-untyped-def]
    real = {v: f"real-{v.lower()}-0123456789" for v in AGENT_VARS}
    show = "; ".join(f'echo "{v}=${v}"' for v in AGENT_VARS) + "; cat /proc/$$/environ"
    r = cordon_proc("exec", "--", "sh", "-c", show, cwd=project, env=real)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for v in AGENT_VARS:
        assert f"{v}={PLACEHOLDER}" in lines, v
    assert not any(value in r.stdout or value in r.stderr for value in real.values())
    for preset in set(AGENT_VARS.values()):
        assert PRESETS[preset].host in r.stderr
