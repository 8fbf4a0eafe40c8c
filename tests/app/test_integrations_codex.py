"""`cordon setup codex` and `cordon integration disable codex` on real files in a throwaway HOME."""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path

import pytest
from dotenv import dotenv_values

from cordon.core.certs import split_pem_certs
from cordon.store.config import load_config
from cordon.store.paths import Paths
from cordon.store.tokens import TokenStore
from tests import configs
from tests.codex_files import USER_CONFIG
from tests.conftest import write

USER_ENV = "# my own settings\nFOO=bar\nexport QUOTED='a b'\n"
OWN_ROUTE = configs.render(configs.openai(name="oai", env="REAL_OPENAI_KEY"), listen=7000)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def state_dir(project: Path) -> Path:
    return Paths.from_env(os.environ, project).state_dir("project", project)


def token(project: Path, name: str = "codex") -> str:
    tok = TokenStore.for_state_dir(state_dir(project)).get(name)
    assert tok
    return tok


def codex_files(project: Path) -> tuple[Path, Path]:
    write(project / ".codex" / ".env", USER_ENV)
    write(project / ".codex" / "config.toml", USER_CONFIG)
    return project / ".codex" / ".env", project / ".codex" / "config.toml"


def test_setup_in_an_empty_project_writes_everything(cordon, project: Path) -> None:
    r = cordon("setup", "codex", "--yes")
    assert r.status == 0, r.stderr
    cfg = load_config(project / "cordon.toml")
    (route,) = cfg.routes
    assert (route.host, route.auth.header_name, route.auth.scheme) == ("api.openai.com", "Authorization", "Bearer")
    assert cfg.listen == 6790
    certs = state_dir(project) / "certs"
    ca, bundle = certs / "ca-cert.pem", certs / "combined-ca.pem"
    assert len(split_pem_certs(ca.read_bytes())) == 1
    assert len(split_pem_certs(bundle.read_bytes())) > 1
    assert split_pem_certs(ca.read_bytes())[0] in split_pem_certs(bundle.read_bytes())

    env_file = project / ".codex" / ".env"
    values = dotenv_values(env_file)
    url = f"http://cordon:{token(project)}@127.0.0.1:6790"
    assert values["HTTPS_PROXY"] == values["https_proxy"] == url
    assert values["SSL_CERT_FILE"] == str(bundle)
    assert values["NODE_EXTRA_CA_CERTS"] == str(ca)
    assert values["OPENAI_API_KEY"] == "dummy-replaced-by-cordon"
    assert "localhost" in (values["NO_PROXY"] or "")
    assert not [k for k in values if k.upper().startswith("CODEX_")], "Codex ignores CODEX_* in .env"
    assert env_file.stat().st_mode & 0o777 == 0o600, "the file holds the proxy token"

    conf = tomllib.loads((project / ".codex" / "config.toml").read_text())
    shell = conf["shell_environment_policy"]["set"]
    assert shell["HTTPS_PROXY"] == url and shell["SSL_CERT_FILE"] == str(bundle)
    assert shell["CODEX_CA_CERTIFICATE"] == str(bundle)
    assert "CODEX_HOME" not in shell and "CORDON_SESSION" not in shell
    assert (project / ".codex" / "auth.json").stat().st_mode & 0o777 == 0o600
    assert f"export CODEX_HOME={project / '.codex'}" in r.stdout
    assert "cordon start" in r.stdout and "cordon service install" in r.stdout
    assert token(project) not in r.stdout + r.stderr


def test_existing_files_are_backed_up_and_every_other_line_kept(cordon, project: Path) -> None:
    env_file, config = codex_files(project)
    assert cordon("setup", "codex", "--yes").status == 0
    assert (project / ".codex" / ".env.cordon.bak").read_text() == USER_ENV
    assert (project / ".codex" / "config.toml.cordon.bak").read_text() == USER_CONFIG
    assert env_file.read_text().startswith(USER_ENV)
    assert dotenv_values(env_file)["FOO"] == "bar"
    text = config.read_text()
    lines = text.splitlines()
    it = iter(lines)
    kept = [x for x in USER_CONFIG.splitlines() if not x.startswith("env = {")]   # the one line cordon extends
    assert all(line in it for line in kept), "a line of the user's file went missing"
    conf = tomllib.loads(text)
    servers = conf["mcp_servers"]
    url = f"http://cordon:{token(project)}@127.0.0.1:6790"
    for name in ("files", "inline"):
        assert servers[name]["env"]["HTTPS_PROXY"] == url
        assert servers[name]["env"]["SSL_CERT_FILE"].endswith("combined-ca.pem")
        assert "OPENAI_API_KEY" not in servers[name]["env"], "an MCP server's own keys are not ours"
    assert servers["inline"]["env"]["LOG_LEVEL"] == "debug"
    assert "env" not in servers["remote"], "Codex refuses env on a url server"
    assert conf["profiles"]["fast"]["model"] == "o4-mini"


def test_a_second_setup_changes_no_byte(cordon, project: Path) -> None:
    codex_files(project)
    assert cordon("setup", "codex", "--yes").status == 0
    before, state_before = snapshot(project), snapshot(state_dir(project))
    stamps = {p: p.stat().st_mtime_ns for p in state_dir(project).rglob("*") if p.is_file()}
    r = cordon("setup", "codex", "--yes")
    assert r.status == 0
    assert snapshot(project) == before
    assert r.stdout.count("unchanged") == 3
    assert snapshot(state_dir(project)) == state_before
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps, "not even cordon's own files are rewritten"


def test_setup_after_a_port_or_token_change_updates_only_cordons_entries(cordon, project: Path) -> None:
    env_file, config = codex_files(project)
    assert cordon("setup", "codex", "--yes").status == 0
    old_env, old_config, old_token = env_file.read_text(), config.read_text(), token(project)
    cfg = project / "cordon.toml"
    cfg.write_text(cfg.read_text().replace("listen = 6790", "listen = 7123"))
    assert cordon("setup", "codex", "--yes").status == 0
    assert env_file.read_text() == old_env.replace(":6790", ":7123")
    assert config.read_text() == old_config.replace(":6790", ":7123")

    r = cordon("token", "rotate", "codex")
    assert r.status == 0, r.stderr
    new_token = token(project)
    assert new_token != old_token
    assert env_file.read_text() == old_env.replace(":6790", ":7123").replace(old_token, new_token)
    assert config.read_text() == old_config.replace(":6790", ":7123").replace(old_token, new_token)
    assert new_token not in r.stdout + r.stderr


def test_disable_restores_byte_identical_files(cordon, project: Path) -> None:
    codex_files(project)
    before = snapshot(project)
    assert cordon("setup", "codex", "--yes").status == 0
    cfg = (project / "cordon.toml").read_bytes()
    r = cordon("integration", "disable", "codex")
    assert r.status == 0, r.stderr
    assert "byte-identical" in r.stdout
    after = snapshot(project)
    assert after.pop("cordon.toml") == cfg, "disable leaves cordon.toml and its routes alone"
    assert after == before
    assert TokenStore.for_state_dir(state_dir(project)).get("codex") is None, "the client token is revoked"
    assert "nothing to undo" in cordon("integration", "disable", "codex").stdout


def test_disable_removes_a_codex_dir_it_created(cordon, project: Path) -> None:
    assert cordon("setup", "codex", "--yes").status == 0
    assert cordon("integration", "disable", "codex").status == 0
    assert not (project / ".codex").exists()
    assert cordon("setup", "codex", "--yes").status == 0
    write(project / ".codex" / "sessions" / "rollout.jsonl", "{}\n")   # Codex wrote its own files
    assert cordon("integration", "disable", "codex").status == 0
    assert sorted(p.name for p in (project / ".codex").iterdir()) == ["sessions"]


def test_disable_after_user_edits_keeps_them_and_removes_only_cordons_entries(cordon, project: Path) -> None:
    env_file, config = codex_files(project)
    user_set = USER_CONFIG + '\n[shell_environment_policy]\nset = { HTTPS_PROXY = "http://corp:3128", KEEP = "1" }\n'
    config.write_text(user_set)
    assert cordon("setup", "codex", "--yes").status == 0
    assert tomllib.loads(config.read_text())["shell_environment_policy"]["set"]["HTTPS_PROXY"].startswith(
        "http://cordon:")
    with env_file.open("a") as f:
        f.write("ADDED_LATER=1\n")
    config.write_text(config.read_text().replace('model = "o3"', 'model = "o5"'))
    r = cordon("integration", "disable", "codex")
    assert r.status == 0
    assert "kept your changes" in r.stdout
    assert env_file.read_text() == USER_ENV + "ADDED_LATER=1\n"
    assert config.read_text() == user_set.replace('model = "o3"', 'model = "o5"'), \
        "the user's own HTTPS_PROXY comes back; cordon's tables go"
    assert not (project / ".codex" / "auth.json").exists()


def test_a_value_the_user_changed_after_setup_stays_theirs(cordon, project: Path) -> None:
    _, config = codex_files(project)
    assert cordon("setup", "codex", "--yes").status == 0
    conf = config.read_text()
    line = next(x for x in conf.splitlines() if x.startswith("SSL_CERT_FILE") and "combined" in x)
    config.write_text(conf.replace(line, 'SSL_CERT_FILE = "/etc/my/bundle.pem"', 1))
    assert cordon("integration", "disable", "codex").status == 0
    assert tomllib.loads(config.read_text())["mcp_servers"]["files"]["env"] == {
        "SSL_CERT_FILE": "/etc/my/bundle.pem"}


def test_user_scope_uses_codex_home(cordon, home: Path, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cordon("setup", "codex", "--scope", "user", "--yes").status == 0
    assert (home / ".config" / "cordon" / "cordon.toml").is_file()
    assert dotenv_values(home / ".codex" / ".env")["HTTPS_PROXY"]
    assert not (project / ".codex").exists() and not (project / "cordon.toml").exists()

    elsewhere = home / "codex-home"
    monkeypatch.setenv("CODEX_HOME", str(elsewhere))
    r = cordon("setup", "codex", "--scope", "user", "--yes")
    assert r.status == 0
    assert "export CODEX_HOME" not in r.stdout
    user_state = Paths.from_env(os.environ).state_dir("user")
    tok = TokenStore.for_state_dir(user_state).get("codex")
    assert dotenv_values(elsewhere / ".env")["HTTPS_PROXY"] == f"http://cordon:{tok}@127.0.0.1:6790"
    assert cordon("integration", "disable", "codex", "--scope", "user").status == 0
    assert not (home / ".codex").exists() and not elsewhere.exists()


def test_interactive_answers_decide_the_route(cordon, project: Path) -> None:
    r = cordon("setup", "codex", stdin="n\n")
    assert r.status == 0
    assert "Add a route for api.openai.com" in r.stderr
    assert load_config(project / "cordon.toml").routes == ()
    assert "no route for api.openai.com" in r.stdout
    r = cordon("setup", "codex", stdin="y\n")
    assert [x.host for x in load_config(project / "cordon.toml").routes] == ["api.openai.com"]
    r = cordon("setup", "codex", stdin="")
    assert "Add a route" not in r.stderr, "no question once the route exists"


def test_an_existing_route_for_the_host_is_used_as_it_is(cordon, project: Path) -> None:
    write(project / "cordon.toml", OWN_ROUTE)
    before = (project / "cordon.toml").read_bytes()
    r = cordon("setup", "codex")
    assert r.status == 0
    assert (project / "cordon.toml").read_bytes() == before
    assert "export REAL_OPENAI_KEY" in r.stdout, "the step naming how to provide the missing secret"
    assert ":7000" in (dotenv_values(project / ".codex" / ".env")["HTTPS_PROXY"] or "")


def test_errors_are_clear_and_change_nothing(cordon, project: Path) -> None:
    assert cordon("setup", "codex", "--scope", "user", "--config", "x.toml").status == 2
    write(project / "cordon.toml", "listen = 0\n")
    r = cordon("setup", "codex", "--yes")
    assert r.status == 1 and "listen = 0" in r.stderr and "hint:" in r.stderr
    write(project / "cordon.toml", "listen = 6790\n")
    write(project / ".codex" / "config.toml", "model = \n")
    before = snapshot(project)
    r = cordon("setup", "codex", "--yes")
    assert r.status == 1 and "not valid TOML" in r.stderr
    assert snapshot(project) == before


def test_a_git_project_is_told_to_ignore_the_token_files(cordon, project: Path) -> None:
    if subprocess.run(["git", "--version"], capture_output=True).returncode != 0:
        pytest.skip("needs git")
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    r = cordon("setup", "codex", "--yes")
    assert "git does not ignore it" in r.stdout
    write(project / ".gitignore", ".codex/\n")
    assert "git does not ignore it" not in cordon("setup", "codex", "--yes").stdout


def test_setup_without_an_integration_prepares_the_scope_only(cordon, project: Path) -> None:
    r = cordon("setup")
    assert r.status == 0, r.stderr
    assert load_config(project / "cordon.toml").routes == ()
    certs = state_dir(project) / "certs"
    assert (certs / "ca-cert.pem").is_file() and (certs / "combined-ca.pem").is_file()
    assert not (project / ".codex").exists() and not (project / ".claude").exists()
    assert "cordon setup codex" in r.stdout
