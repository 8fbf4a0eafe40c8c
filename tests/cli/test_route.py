"""`cordon route add|edit|list|show|remove`: flags, presets, scopes, and the wizard on a real pty."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pexpect
import pytest

from cordon.store.config import load_config
from tests.conftest import REPO, subprocess_env

# what each preset must produce (checked against each provider's API documentation)
PRESET_EXPECTED: dict[str, tuple[str, str, str | None, list[str]]] = {
    "openai": ("api.openai.com", "Authorization", "Bearer", ["OPENAI_API_KEY", "CODEX_API_KEY"]),
    "anthropic": ("api.anthropic.com", "x-api-key", None, ["ANTHROPIC_API_KEY"]),
    "gemini": ("generativelanguage.googleapis.com", "x-goog-api-key", None, ["GEMINI_API_KEY", "GOOGLE_API_KEY",
                                                                         "GOOGLE_GENERATIVE_AI_API_KEY"]),
    "github": ("api.github.com", "Authorization", "Bearer", ["GITHUB_TOKEN", "GH_TOKEN", "COPILOT_GITHUB_TOKEN"]),
    "openrouter": ("openrouter.ai", "Authorization", "Bearer", ["OPENROUTER_API_KEY"]),
    "mistral": ("api.mistral.ai", "Authorization", "Bearer", ["MISTRAL_API_KEY"]),
    "groq": ("api.groq.com", "Authorization", "Bearer", ["GROQ_API_KEY"]),
}


def show_json(cordon: Any, name: str, *extra: str) -> dict[str, Any]:
    r = cordon("route", "show", name, "--json", *extra)
    assert r.status == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("preset", sorted(PRESET_EXPECTED))
def test_presets(cordon: Any, project: Path, preset: str) -> None:
    r = cordon("route", "add", "--preset", preset)
    assert r.status == 0, r.stderr
    assert f"created {project / 'cordon.toml'}" in r.stdout
    assert f"cordon secret set {preset}" in r.stdout
    t = show_json(cordon, preset)
    host, header, scheme, env = PRESET_EXPECTED[preset]
    assert t["match"]["host"] == host
    assert t["auth"]["header_name"] == header
    assert t["auth"].get("scheme") == scheme
    assert t["auth"]["placeholder_env"] == env
    assert t["auth"]["secret"] == {"source": "keyring", "account": preset, "service": "cordon"}
    assert t["match"].get("hosts", []) == (["*.githubcopilot.com"] if preset == "github" else [])
    assert t["auth"].get("query_param") == ("key" if preset == "gemini" else None)
    text = (project / "cordon.toml").read_text()
    assert ("*.githubcopilot.com" in text) == (preset == "github")     # written to the file, not only shown


def test_query_auth_from_flags_and_a_host_flag_drops_the_presets_other_hosts(cordon: Any, project: Path) -> None:
    r = cordon("route", "add", "--host", "api.example.com", "--auth-type", "query", "--query-param", "api_key",
               "--source", "env", "--var", "EX")
    assert r.status == 0, r.stderr
    t = show_json(cordon, "example")
    assert t["auth"]["type"] == "query" and t["auth"]["query_param"] == "api_key"
    r = cordon("route", "add", "--host", "h.example.org", "--auth-type", "query", "--source", "env", "--var", "EX")
    assert r.status == 2 and "--query-param" in r.stderr
    r = cordon("route", "add", "--preset", "github", "--host", "ghe.example.com", "--name", "ghe")
    assert r.status == 0, r.stderr
    assert "hosts" not in show_json(cordon, "ghe")["match"]


def test_every_preset_is_tested() -> None:
    from cordon.core.routes import PRESETS
    assert set(PRESETS) == set(PRESET_EXPECTED)


def test_preset_with_overrides(cordon: Any, project: Path) -> None:
    r = cordon("route", "add", "--preset", "anthropic", "--name", "claude", "--paths", "/v1/messages",
               "--source", "env", "--var", "REAL_ANTHROPIC_KEY")
    assert r.status == 0, r.stderr
    t = show_json(cordon, "claude")
    assert t["match"] == {"host": "api.anthropic.com", "paths": ["/v1/messages"]}
    assert t["auth"]["secret"] == {"source": "env", "var": "REAL_ANTHROPIC_KEY"}
    assert "scheme" not in t["auth"]


def test_custom_routes_for_every_source(cordon: Any, project: Path) -> None:
    from cordon.core import certs
    (project / "ca.pem").write_bytes(certs.create_ca("upstream").cert_pem)   # route add checks it
    cases = [
        ("--host", "api.stripe.com", "--source", "1password", "--vault", "Eng", "--item", "Stripe Key",
         "--field", "secret", "--op-account", "team", "--timeout", "15"),
        ("--host", "a.example", "--header-name", "x-api-key", "--source", "keyring", "--account", "acct",
         "--service", "gh:github.com"),
        ("--host", "b.example", "--source", "env", "--var", "B_KEY", "--placeholder-env", "B_API_KEY,B2",
         "--placeholder-env", "B3"),
        ("--host", "c.example", "--source", "file", "--path", "secrets/c.txt"),
        ("--host", "d.example", "--source", "command", "--command", "pass show 'd key'", "--ttl", "300"),
        ("--host", "e.example", "--auth-type", "basic", "--username", "me", "--source", "env", "--var", "E"),
        ("--host", "f.example", "--name", "local", "--source", "env", "--var", "F", "--upstream-address",
         "127.0.0.1:8443", "--upstream-ca-file", "ca.pem", "--upstream-scheme", "https"),
    ]
    for argv in cases:
        r = cordon("route", "add", *argv)
        assert r.status == 0, (argv, r.stderr)
    routes = {r.name: r for r in load_config(project / "cordon.toml").routes}
    assert set(routes) == {"stripe", "a", "b", "c", "d", "e", "local"}
    s = routes["stripe"].auth.secret
    assert (s.vault, s.item, s.field, s.account, s.timeout) == ("Eng", "Stripe Key", "secret", "team", 15.0)
    assert routes["stripe"].auth.scheme == "Bearer"           # Authorization defaults to Bearer
    assert routes["a"].auth.scheme is None and routes["a"].auth.secret.service == "gh:github.com"
    assert routes["b"].auth.placeholder_env == ("B_API_KEY", "B2", "B3")
    assert routes["c"].auth.secret.path == project / "secrets" / "c.txt"
    assert routes["d"].auth.secret.command == ("pass", "show", "d key") and routes["d"].auth.secret.ttl == 300
    assert routes["e"].auth.type == "basic" and routes["e"].auth.username == "me"
    assert routes["local"].upstream.address == "127.0.0.1:8443"
    assert routes["local"].upstream.ca_file == project / "ca.pem"


@pytest.mark.parametrize("argv,status,what", [
    (["--host", "x.example", "--header-name", "Host"], 1, "reserved"),
    (["--host", "x.example", "--header-name", "Authorization", "--scheme", ""], 1, "needs a scheme"),
    (["--host", "https://x.example/"], 1, "not a host name"),
    (["--host", "x.example", "--source", "env"], 2, "needs --var"),
    (["--host", "x.example", "--source", "env", "--var", "X", "--vault", "V"], 2, "--vault does not apply"),
    (["--host", "x.example", "--source", "1password", "--vault", "V"], 2, "needs --vault and --item"),
    (["--host", "x.example", "--auth-type", "basic"], 2, "needs a user name"),
    (["--source", "env", "--var", "X"], 2, "needs a host"),
    (["--host", "x.example", "--scheme", "Bearer\r\nX: y"], 1, "line break"),
])
def test_bad_flags(cordon: Any, project: Path, argv: list[str], status: int, what: str) -> None:
    r = cordon("route", "add", *argv)
    assert r.status == status, r.stderr
    assert what in r.stderr and "cordon: error:" in r.stderr and "hint:" in r.stderr
    assert not (project / "cordon.toml").exists()


def test_usage_errors_from_argparse(cordon_proc: Any, project: Path) -> None:
    r = cordon_proc("route", "add", "--preset", "nope")
    assert r.returncode == 2 and "invalid choice" in r.stderr and "cordon: error:" in r.stderr


def test_duplicate_add(cordon: Any, project: Path) -> None:
    assert cordon("route", "add", "--preset", "openai").status == 0
    r = cordon("route", "add", "--preset", "openai")
    assert r.status == 1 and "already exists" in r.stderr and "cordon route edit openai" in r.stderr


def test_no_flags_without_a_terminal(cordon: Any, project: Path) -> None:
    r = cordon("route", "add")
    assert r.status == 2 and "needs flags when stdin is not a terminal" in r.stderr


def test_scopes(cordon: Any, project: Path, home: Path) -> None:
    r = cordon("route", "add", "--preset", "groq", "--scope", "user")
    assert r.status == 0, r.stderr
    user = home / ".config" / "cordon" / "cordon.toml"
    assert load_config(user).routes[0].name == "groq"
    assert not (project / "cordon.toml").exists()
    # with no project file, commands fall back to the user file
    assert json.loads(cordon("route", "list", "--json").stdout)[0]["name"] == "groq"
    other = project / "conf" / "other.toml"
    assert cordon("route", "add", "--preset", "mistral", "--config", "conf/other.toml").status == 0
    assert load_config(other).routes[0].name == "mistral"
    assert cordon("route", "list", "--config", str(other), "--json").stdout.count('"name"') == 1


def test_nearest_parent_file_is_edited(cordon: Any, project: Path) -> None:
    assert cordon("route", "add", "--preset", "openai").status == 0
    sub = project / "src" / "deep"
    sub.mkdir(parents=True)
    r = cordon("route", "add", "--preset", "anthropic", cwd=sub)
    assert r.status == 0, r.stderr
    assert not (sub / "cordon.toml").exists()
    assert [x.name for x in load_config(project / "cordon.toml").routes] == ["openai", "anthropic"]


def test_list_and_show(cordon: Any, project: Path) -> None:
    r = cordon("route", "list")
    assert r.status == 0 and r.stdout == "" and "no routes" in r.stderr
    assert json.loads(cordon("route", "list", "--json").stdout) == []
    cordon("route", "add", "--preset", "openai")
    cordon("route", "add", "--host", "api.stripe.com", "--paths", "/v1/", "--source", "env", "--var", "STRIPE")
    out = cordon("route", "list").stdout.splitlines()
    assert out[0].split() == ["NAME", "HOST", "AUTH", "SECRET"]
    assert out[1].split()[:2] == ["openai", "api.openai.com"] and "keyring cordon/openai" in out[1]
    assert "environment variable STRIPE" in out[2] and "/v1/" in out[2]
    data = json.loads(cordon("route", "list", "--json").stdout)
    assert [d["name"] for d in data] == ["openai", "stripe"]
    shown = cordon("route", "show", "openai").stdout
    assert "host:            api.openai.com" in shown and "Authorization: Bearer <secret>" in shown
    assert "OPENAI_API_KEY, CODEX_API_KEY" in shown and f"config:          {project / 'cordon.toml'}" in shown
    r = cordon("route", "show", "nope")
    assert r.status == 1 and "no route named 'nope'" in r.stderr


def test_edit(cordon: Any, project: Path) -> None:
    cordon("route", "add", "--preset", "openai")
    (project / "cordon.toml").write_text("# my comment\n" + (project / "cordon.toml").read_text())
    r = cordon("route", "edit", "openai", "--paths", "/v1/", "--account", "work-openai")
    assert r.status == 0, r.stderr
    t = show_json(cordon, "openai")
    assert t["match"]["paths"] == ["/v1/"] and t["auth"]["secret"]["account"] == "work-openai"
    assert t["auth"]["placeholder_env"] == ["OPENAI_API_KEY", "CODEX_API_KEY"]   # untouched
    assert (project / "cordon.toml").read_text().startswith("# my comment\n")
    assert cordon("route", "edit", "openai", "--paths", "", "--name", "oai").status == 0
    t = show_json(cordon, "oai")
    assert t["match"]["paths"] == [] and t["auth"]["secret"]["account"] == "work-openai"
    assert cordon("route", "edit", "oai", "--header-name", "x-api-key").status == 0
    assert "scheme" not in show_json(cordon, "oai")["auth"]
    assert cordon("route", "edit", "oai", "--source", "env", "--var", "REAL").status == 0
    assert show_json(cordon, "oai")["auth"]["secret"] == {"source": "env", "var": "REAL"}
    r = cordon("route", "edit", "nope", "--paths", "/")
    assert r.status == 1 and "no route named 'nope'" in r.stderr
    r = cordon("route", "edit", "oai")
    assert r.status == 2 and "needs flags" in r.stderr


def test_remove(cordon: Any, project: Path) -> None:
    import keyring

    cordon("route", "add", "--preset", "openai")
    cordon("route", "add", "--preset", "groq")
    keyring.set_password("cordon", "openai", "sk-1")
    keyring.set_password("cordon", "groq", "sk-2")
    r = cordon("route", "remove", "openai")
    assert r.status == 0 and "removed route 'openai'" in r.stdout and "--delete-secret" in r.stdout
    assert keyring.get_password("cordon", "openai") == "sk-1"
    r = cordon("route", "remove", "groq", "--delete-secret")
    assert r.status == 0 and "deleted its secret" in r.stdout
    assert keyring.get_password("cordon", "groq") is None
    assert load_config(project / "cordon.toml").routes == ()
    assert cordon("route", "remove", "groq").status == 1


@pytest.mark.parametrize("argv", [["route", "--help"], ["route", "add", "--help"], ["route", "edit", "--help"],
                                  ["route", "list", "--help"], ["route", "show", "--help"],
                                  ["route", "remove", "--help"]])
def test_help(cordon_proc: Any, project: Path, argv: list[str]) -> None:
    r = cordon_proc(*argv)
    assert r.returncode == 0 and "usage: cordon route" in r.stdout


def test_route_alone_prints_help(cordon: Any, project: Path) -> None:
    r = cordon("route")
    assert r.status == 2 and "ACTION" in r.stdout


# --- the wizard on a real terminal -------------------------------------------------------------

def spawn(project: Path, *args: str) -> pexpect.spawn:
    child = pexpect.spawn(sys.executable, ["-m", "cordon", *args], cwd=str(project), env=subprocess_env(),
                          encoding="utf-8", timeout=30, dimensions=(40, 200))
    child.logfile_read = open(os.devnull, "w")  # noqa: SIM115 - closed with the child
    return child


def finish(child: pexpect.spawn) -> tuple[int, str]:
    child.expect(pexpect.EOF)
    child.close()
    child.logfile_read.close()
    return child.exitstatus, child.before


def wizard_at_the_keyring_account(project: Path) -> pexpect.spawn:
    """`cordon route add` on a terminal: the openai preset, its default name and source, up to the
    `Keyring account` prompt."""
    c = spawn(project, "route", "add")
    for prompt, answer in [(r"Provider .*: ", "openai"), (r"Route name \[openai\]: ", ""),
                           (r"Secret source .*\[keyring\]: ", "")]:
        c.expect(prompt)
        c.sendline(answer)
    c.expect(r"Keyring account \[openai\]: ")
    return c


def test_wizard_custom_route(project: Path) -> None:
    c = spawn(project, "route", "add")
    for prompt, answer in [
        (r"Provider \(openai/.*/custom\) \[custom\]: ", ""),
        (r"Host \(exact, e.g. api.example.com\): ", "api.stripe.com"),
        (r"Route name \[stripe\]: ", ""),
        (r"Auth type \(header/basic\) \[header\]: ", "bogus"),
        (r"choose one of: header, basic", None),
        (r"Auth type \(header/basic\) \[header\]: ", ""),
        (r"Header name \[Authorization\]: ", ""),
        (r"Scheme \[Bearer\]: ", ""),
        (r"Placeholder variables .*: ", "STRIPE_API_KEY"),
        (r"Secret source \(keyring/1password/env/file/command\) \[keyring\]: ", "1password"),
        (r"1Password vault: ", "Eng"),
        (r"1Password item: ", "Stripe Key"),
        (r"1Password field \[credential\]: ", ""),
        (r"1Password account \(empty for the default\): ", ""),
    ]:
        c.expect(prompt)
        if answer is not None:
            c.sendline(answer)
    status, out = finish(c)
    assert status == 0, out
    assert "added route 'stripe' (api.stripe.com)" in out
    (r,) = load_config(project / "cordon.toml").routes
    assert r.auth.placeholder_env == ("STRIPE_API_KEY",) and r.auth.scheme == "Bearer"
    assert (r.auth.secret.vault, r.auth.secret.item, r.auth.secret.field) == ("Eng", "Stripe Key", "credential")


def test_wizard_preset_stores_the_secret_without_echo(project: Path) -> None:
    secret = "sk-wizard-5e3c1b7a9d"
    c = wizard_at_the_keyring_account(project)
    c.sendline("")
    c.expect(r"Store the secret in the keyring now\? \(Y/n\): ")
    c.sendline("")
    c.expect(r"Secret for route 'openai' \(input hidden\): ")
    c.sendline(secret)
    status, out = finish(c)
    assert status == 0, out
    assert "stored the secret of route 'openai' in keyring cordon/openai" in out
    assert secret not in out
    import keyring
    assert keyring.get_password("cordon", "openai") == secret


def test_wizard_edit_keeps_answers_as_defaults(cordon: Any, project: Path) -> None:
    cordon("route", "add", "--host", "api.stripe.com", "--source", "env", "--var", "STRIPE")
    c = spawn(project, "route", "edit", "stripe")
    for prompt, answer in [
        (r"Host \(exact, e.g. api.example.com\) \[api.stripe.com\]: ", ""),
        (r"Route name \[stripe\]: ", "payments"),
        (r"Auth type \(header/basic\) \[header\]: ", ""),
        (r"Header name \[Authorization\]: ", ""),
        (r"Scheme \[Bearer\]: ", ""),
        (r"Placeholder variables .*: ", ""),
        (r"Secret source .*\[env\]: ", ""),
        (r"Environment variable holding the secret \[STRIPE\]: ", "STRIPE_LIVE"),
    ]:
        c.expect(prompt)
        c.sendline(answer)
    status, out = finish(c)
    assert status == 0, out
    (r,) = load_config(project / "cordon.toml").routes
    assert (r.name, r.host, r.auth.secret.var) == ("payments", "api.stripe.com", "STRIPE_LIVE")


def test_console_entry_point_and_version() -> None:
    import subprocess
    out = subprocess.run([sys.executable, "-m", "cordon", "--version"], capture_output=True, text=True,
                         env=subprocess_env(), cwd=str(REPO))
    assert out.returncode == 0 and out.stdout.startswith("cordon ")


@pytest.mark.parametrize("where", ["parent-is-a-file", "proc"])
def test_an_unwritable_config_is_one_line_error(cordon_proc: Any, project: Path, where: str) -> None:
    """No `internal error: FileNotFoundError` (exit 70): the file, the reason and a fix."""
    if where == "parent-is-a-file":
        (project / "afile").write_text("x\n")
        target = project / "afile" / "cordon.toml"
        reason = f"{project / 'afile'} is not a directory"
    else:
        target = Path("/proc/cordon.toml")     # a directory nobody may create files in
        reason = "No such file or directory"
    p = cordon_proc("route", "add", "--preset", "openai", "--config", str(target), cwd=project)
    assert p.returncode == 1, p.stderr
    lines = p.stderr.splitlines()
    assert lines[0] == f"cordon: error: cannot write {target}: {reason}"
    assert lines[1].startswith("hint: ") and "--config PATH" in lines[1]
    assert len(lines) == 2 and "Traceback" not in p.stderr



def test_wizard_refuses_a_key_typed_as_the_keyring_account(project: Path) -> None:
    """A key pasted at the `Keyring account` prompt is refused, wiped from the terminal, never
    repeated by cordon and never written to cordon.toml; the next answer is used instead."""
    pasted = "sk-proj-Q3x9Lm2Vt7Rb4Nw8Kc1Zp6Hy5"
    c = wizard_at_the_keyring_account(project)
    c.sendline(pasted)
    c.expect_exact("\x1b[1A\x1b[2K")                   # the echoed line is erased
    c.expect(r"that looks like a secret key, not a name: it was not kept\.")
    refusal = c.before + c.after
    c.expect(r"Keyring account \[openai\]: ")
    assert pasted not in refusal + c.before
    c.sendline("work-openai")
    c.expect(r"Store the secret in the keyring now\? \(Y/n\): ")
    c.sendline("n")
    status, out = finish(c)
    assert status == 0, out
    assert pasted not in out
    text = (project / "cordon.toml").read_text()
    assert pasted not in text and 'account = "work-openai"' in text


@pytest.mark.parametrize("account", ["sk-proj-Q3x9Lm2Vt7Rb4Nw8Kc1Zp6Hy5", "ghp_0123456789abcdefghijABCDEFGHIJ",
                                     "xoxb-2412-9941-abcdefGHIJ", "a8f5f167f44f4964e6c998dee827110c"])
def test_account_flag_that_looks_like_a_key_is_refused(cordon: Any, project: Path, account: str) -> None:
    r = cordon("route", "add", "--preset", "openai", "--account", account)
    assert r.status == 2
    assert account not in r.stdout + r.stderr
    assert not (project / "cordon.toml").exists()


@pytest.mark.parametrize("account", ["openai", "me@example.com", "team_openai_prod_key_2025", "gh:github.com"])
def test_account_names_people_choose_are_accepted(cordon: Any, project: Path, account: str) -> None:
    r = cordon("route", "add", "--preset", "openai", "--account", account)
    assert r.status == 0, r.stderr


def test_setup_without_a_terminal_needs_yes(cordon_proc: Any, project: Path) -> None:
    p = cordon_proc("setup", "codex", input="", cwd=project)     # stdin is not a terminal, and empty
    assert p.returncode == 2
    assert "cordon: error: cordon setup has a question and no terminal to answer it" in p.stderr
    assert "hint: pass --yes" in p.stderr
    assert not (project / "cordon.toml").exists() and not (project / ".codex").exists()
    p = cordon_proc("setup", "codex", "--yes", cwd=project)
    assert p.returncode == 0, p.stderr
    assert [r.host for r in load_config(project / "cordon.toml").routes] == ["api.openai.com"]


def _two_projects_sharing_openai(cordon_proc: Any, tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        assert cordon_proc("route", "add", "--preset", "openai", cwd=d).returncode == 0
    assert cordon_proc("secret", "set", "openai", input="sk-shared-value-1234\n", cwd=a).returncode == 0
    return a, b


def test_removing_a_shared_keyring_entry_warns_and_keeps_it_without_force(cordon_proc: Any, home: Path,
                                                                          tmp_path: Path) -> None:
    import keyring
    a, b = _two_projects_sharing_openai(cordon_proc, tmp_path)
    p = cordon_proc("route", "remove", "openai", "--delete-secret", input="", cwd=b)
    assert p.returncode == 0, p.stderr
    assert (f"cordon: warning: keyring cordon/openai is also used by route 'openai' in {a / 'cordon.toml'}"
            in p.stderr)
    assert "hint: pass --force to delete it anyway" in p.stderr
    assert keyring.get_password("cordon", "openai") == "sk-shared-value-1234"
    assert cordon_proc("secret", "check", cwd=a).returncode == 0       # project a still works
    # put it back in b, then --force deletes it (after the same warning)
    assert cordon_proc("route", "add", "--preset", "openai", cwd=b).returncode == 0
    p = cordon_proc("route", "remove", "openai", "--delete-secret", "--force", input="", cwd=b)
    assert p.returncode == 0 and "is also used by route 'openai'" in p.stderr
    assert keyring.get_password("cordon", "openai") is None


@pytest.mark.parametrize(("answer", "kept"), [("n", True), ("y", False)])
def test_removing_a_shared_keyring_entry_asks_on_a_terminal(cordon_proc: Any, home: Path, tmp_path: Path,
                                                            answer: str, kept: bool) -> None:
    import keyring
    a, b = _two_projects_sharing_openai(cordon_proc, tmp_path)
    c = spawn(b, "route", "remove", "openai", "--delete-secret")
    c.expect(f"is also used by route 'openai' in {a / 'cordon.toml'}")
    c.expect(r"Delete it anyway\? \[y/N\] ")
    c.sendline(answer)
    status, _ = finish(c)
    assert status == 0
    assert (keyring.get_password("cordon", "openai") is not None) == kept


def test_an_entry_no_other_config_uses_is_deleted_without_a_question(cordon_proc: Any, home: Path,
                                                                     project: Path) -> None:
    import keyring
    assert cordon_proc("route", "add", "--preset", "openai", cwd=project).returncode == 0
    assert cordon_proc("secret", "set", "openai", input="sk-only-here-1234\n", cwd=project).returncode == 0
    p = cordon_proc("route", "remove", "openai", "--delete-secret", input="", cwd=project)
    assert p.returncode == 0 and "warning" not in p.stderr
    assert keyring.get_password("cordon", "openai") is None
