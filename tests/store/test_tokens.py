"""tokens.toml: creation mode, rotation, revocation, header checks, live reload."""

from __future__ import annotations

import base64
import os
import stat
import tomllib
from pathlib import Path

import pytest

from cordon.core.errors import ConfigError, CordonError, UsageError
from cordon.store.tokens import (
    DEFAULT_TOKEN,
    TokenStore,
    TokenWatcher,
    check,
    check_token,
    new_token,
    token_from_header,
)


def basic(user: str, token: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()


@pytest.fixture
def store(tmp_path: Path) -> TokenStore:
    return TokenStore(tmp_path / "state" / "tokens.toml")


def test_new_token_is_256_bit_urlsafe() -> None:
    t = new_token()
    raw = base64.urlsafe_b64decode(t + "=")
    assert len(raw) == 32
    assert set(t) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert new_token() != t


def test_ensure_creates_private_file_and_dir(store: TokenStore) -> None:
    old = os.umask(0o022)   # a permissive umask must not widen the file
    try:
        tok = store.ensure()
    finally:
        os.umask(old)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert store.ensure() == tok                       # stable once created
    data = tomllib.loads(store.path.read_text())
    assert data["version"] == 1
    assert data["tokens"][DEFAULT_TOKEN]["token"] == tok
    assert data["tokens"][DEFAULT_TOKEN]["created"].tzinfo is not None


def test_client_tokens_are_distinct_and_listed_without_values(store: TokenStore) -> None:
    d = store.ensure()
    c = store.ensure("codex")
    cc = store.ensure("claude-code")
    assert len({d, c, cc}) == 3
    infos = store.list()
    assert [i.name for i in infos] == ["default", "claude-code", "codex"]
    assert all(i.created is not None for i in infos)
    assert all(d not in repr(i) and c not in repr(i) for i in infos)
    assert store.load() == {"default": d, "codex": c, "claude-code": cc}


def test_rotate_replaces_only_that_token(store: TokenStore) -> None:
    d = store.ensure()
    c = store.ensure("codex")
    new = store.rotate("codex")
    assert new != c
    assert store.load() == {"default": d, "codex": new}
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_rotate_with_chosen_value_and_default_created(store: TokenStore) -> None:
    chosen = new_token()
    assert store.rotate(DEFAULT_TOKEN, chosen) == chosen
    assert store.load() == {"default": chosen}


def test_rotate_unknown_client_fails_naming_known(store: TokenStore) -> None:
    store.ensure()
    with pytest.raises(CordonError) as e:
        store.rotate("codex")
    assert "codex" in e.value.message and "default" in (e.value.hint or "")


def test_revoke(store: TokenStore) -> None:
    store.ensure()
    store.ensure("codex")
    store.revoke("codex")
    assert set(store.load()) == {"default"}
    with pytest.raises(CordonError):
        store.revoke("codex")
    with pytest.raises(CordonError) as e:
        store.revoke("default")
    assert "rotate" in (e.value.hint or "")


def test_bad_names_rejected(store: TokenStore) -> None:
    for bad in ("", "Has Space", "../x", "a" * 80, "x=y"):
        with pytest.raises(UsageError):
            store.ensure(bad)
    assert not store.path.exists()


def test_broken_file_is_a_config_error_without_content(store: TokenStore) -> None:
    store.path.parent.mkdir(parents=True)
    store.path.write_text('[tokens.default]\ncreated = 1979-05-27T07:32:00Z\nsecretish = "hunter2"\n')
    with pytest.raises(ConfigError) as e:
        store.load()
    assert "default" in e.value.message and "hunter2" not in e.value.message
    store.path.write_text("this is not toml = = =")
    with pytest.raises(ConfigError):
        store.load()


def test_token_from_header_forms() -> None:
    t = new_token()
    assert token_from_header(basic("cordon", t)) == t
    assert token_from_header(basic("codex", t).encode()) == t
    assert token_from_header("basic " + basic("x", t).split(" ", 1)[1]) == t
    assert token_from_header(f"Bearer {t}") == t
    assert token_from_header(None) is None
    assert token_from_header("") is None
    assert token_from_header("Basic") is None
    assert token_from_header("Basic !!!notbase64") is None
    assert token_from_header("Basic " + base64.b64encode(b"no-colon").decode()) is None
    assert token_from_header("Basic " + base64.b64encode(b"user:").decode()) is None
    assert token_from_header(f"Digest {t}") is None


def test_check_returns_client_name() -> None:
    toks = {"default": new_token(), "codex": new_token()}
    assert check(toks, basic("cordon", toks["default"])) == "default"
    assert check(toks, basic("cordon", toks["codex"])) == "codex"
    assert check(toks, basic("cordon", new_token())) is None
    assert check(toks, basic("cordon", toks["codex"][:-1])) is None
    assert check(toks, basic("cordon", toks["codex"] + "x")) is None
    assert check(toks, None) is None
    assert check({}, basic("cordon", toks["codex"])) is None
    assert check_token(toks, "") is None
    assert check_token(toks, "\udcff") is None          # undecodable input cannot crash it


def test_watcher_sees_rotation_and_revocation(store: TokenStore) -> None:
    d = store.ensure()
    w = TokenWatcher(store.path)
    assert w.check(basic("cordon", d)) == "default"
    c = store.ensure("codex")
    assert w.check(basic("cordon", c)) == "codex"
    new = store.rotate("codex")
    assert w.check(basic("cordon", c)) is None
    assert w.check(basic("cordon", new)) == "codex"
    store.revoke("codex")
    assert w.check(basic("cordon", new)) is None
    assert set(w.values()) == {d}


def test_watcher_fails_closed_when_file_vanishes_or_breaks(store: TokenStore) -> None:
    d = store.ensure()
    w = TokenWatcher(store.path)
    store.path.unlink()
    assert w.check(basic("cordon", d)) == "default"      # never opens the proxy
    assert w.check(None) is None
    store.path.write_text("garbage = = =")
    assert w.check(basic("cordon", d)) == "default"


def test_watcher_without_file_accepts_nothing(tmp_path: Path) -> None:
    w = TokenWatcher(tmp_path / "tokens.toml")
    assert w.check(basic("cordon", "anything")) is None
    assert w.tokens() == {}
