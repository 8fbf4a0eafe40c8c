"""`cordon setup claude-code` and `cordon integration disable claude-code` on real settings files."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from cordon.core.certs import split_pem_certs
from cordon.store.config import load_config
from cordon.store.paths import Paths
from cordon.store.tokens import TokenStore
from tests.conftest import write

SETTINGS = """\
{
  "permissions": {
    "allow": [
      "Bash(npm test)"
    ],
    "deny": []
  },
  "env": {
    "MY_VAR": "mine"
  },
  "model": "opus"
}
"""


def state_dir(project: Path) -> Path:
    return Paths.from_env(os.environ, project).state_dir("project", project)


def settings_file(project: Path) -> Path:
    return project / ".claude" / "settings.local.json"


def test_setup_writes_the_env_block_and_the_route(cordon, project: Path) -> None:
    r = cordon("setup", "claude-code", "--yes")
    assert r.status == 0, r.stderr
    (route,) = load_config(project / "cordon.toml").routes
    assert route.host == "api.anthropic.com"
    assert route.auth.header_name == "x-api-key" and route.auth.scheme is None
    path = settings_file(project)
    env = json.loads(path.read_text())["env"]
    tok = TokenStore.for_state_dir(state_dir(project)).get("claude-code")
    assert env["HTTPS_PROXY"] == env["HTTP_PROXY"] == f"http://cordon:{tok}@127.0.0.1:6790"
    assert env["ANTHROPIC_API_KEY"] == "dummy-replaced-by-cordon"
    ca = Path(env["NODE_EXTRA_CA_CERTS"])
    assert len(split_pem_certs(ca.read_bytes())) == 1, "NODE_EXTRA_CA_CERTS gets the CA alone"
    bundle = split_pem_certs(Path(env["SSL_CERT_FILE"]).read_bytes())
    assert len(bundle) > 1 and split_pem_certs(ca.read_bytes())[0] in bundle
    assert "CORDON_SESSION" not in env and "CODEX_HOME" not in env
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text().startswith('{\n  "env": {\n    "HTTPS_PROXY"'), "2-space JSON like Claude's own"
    assert tok and tok not in r.stdout + r.stderr


def test_other_settings_are_kept_and_the_file_backed_up(cordon, project: Path) -> None:
    path = write(settings_file(project), SETTINGS)
    assert cordon("setup", "claude-code", "--yes").status == 0
    assert (project / ".claude" / "settings.local.json.cordon.bak").read_text() == SETTINGS
    text = path.read_text()
    data = json.loads(text)
    assert data["permissions"] == {"allow": ["Bash(npm test)"], "deny": []}
    assert data["model"] == "opus"
    assert data["env"]["MY_VAR"] == "mine"
    assert list(data) == ["permissions", "env", "model"], "key order kept"
    assert text.startswith('{\n  "permissions": {\n    "allow": [\n      "Bash(npm test)"\n'), "indent kept"
    assert text.endswith("}\n")


def test_four_space_indent_is_kept(cordon, project: Path) -> None:
    path = write(settings_file(project), '{\n    "model": "opus"\n}')
    assert cordon("setup", "claude-code", "--yes").status == 0
    text = path.read_text()
    assert text.startswith('{\n    "model": "opus",\n    "env": {\n        "HTTPS_PROXY"')
    assert not text.endswith("\n"), "no final newline where the user had none"


def test_idempotent_and_byte_identical_disable(cordon, project: Path) -> None:
    path = write(settings_file(project), SETTINGS)
    assert cordon("setup", "claude-code", "--yes").status == 0
    once = path.read_bytes()
    assert cordon("setup", "claude-code", "--yes").status == 0
    assert path.read_bytes() == once
    r = cordon("integration", "disable", "claude-code")
    assert r.status == 0 and "byte-identical" in r.stdout
    assert path.read_text() == SETTINGS
    assert sorted(p.name for p in path.parent.iterdir()) == ["settings.local.json"]
    assert TokenStore.for_state_dir(state_dir(project)).get("claude-code") is None


def test_disable_removes_what_it_created(cordon, project: Path) -> None:
    assert cordon("setup", "claude-code", "--yes").status == 0
    assert cordon("integration", "disable", "claude-code").status == 0
    assert not (project / ".claude").exists()


def test_disable_after_user_edits_keeps_them(cordon, project: Path) -> None:
    path = write(settings_file(project), SETTINGS)
    assert cordon("setup", "claude-code", "--yes").status == 0
    data = json.loads(path.read_text())
    data["permissions"]["allow"].append("Bash(make)")     # as Claude Code does when you approve a tool
    data["env"]["LATER"] = "1"
    path.write_text(json.dumps(data, indent=2) + "\n")
    r = cordon("integration", "disable", "claude-code")
    assert r.status == 0 and "kept your changes" in r.stdout
    assert json.loads(path.read_text()) == {
        "permissions": {"allow": ["Bash(npm test)", "Bash(make)"], "deny": []},
        "env": {"MY_VAR": "mine", "LATER": "1"},
        "model": "opus",
    }


def test_a_port_change_updates_only_cordons_entries(cordon, project: Path) -> None:
    path = write(settings_file(project), SETTINGS)
    assert cordon("setup", "claude-code", "--yes").status == 0
    before = path.read_text()
    cfg = project / "cordon.toml"
    cfg.write_text(cfg.read_text().replace("listen = 6790", "listen = 6800"))
    assert cordon("setup", "claude-code", "--yes").status == 0
    assert path.read_text() == before.replace(":6790", ":6800")


def test_user_scope_uses_the_home_settings(cordon, home: Path, project: Path) -> None:
    r = cordon("setup", "claude-code", "--scope", "user", "--yes")
    assert r.status == 0
    path = home / ".claude" / "settings.json"
    assert json.loads(path.read_text())["env"]["ANTHROPIC_API_KEY"] == "dummy-replaced-by-cordon"
    assert not (project / ".claude").exists()
    assert cordon("integration", "disable", "claude-code", "--scope", "user").status == 0
    assert not path.exists()


def test_broken_settings_are_refused_untouched(cordon, project: Path) -> None:
    path = write(settings_file(project), '{"env": {"A": "1",}}')
    r = cordon("setup", "claude-code", "--yes")
    assert r.status == 1 and "not valid JSON" in r.stderr and "hint:" in r.stderr
    assert path.read_text() == '{"env": {"A": "1",}}'
    assert not (project / "cordon.toml").exists(), "nothing is written before the check"
    write(settings_file(project), '["not", "an", "object"]')
    assert "JSON object" in cordon("setup", "claude-code", "--yes").stderr


def test_a_git_project_is_told_to_ignore_the_settings_file(cordon, project: Path) -> None:
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    assert "git does not ignore it" in cordon("setup", "claude-code", "--yes").stdout
    write(project / ".gitignore", "settings.local.json\n")
    assert "git does not ignore it" not in cordon("setup", "claude-code", "--yes").stdout


def test_a_symlinked_settings_file_is_written_through_the_link(cordon, home: Path, project: Path) -> None:
    real = write(home / "dotfiles" / "claude-settings.json", SETTINGS)
    link = home / ".claude" / "settings.json"
    link.parent.mkdir(parents=True)
    link.symlink_to(real)
    assert cordon("setup", "claude-code", "--scope", "user", "--yes").status == 0
    assert link.is_symlink(), "the dotfiles link stays a link"
    assert "HTTPS_PROXY" in json.loads(real.read_text())["env"]
    assert cordon("integration", "disable", "claude-code", "--scope", "user").status == 0
    assert link.is_symlink() and real.read_text() == SETTINGS


def test_hand_formatted_settings_keep_their_layout(cordon, project: Path) -> None:
    text = '{\n  "permissions": { "allow": ["Bash(ls)", "Read"] },\n  "model": "opus"\n}\n'
    path = write(settings_file(project), text)
    assert cordon("setup", "claude-code", "--yes").status == 0
    out = path.read_text()
    assert out.startswith('{\n  "permissions": { "allow": ["Bash(ls)", "Read"] },\n  "model": "opus",\n  "env": {\n')
    path.write_text(out.replace('"model": "opus"', '"model": "sonnet"'))
    assert cordon("integration", "disable", "claude-code").status == 0
    assert path.read_text() == text.replace("opus", "sonnet")
