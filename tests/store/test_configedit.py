"""Edits of cordon.toml keep comments, order and unrelated content byte for byte."""

from __future__ import annotations

import dataclasses
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cordon.core.errors import ConfigError
from cordon.core.model import Auth, Route, SecretSpec, UpstreamSpec
from cordon.core.routes import PRESETS
from cordon.store.config import load_config
from cordon.store.configedit import NEW_FILE_HEADER, add_route, remove_route, route_table, update_route
from tests.conftest import REPO

BEFORE = """\
# Team proxy config -- keep this comment
listen = 6790  # port

[policy]   # what happens to other hosts
unmatched = "tunnel"

# --- OpenAI (Codex) ---
[[routes]]
name = "openai"    # used in logs
[routes.match]
host = "api.openai.com"
[routes.auth]
type = "header"
header_name = "Authorization"
scheme = "Bearer"
placeholder_env = ["OPENAI_API_KEY", "CODEX_API_KEY"]
[routes.auth.secret]
source = "keyring"
account = "openai"

"""
EDITED = """\
# --- Stripe: the one we edit ---
[[routes]]
name = "stripe"
[routes.match]
host = "api.stripe.com"   # exact host
[routes.auth]
type = "header"
header_name = "Authorization"
scheme = "Bearer"  # Stripe wants Bearer
[routes.auth.secret]
source = "keyring"
account = "stripe"
service = "cordon"       # explicit default, kept

"""
AFTER = """\
# --- GitHub, written by hand with dotted keys ---
[[routes]]
name = "github"
match.host = "api.github.com"
auth = { type = "header", header_name = "Authorization", scheme = "Bearer", secret = { source = "env", var = "GH_REAL" } }

# trailing comment at the end of the file
"""  # noqa: E501


@pytest.fixture
def cfg_file(tmp_path: Path) -> Path:
    p = tmp_path / "cordon.toml"
    p.write_text(BEFORE + EDITED + AFTER)
    return p


def route_named(path: Path, name: str) -> Route:
    r = load_config(path).route(name)
    assert r is not None
    return r


def test_three_edits_change_only_the_edited_route(cfg_file: Path) -> None:
    r = route_named(cfg_file, "stripe")
    r = dataclasses.replace(r, auth=dataclasses.replace(r.auth, secret=SecretSpec(source="keyring", account="s2")))
    update_route(cfg_file, "stripe", r)
    r = dataclasses.replace(route_named(cfg_file, "stripe"), paths=("/v1/",))
    update_route(cfg_file, "stripe", r)
    r = route_named(cfg_file, "stripe")
    r = dataclasses.replace(r, auth=dataclasses.replace(r.auth, header_name="Stripe-Key", scheme=None,
                                                        placeholder_env=("STRIPE_API_KEY",)))
    update_route(cfg_file, "stripe", r)

    text = cfg_file.read_text()
    assert text.startswith(BEFORE) and text.endswith(AFTER)
    middle = text[len(BEFORE):len(text) - len(AFTER)]
    assert middle != EDITED
    # inside the route: the untouched lines and their comments survive too
    for kept in ("# --- Stripe: the one we edit ---", 'host = "api.stripe.com"   # exact host',
                 'service = "cordon"       # explicit default, kept', 'account = "s2"'):
        assert kept in middle
    assert "scheme" not in middle
    final = route_named(cfg_file, "stripe")
    assert final.paths == ("/v1/",) and final.auth.header_name == "Stripe-Key"
    assert final.auth.secret == SecretSpec(source="keyring", account="s2")
    # the other routes still load the same
    assert route_named(cfg_file, "github").auth.secret == SecretSpec(source="env", var="GH_REAL")


def test_editing_an_inline_route(cfg_file: Path) -> None:
    r = dataclasses.replace(route_named(cfg_file, "github"), paths=("/repos/",))
    update_route(cfg_file, "github", r)
    text = cfg_file.read_text()
    assert text.startswith(BEFORE + EDITED)
    assert route_named(cfg_file, "github").paths == ("/repos/",)
    assert "# trailing comment at the end of the file" in text


def test_an_unchanged_route_is_a_no_op(cfg_file: Path) -> None:
    before = cfg_file.read_text()
    for name in ("openai", "stripe", "github"):
        update_route(cfg_file, name, route_named(cfg_file, name))
    assert cfg_file.read_text() == before


def test_relative_paths_are_kept_when_they_mean_the_same(tmp_path: Path) -> None:
    p = tmp_path / "cordon.toml"
    p.write_text('[[routes]]\nname = "f"\nmatch.host = "f.example"\n'
                 'auth = { type = "header", header_name = "x-key", secret = { source = "file", path = "key.txt" } }\n')
    r = route_named(p, "f")
    assert r.auth.secret.path == tmp_path / "key.txt"
    update_route(p, "f", dataclasses.replace(r, auth=dataclasses.replace(r.auth, header_name="x-other")))
    assert 'path = "key.txt"' in p.read_text()


def test_rename_and_change_source(cfg_file: Path) -> None:
    r = route_named(cfg_file, "stripe")
    r = dataclasses.replace(r, name="payments", auth=dataclasses.replace(
        r.auth, secret=SecretSpec(source="1password", vault="Eng", item="Stripe", field="key")))
    update_route(cfg_file, "stripe", r)
    text = cfg_file.read_text()
    assert text.startswith(BEFORE) and text.endswith(AFTER)
    assert route_named(cfg_file, "payments").auth.secret.vault == "Eng"
    assert load_config(cfg_file).route("stripe") is None
    assert "service" not in text[len(BEFORE):-len(AFTER)]


def test_add_appends_after_the_last_route(cfg_file: Path) -> None:
    before = cfg_file.read_text()
    created = add_route(cfg_file, PRESETS["groq"].route(SecretSpec(source="keyring", account="groq")))
    assert not created
    text = cfg_file.read_text()
    assert text.startswith(before.rstrip("\n").rsplit("\n# trailing comment", 1)[0])
    assert [r.name for r in load_config(cfg_file).routes] == ["openai", "stripe", "github", "groq"]
    assert "# trailing comment at the end of the file" in text and "# Team proxy config" in text


def test_add_creates_a_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "sub" / "cordon.toml"
    assert add_route(p, PRESETS["openai"].route(SecretSpec(source="keyring", account="openai")))
    assert p.read_text().startswith(NEW_FILE_HEADER)
    assert load_config(p).routes[0].auth.placeholder_env == ("OPENAI_API_KEY", "CODEX_API_KEY")


def test_remove_keeps_the_rest(cfg_file: Path) -> None:
    old = remove_route(cfg_file, "stripe")
    assert old.host == "api.stripe.com"
    text = cfg_file.read_text()
    assert text.startswith(BEFORE) and text.endswith(AFTER)
    assert "stripe" not in text.lower().replace("# --- stripe: the one we edit ---", "")
    remove_route(cfg_file, "openai")
    remove_route(cfg_file, "github")
    cfg = load_config(cfg_file)
    assert cfg.routes == () and cfg.policy.unmatched == "tunnel"
    assert cfg_file.read_text().startswith("# Team proxy config -- keep this comment\nlisten = 6790  # port\n")


def test_unknown_name(cfg_file: Path) -> None:
    with pytest.raises(ConfigError, match="no route named 'nope'"):
        remove_route(cfg_file, "nope")
    with pytest.raises(ConfigError, match="no route named 'nope'"):
        update_route(cfg_file, "nope", route_named(cfg_file, "openai"))


def test_conflicts_leave_the_file_untouched(cfg_file: Path) -> None:
    before = cfg_file.read_bytes()
    with pytest.raises(ConfigError, match="already exists") as e:
        add_route(cfg_file, PRESETS["openai"].route(SecretSpec(source="keyring", account="x")))
    assert "cordon route edit openai" in (e.value.hint or "")
    with pytest.raises(ConfigError, match="already has route 'openai'"):
        add_route(cfg_file, PRESETS["openai"].route(SecretSpec(source="keyring", account="x"), name="o2"))
    with pytest.raises(ConfigError, match="already has route 'github'"):
        update_route(cfg_file, "stripe", dataclasses.replace(route_named(cfg_file, "stripe"), host="api.github.com"))
    bad = dataclasses.replace(route_named(cfg_file, "stripe"))
    bad = dataclasses.replace(bad, auth=dataclasses.replace(bad.auth, header_name="Content-Length", scheme=None))
    with pytest.raises(ConfigError, match="reserved"):
        update_route(cfg_file, "stripe", bad)
    assert cfg_file.read_bytes() == before


def test_an_invalid_file_is_not_edited(tmp_path: Path) -> None:
    p = tmp_path / "cordon.toml"
    p.write_text("listen = 1\nbogus = 2\n")
    with pytest.raises(ConfigError) as e:
        add_route(p, PRESETS["openai"].route(SecretSpec(source="keyring", account="o")))
    assert e.value.message.startswith(f"{p}:2: unknown key 'bogus'")
    assert p.read_text() == "listen = 1\nbogus = 2\n"


@pytest.mark.parametrize("spec", [
    SecretSpec(source="keyring", account="a", service="gh:github.com", decode="go-keyring"),
    SecretSpec(source="1password", vault="V", item="I", field="F", account="team", timeout=12),
    SecretSpec(source="env", var="REAL_KEY"),
    SecretSpec(source="file", path=Path("/run/secrets/key")),
    SecretSpec(source="command", command=("pass", "show", "x y"), ttl=300, timeout=2.5),
])
def test_round_trip_every_source(tmp_path: Path, spec: SecretSpec) -> None:
    p = tmp_path / "cordon.toml"
    r = Route(name="r", host="r.example", paths=("/v1/", "/v2/"),
              auth=Auth(type="header", header_name="x-api-key", secret=spec, placeholder_env=("R_KEY",),
                        placeholder="ph"),
              upstream=UpstreamSpec(address="127.0.0.1:8443", ca_file=Path("/etc/ca.pem"), scheme="https"))
    add_route(p, r)
    assert load_config(p).routes == (r,)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_round_trip_presets(tmp_path: Path, name: str) -> None:
    p = tmp_path / "cordon.toml"
    r = PRESETS[name].route(SecretSpec(source="keyring", account=name))
    add_route(p, r)
    assert load_config(p).routes == (r,)


def test_basic_round_trip(tmp_path: Path) -> None:
    p = tmp_path / "cordon.toml"
    r = Route(name="b", host="b.example", auth=Auth(type="basic", username="me", secret=SecretSpec(
        source="env", var="B")), upstream=UpstreamSpec(scheme="http"))
    add_route(p, r)
    assert load_config(p).routes == (r,)
    assert route_table(r)["auth"] == {"type": "basic", "username": "me", "secret": {"source": "env", "var": "B"}}


def test_mode_is_kept_and_no_temp_files(tmp_path: Path) -> None:
    p = tmp_path / "cordon.toml"
    p.write_text("")
    p.chmod(0o600)
    add_route(p, PRESETS["openai"].route(SecretSpec(source="keyring", account="o")))
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert [x.name for x in tmp_path.iterdir()] == ["cordon.toml"]


def test_concurrent_adds_lose_nothing(tmp_path: Path) -> None:
    p = tmp_path / "cordon.toml"
    code = ("import sys; from pathlib import Path; from cordon.store.configedit import add_route; "
            "from cordon.core.routes import PRESETS; from cordon.core.model import SecretSpec; "
            "n = sys.argv[2]; add_route(Path(sys.argv[1]), PRESETS[n].route(SecretSpec(source='keyring', account=n)))")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    names = sorted(PRESETS)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(p), n], env=env) for n in names]
    assert [pr.wait(60) for pr in procs] == [0] * len(names)
    assert sorted(r.name for r in load_config(p).routes) == names


def test_a_route_added_after_an_edit_that_added_a_table_starts_after_a_blank_line(tmp_path: Path) -> None:
    p = tmp_path / "cordon.toml"
    add_route(p, PRESETS["openai"].route(SecretSpec(source="keyring", account="openai")))
    edited = dataclasses.replace(route_named(p, "openai"), upstream=UpstreamSpec(address="127.0.0.1:9"))
    update_route(p, "openai", edited)
    add_route(p, PRESETS["groq"].route(SecretSpec(source="keyring", account="groq")))
    text = p.read_text()
    assert 'address = "127.0.0.1:9"\n\n[[routes]]\nname = "groq"' in text


@pytest.mark.parametrize("ending", ["\n", ""])
def test_add_then_remove_keeps_the_comment_that_ended_the_file(tmp_path: Path, ending: str) -> None:
    """A comment that ends the file belongs to what is above it: the added route starts after a
    blank line, so removing it again leaves that comment in place."""
    p = tmp_path / "cordon.toml"
    p.write_text(BEFORE.rstrip("\n") + "\n# rotate this key monthly" + ending)
    add_route(p, PRESETS["groq"].route(SecretSpec(source="keyring", account="groq")))
    assert "# rotate this key monthly\n\n[[routes]]" in p.read_text()
    remove_route(p, "groq")
    assert p.read_text().startswith(BEFORE.rstrip("\n") + "\n# rotate this key monthly\n")
    assert [r.name for r in load_config(p).routes] == ["openai"]
