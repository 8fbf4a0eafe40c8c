"""`cordon exec` in a project where `cordon setup codex` ran: Codex's config.toml follows the session.

Setup points `[shell_environment_policy.set]` and every stdio `[mcp_servers.<name>.env]`
at the long-lived proxy; for the length of a session those entries (and only those) name
the session's proxy, token and bundle, and the file comes back byte for byte afterwards,
with the guarantees exec gives `.codex/.env`: crash repair, concurrent sessions, user edits
kept. Real processes throughout; the session state API is exercised directly where the
interleaving must be exact.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from cordon.store.paths import Paths
from cordon.store.session import create_session
from cordon.store.tokens import TokenStore
from cordon.store.userfiles import holders_of, release, toml_acquire
from tests import configs
from tests.codex_files import USER_CONFIG_WITH_SHELL_POLICY
from tests.conftest import cordon_argv, subprocess_env, wait_for, write

SECRET = "sk-real-5b0d2c71-DO-NOT-LEAK"

OWN_ROUTE = configs.render(configs.openai(name="oai", env="REAL_OPENAI_KEY", placeholder_env=configs.CODEX_VARS),
                           listen=7000)

SET = ("shell_environment_policy", "set")


def env() -> dict[str, str]:
    return subprocess_env({"REAL_OPENAI_KEY": SECRET})


def exec_argv(script: str, *flags: str) -> list[str]:
    return cordon_argv("exec", *flags, "--", "sh", "-c", script)


def run_exec(project: Path, script: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(exec_argv(script, *flags), cwd=project, env=env(), capture_output=True, text=True,
                          timeout=60)


def toml(path_or_text: Path | str) -> dict[str, Any]:
    text = path_or_text.read_text() if isinstance(path_or_text, Path) else path_or_text
    return tomllib.loads(text)


def cordon_values(conf: dict[str, Any]) -> dict[str, str]:
    """The proxy/CA entries setup manages, flattened: 'set.NAME' and '<server>.NAME'."""
    out = {f"set.{k}": v for k, v in conf["shell_environment_policy"]["set"].items()}
    for name, server in conf["mcp_servers"].items():
        for k, v in server.get("env", {}).items():
            out[f"{name}.{k}"] = v
    return out


@pytest.fixture
def setup_project(cordon, project: Path) -> tuple[Path, bytes, bytes]:  # type: ignore[no-untyped-def]
    """A project with the user's own config.toml, then `cordon setup codex`.

    Returns (config.toml, its bytes before setup, its bytes after setup).
    """
    write(project / "cordon.toml", OWN_ROUTE)
    config = write(project / ".codex" / "config.toml", USER_CONFIG_WITH_SHELL_POLICY)
    r = cordon("setup", "codex", "--yes")
    assert r.status == 0, r.stderr
    after = config.read_bytes()
    assert b"127.0.0.1:7000" in after
    return config, USER_CONFIG_WITH_SHELL_POLICY.encode(), after


def test_the_session_sees_its_own_proxy_in_config_toml_and_it_is_restored(
        setup_project: tuple[Path, bytes, bytes], project: Path) -> None:
    config, _, before = setup_project
    script = ('cat .codex/config.toml; printf "%s\\n%s\\n%s\\n" "$HTTPS_PROXY" "$SSL_CERT_FILE" '
              '"$NODE_EXTRA_CA_CERTS" > session.vars')
    r = run_exec(project, script)
    assert r.returncode == 0, r.stderr
    url, bundle, ca = (project / "session.vars").read_text().splitlines()
    port = url.rsplit(":", 1)[1]
    assert port != "7000" and f"127.0.0.1:{port}" in r.stdout
    seen, setup_state = toml(r.stdout), toml(before.decode())
    shell = seen["shell_environment_policy"]["set"]
    assert shell["HTTPS_PROXY"] == shell["https_proxy"] == shell["HTTP_PROXY"] == url
    assert shell["SSL_CERT_FILE"] == shell["CODEX_CA_CERTIFICATE"] == shell["REQUESTS_CA_BUNDLE"] == bundle
    assert shell["NODE_EXTRA_CA_CERTS"] == ca
    for server in ("files", "inline"):
        mcp = seen["mcp_servers"][server]["env"]
        assert mcp["HTTPS_PROXY"] == url and mcp["SSL_CERT_FILE"] == bundle and mcp["NODE_EXTRA_CA_CERTS"] == ca
    # nothing else moved: the user's keys, the placeholders, the url server, every other table
    assert shell["MY_TOOL_HOME"] == "/opt/tool" and seen["mcp_servers"]["inline"]["env"]["LOG_LEVEL"] == "debug"
    assert shell["OPENAI_API_KEY"] == shell["CODEX_API_KEY"] == "dummy-replaced-by-cordon"
    assert "CODEX_HOME" not in shell and "CORDON_SESSION" not in shell
    assert "env" not in seen["mcp_servers"]["remote"]
    changed = {k for k, v in cordon_values(seen).items() if cordon_values(setup_state)[k] != v}
    assert changed and all(k.rsplit(".", 1)[1] not in ("OPENAI_API_KEY", "CODEX_API_KEY", "LOG_LEVEL",
                                                         "MY_TOOL_HOME") for k in changed)
    assert {k: v for k, v in seen.items() if k not in ("shell_environment_policy", "mcp_servers")} == \
        {k: v for k, v in setup_state.items() if k not in ("shell_environment_policy", "mcp_servers")}
    kept = [ln for ln in before.decode().splitlines() if "7000" not in ln and "combined-ca" not in ln
            and "ca-cert" not in ln]
    it = iter(r.stdout.splitlines())
    assert all(ln in it for ln in kept), "a line of the file that is not a swapped entry changed"
    assert SECRET not in r.stdout
    assert config.read_bytes() == before


def test_disable_after_a_session_restores_the_users_original(
        setup_project: tuple[Path, bytes, bytes], project: Path, cordon) -> None:  # type: ignore[no-untyped-def]
    config, original, _ = setup_project
    dotenv = project / ".codex" / ".env"
    assert run_exec(project, 'grep -qF "$HTTPS_PROXY" .codex/config.toml').returncode == 0
    r = cordon("integration", "disable", "codex")
    assert r.status == 0, r.stderr
    assert config.read_bytes() == original
    assert not dotenv.exists()                  # setup created it; exec's restore left setup's bytes


def test_a_value_the_user_changed_after_setup_is_not_touched(
        setup_project: tuple[Path, bytes, bytes], project: Path) -> None:
    config, _, before = setup_project
    mine = before.replace(b'SSL_CERT_FILE = "', b'SSL_CERT_FILE = "/etc/my-roots.pem" #', 1)
    config.write_bytes(mine)
    r = run_exec(project, "cat .codex/config.toml")
    assert r.returncode == 0, r.stderr
    seen = toml(r.stdout)
    assert seen["shell_environment_policy"]["set"]["SSL_CERT_FILE"] == "/etc/my-roots.pem"
    assert seen["mcp_servers"]["files"]["env"]["SSL_CERT_FILE"] != "/etc/my-roots.pem"
    assert "7000" not in seen["shell_environment_policy"]["set"]["HTTPS_PROXY"]
    assert config.read_bytes() == mine


def test_no_config_toml_is_created_and_one_without_cordon_entries_is_untouched(
        cordon, project: Path) -> None:  # type: ignore[no-untyped-def]
    write(project / "cordon.toml", OWN_ROUTE)
    r = run_exec(project, "test -e .codex/config.toml && echo exists; echo done")
    assert r.returncode == 0 and r.stdout == "done\n", r.stderr
    assert not (project / ".codex").exists()
    # a config.toml of the user's own, proxy keys included but no setup: never edited
    own = USER_CONFIG_WITH_SHELL_POLICY.replace('MY_TOOL_HOME = "/opt/tool"', 'HTTPS_PROXY = "http://corp:3128"')
    config = write(project / ".codex" / "config.toml", own)
    r = run_exec(project, "cat .codex/config.toml")
    assert r.returncode == 0, r.stderr
    assert r.stdout == own and config.read_text() == own
    # a setup that was disabled again leaves nothing of cordon's either
    assert cordon("setup", "codex", "--yes").status == 0
    assert cordon("integration", "disable", "codex").status == 0
    r = run_exec(project, "cat .codex/config.toml")
    assert r.stdout == own and config.read_text() == own


def test_a_user_edit_during_the_session_is_kept(setup_project: tuple[Path, bytes, bytes], project: Path,
                                                cordon) -> None:  # type: ignore[no-untyped-def]
    config, original, before = setup_project
    # the user (or Codex) adds a key while the session runs
    r = run_exec(project, 'grep -qF "$HTTPS_PROXY" .codex/config.toml && '
                          "sed -i '1i personality = \"friendly\"' .codex/config.toml")
    assert r.returncode == 0, r.stderr
    after = config.read_bytes()
    assert after == b'personality = "friendly"\n' + before, "only the session's entries were undone"
    # disable then takes out cordon's entries and keeps the user's line
    r = cordon("integration", "disable", "codex")
    assert r.status == 0, r.stderr
    assert config.read_bytes() == b'personality = "friendly"\n' + original


def assert_the_next_command_restores(project: Path, config: Path, before: bytes) -> None:
    """Any later cordon command (here `route list`) puts config.toml back as it was before the
    session and leaves no session record behind."""
    r = subprocess.run(cordon_argv("route", "list"), cwd=project, env=env(), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert config.read_bytes() == before
    paths = Paths.from_env(dict(os.environ), project)
    assert not [f for f in paths.sessions_dir.iterdir() if f.suffix == ".json"]


def test_sigkilled_session_is_repaired_by_any_command(setup_project: tuple[Path, bytes, bytes],
                                                      project: Path, cordon) -> None:  # type: ignore[no-untyped-def]
    config, original, before = setup_project
    p = subprocess.Popen(exec_argv('echo "$HTTPS_PROXY" > url.tmp; echo $$ >> url.tmp; mv url.tmp url; '
                                   'exec sleep 60'), cwd=project, env=env())
    wait_for(project / "url")
    url, child = (project / "url").read_text().split()
    assert url in config.read_text()
    p.kill()
    p.wait()
    os.kill(int(child), signal.SIGKILL)                      # the orphaned child
    assert url in config.read_text()                         # left behind by the crash
    assert_the_next_command_restores(project, config, before)
    assert cordon("integration", "disable", "codex").status == 0
    assert config.read_bytes() == original


def test_a_restore_that_fails_is_retried_by_the_next_command(setup_project: tuple[Path, bytes, bytes],
                                                             project: Path) -> None:
    config, _, before = setup_project
    # the child blocks the name of cordon's temporary file (cordon is its parent): the restore fails.
    # Unconfined: in the sandbox's pid namespace the child cannot learn cordon's pid.
    blocker = ".codex/.config.toml.cordon-tmp-$PPID"
    r = run_exec(project, f'mkdir {blocker} && echo "$PPID" > cordon.pid; exit 7', "--sandbox", "off")
    assert r.returncode == 7, r.stderr                      # the command's status, all the same
    assert "could not restore" in r.stderr and "config.toml" in r.stderr
    assert b"127.0.0.1:7000" not in config.read_bytes()     # still the session's entries
    assert "127.0.0.1:7000" in (project / ".codex" / ".env").read_text()   # the .env was restored
    (project / ".codex" / f".config.toml.cordon-tmp-{(project / 'cordon.pid').read_text().strip()}").rmdir()
    assert_the_next_command_restores(project, config, before)


def test_two_concurrent_sessions(setup_project: tuple[Path, bytes, bytes], project: Path,
                                 cordon) -> None:  # type: ignore[no-untyped-def]
    config, _, before = setup_project
    script = ('echo "$HTTPS_PROXY" > {n}.url; cp .codex/config.toml {n}.tmp; mv {n}.tmp {n}.toml; '
              'while [ ! -e go-{n} ]; do sleep 0.02; done; cp .codex/config.toml {n}.end')
    a = subprocess.Popen(exec_argv(script.format(n="a")), cwd=project, env=env())
    wait_for(project / "a.toml")
    b = subprocess.Popen(exec_argv(script.format(n="b")), cwd=project, env=env())
    wait_for(project / "b.toml")
    url_a, url_b = (project / "a.url").read_text().strip(), (project / "b.url").read_text().strip()
    assert url_a != url_b
    assert toml(project / "a.toml")["shell_environment_policy"]["set"]["HTTPS_PROXY"] == url_a
    seen_b = toml(project / "b.toml")
    assert seen_b["shell_environment_policy"]["set"]["HTTPS_PROXY"] == url_b       # the newest session's
    assert seen_b["mcp_servers"]["files"]["env"]["HTTPS_PROXY"] == url_b
    # while both run, setup and disable refuse: the sessions would undo what they changed
    r = cordon("integration", "disable", "codex")
    assert r.status == 1 and "cordon exec" in r.stderr and "after that session has ended" in r.stderr
    r = cordon("setup", "codex", "--yes")
    assert r.status == 1 and "cordon exec" in r.stderr
    tokens = TokenStore.for_state_dir(Paths.from_env(os.environ, project).state_dir("project", project))
    old_token = tokens.get("codex")
    r = cordon("token", "rotate", "codex")
    assert r.status == 1 and "`cordon token rotate codex` again" in r.stderr
    assert tokens.get("codex") == old_token, "the rotation was called off before the token changed"
    (project / "go-b").touch()
    assert b.wait(timeout=30) == 0
    back_to_a = toml(config)
    assert back_to_a["shell_environment_policy"]["set"]["HTTPS_PROXY"] == url_a    # b gone: a's again
    assert back_to_a["mcp_servers"]["inline"]["env"]["HTTPS_PROXY"] == url_a
    (project / "go-a").touch()
    assert a.wait(timeout=30) == 0
    assert config.read_bytes() == before


def test_user_scope_setup_and_a_session_outside_any_project(cordon, home: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    paths = Paths.from_env(dict(os.environ), tmp_path)
    write(paths.user_config, OWN_ROUTE)
    config = write(home / ".codex" / "config.toml", USER_CONFIG_WITH_SHELL_POLICY)
    assert cordon("setup", "codex", "--scope", "user", "--yes").status == 0
    before = config.read_bytes()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = subprocess.run(exec_argv('cat "$HOME/.codex/config.toml"; echo "URL=$HTTPS_PROXY"'), cwd=elsewhere,
                       env=env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    text, _, url = r.stdout.rpartition("URL=")
    assert toml(text)["mcp_servers"]["files"]["env"]["HTTPS_PROXY"] == url.strip()
    assert config.read_bytes() == before


# --- the shared state, interleaved exactly (real files, real locks, live session records) --------

def _key(*parts: str) -> tuple[str, ...]:
    return parts


def test_an_edit_between_two_sessions_survives_both(home: Path, tmp_path: Path) -> None:
    paths = Paths.from_env(dict(os.environ), tmp_path)
    cfg = write(tmp_path / "config.toml", '# mine\n[shell_environment_policy.set]\nHTTPS_PROXY = "http://setup"\n'
                                          'MINE = "1"\n')
    original = cfg.read_bytes()
    a = create_session(paths, ca_pem=b"", bundle_pem=b"")
    b = create_session(paths, ca_pem=b"", bundle_pem=b"")
    key = _key(*SET, "HTTPS_PROXY")
    assert toml_acquire(paths, a.id, cfg, {key: ("http://setup", "http://a")})
    cfg.write_text(cfg.read_text() + 'EXTRA = "user"\n')     # the user edits while a runs
    assert toml_acquire(paths, b.id, cfg, {key: ("http://setup", "http://b")})
    assert toml(cfg)["shell_environment_policy"]["set"] == {"HTTPS_PROXY": "http://b", "MINE": "1",
                                                            "EXTRA": "user"}
    assert holders_of(paths, cfg) == [a.id, b.id]
    release(paths, a.id, cfg)                                # the older one leaves first
    assert toml(cfg)["shell_environment_policy"]["set"]["HTTPS_PROXY"] == "http://b"
    release(paths, b.id, cfg)
    assert cfg.read_bytes() == original + b'EXTRA = "user"\n'
    assert holders_of(paths, cfg) == []
    a.close()
    b.close()


def test_nothing_to_swap_holds_nothing(home: Path, tmp_path: Path) -> None:
    paths = Paths.from_env(dict(os.environ), tmp_path)
    cfg = write(tmp_path / "config.toml", '[shell_environment_policy.set]\nHTTPS_PROXY = "http://theirs"\n')
    s = create_session(paths, ca_pem=b"", bundle_pem=b"")
    key = _key(*SET, "HTTPS_PROXY")
    assert not toml_acquire(paths, s.id, cfg, {key: ("http://setup", "http://s")})
    assert not toml_acquire(paths, s.id, tmp_path / "absent.toml", {key: ("http://setup", "http://s")})
    assert not (tmp_path / "absent.toml").exists()
    assert holders_of(paths, cfg) == []
    s.close()


def test_a_file_that_stops_being_toml_is_left_alone(home: Path, tmp_path: Path) -> None:
    paths = Paths.from_env(dict(os.environ), tmp_path)
    cfg = write(tmp_path / "config.toml", '[shell_environment_policy.set]\nHTTPS_PROXY = "http://setup"\n')
    s = create_session(paths, ca_pem=b"", bundle_pem=b"")
    assert toml_acquire(paths, s.id, cfg, {_key(*SET, "HTTPS_PROXY"): ("http://setup", "http://s")})
    cfg.write_text("this is [not toml\n")
    release(paths, s.id, cfg)
    assert cfg.read_text() == "this is [not toml\n"
    assert holders_of(paths, cfg) == []
    s.close()
