"""`cordon token list|rotate|revoke` end to end (in-process and a real subprocess)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from cordon.store.paths import Paths
from cordon.store.tokens import TokenStore
from tests.conftest import write


def state_store(project: Path) -> TokenStore:
    return TokenStore.for_state_dir(Paths.from_env(cwd=project).state_dir("project", project))


def test_list_empty_then_after_rotate(cordon, project: Path) -> None:  # type: ignore[no-untyped-def]
    r = cordon("token", "list")
    assert r.status == 0 and r.stdout == "" and "no tokens yet" in r.stderr
    r = cordon("token", "rotate")
    assert r.status == 0, r.stderr
    assert "rotated token 'default'" in r.stderr
    store = state_store(project)
    tok = store.load()["default"]
    assert tok not in r.stdout + r.stderr
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    r = cordon("token", "list")
    assert r.status == 0
    assert r.stdout.splitlines()[0].split() == ["NAME", "CREATED"]
    assert r.stdout.splitlines()[1].startswith("default ")
    assert tok not in r.stdout + r.stderr


def test_list_never_prints_values(cordon, project: Path) -> None:  # type: ignore[no-untyped-def]
    store = state_store(project)
    toks = [store.ensure(), store.ensure("codex"), store.ensure("claude-code")]
    for args in (("token", "list"), ("token", "list", "--json")):
        r = cordon(*args)
        assert r.status == 0
        for t in toks:
            assert t not in r.stdout + r.stderr
    data = json.loads(cordon("token", "list", "--json").stdout)
    assert [t["name"] for t in data["tokens"]] == ["default", "claude-code", "codex"]
    assert all(t["created"] for t in data["tokens"])


def test_rotate_named_and_all(cordon, project: Path) -> None:  # type: ignore[no-untyped-def]
    store = state_store(project)
    d, c = store.ensure(), store.ensure("codex")
    r = cordon("token", "rotate", "codex")
    assert r.status == 0, r.stderr
    after = store.load()
    assert after["default"] == d and after["codex"] != c
    r = cordon("token", "rotate", "--all")
    assert r.status == 0
    final = store.load()
    assert final["default"] != d and final["codex"] != after["codex"]
    r = cordon("token", "rotate", "codex", "--all")
    assert r.status == 2 and "not both" in r.stderr


def test_rotate_unknown_and_revoke(cordon, project: Path) -> None:  # type: ignore[no-untyped-def]
    store = state_store(project)
    store.ensure()
    r = cordon("token", "rotate", "nope")
    assert r.status == 1
    assert "cordon: error: there is no token named 'nope'" in r.stderr and "hint: known tokens: default" in r.stderr
    store.ensure("codex")
    r = cordon("token", "revoke", "codex")
    assert r.status == 0 and "revoked token 'codex'" in r.stderr
    assert set(store.load()) == {"default"}
    r = cordon("token", "revoke", "default")
    assert r.status == 1 and "cannot be revoked" in r.stderr
    r = cordon("token", "revoke", "Bad Name")
    assert r.status == 2


def test_scopes_have_separate_files(cordon, project: Path, home: Path) -> None:  # type: ignore[no-untyped-def]
    assert cordon("token", "rotate", "--scope", "user").status == 0
    user_store = TokenStore.for_state_dir(Paths.from_env().state_dir("user"))
    assert set(user_store.load()) == {"default"}
    assert not state_store(project).exists()
    cfg = write(project / "sub" / "cordon.toml", "listen = 7000\n")
    assert cordon("token", "rotate", "--config", str(cfg)).status == 0
    other = TokenStore.for_state_dir(Paths.from_env().state_dir("project", cfg.parent))
    assert other.exists() and other.load()["default"] != user_store.load()["default"]
    r = cordon("token", "list", "--scope", "user", "--config", str(cfg))
    assert r.status == 2


def test_subprocess_list_and_help(cordon_proc, project: Path) -> None:  # type: ignore[no-untyped-def]
    p = cordon_proc("token", "rotate", cwd=project)
    assert p.returncode == 0, p.stderr
    p = cordon_proc("token", "list", cwd=project)
    assert p.returncode == 0 and "default" in p.stdout
    assert state_store(project).load()["default"] not in p.stdout
    p = cordon_proc("token", "--help", cwd=project)
    assert p.returncode == 0 and "rotate" in p.stdout
