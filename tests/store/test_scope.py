"""cordon.store.scope: the one resolver from --config/--scope (or discovery) to a Scope."""

from __future__ import annotations

from pathlib import Path

import pytest

from cordon.core.errors import ConfigError, UsageError
from cordon.store.paths import Paths
from cordon.store.scope import load_scope, resolve_scope


def paths_for(home: Path, cwd: Path) -> Paths:
    return Paths.from_env({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}, cwd)


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path, Path]:
    home = tmp_path / "home"
    (home / ".config" / "cordon").mkdir(parents=True)
    proj = tmp_path / "proj"
    deep = proj / "src" / "pkg"
    deep.mkdir(parents=True)
    return home.resolve(), proj.resolve(), deep.resolve()


def chosen(p: Paths, config: str | None = None, scope: str | None = None, **kw: str) -> tuple[Path | None, str]:
    s = resolve_scope(p, config, scope, **kw)  # type: ignore[arg-type]
    return s.config_path, s.name


def test_discovery_nearest_parent(tree: tuple[Path, Path, Path]) -> None:
    home, proj, deep = tree
    (proj / "cordon.toml").write_text("")
    (home / ".config" / "cordon" / "cordon.toml").write_text("")
    assert chosen(paths_for(home, deep)) == (proj / "cordon.toml", "project")
    (deep / "cordon.toml").write_text("")
    assert chosen(paths_for(home, deep)) == (deep / "cordon.toml", "project")


def test_discovery_falls_back_to_the_user_file(tree: tuple[Path, Path, Path]) -> None:
    home, _, deep = tree
    assert chosen(paths_for(home, deep)) == (None, "none")
    user = home / ".config" / "cordon" / "cordon.toml"
    user.write_text("")
    assert chosen(paths_for(home, deep)) == (user, "user")


def test_discovery_flags(tree: tuple[Path, Path, Path]) -> None:
    home, proj, deep = tree
    (proj / "cordon.toml").write_text("")
    p = paths_for(home, deep)
    assert chosen(p, "other.toml") == (deep / "other.toml", "explicit")
    assert chosen(p, "/abs/c.toml") == (Path("/abs/c.toml"), "explicit")
    assert chosen(p, None, "user") == (home / ".config" / "cordon" / "cordon.toml", "user")
    assert chosen(p, None, "project") == (proj / "cordon.toml", "project")
    (proj / "cordon.toml").unlink()
    assert chosen(p, None, "project") == (deep / "cordon.toml", "project")
    with pytest.raises(UsageError) as e:
        resolve_scope(p, "x.toml", "user")
    assert e.value.exit_status == 2


def test_default_project_ignores_the_user_file(tree: tuple[Path, Path, Path]) -> None:
    """`cordon setup` without flags sets up this project even when a user config exists."""
    home, _, deep = tree
    (home / ".config" / "cordon" / "cordon.toml").write_text("")
    p = paths_for(home, deep)
    assert chosen(p) == (home / ".config" / "cordon" / "cordon.toml", "user")
    assert chosen(p, default="project") == (deep / "cordon.toml", "project")


def test_state_dir_kind_and_project_dir(tree: tuple[Path, Path, Path]) -> None:
    home, proj, deep = tree
    (proj / "cordon.toml").write_text("")
    p = paths_for(home, deep)
    s = resolve_scope(p, None, None)
    assert (s.kind, s.project_dir, s.state_dir) == ("project", proj, p.state_dir("project", proj))
    u = resolve_scope(p, None, "user")
    assert (u.kind, u.project_dir, u.state_dir) == ("user", None, p.state_dir("user"))
    # an explicit path to the user file is the user scope, with the user's state
    e = resolve_scope(p, str(p.user_config), None)
    assert (e.name, e.kind, e.project_dir, e.state_dir) == ("explicit", "user", None, p.state_dir("user"))
    # nothing anywhere: state of this directory's project, and the file a command would create here
    (proj / "cordon.toml").unlink()
    n = resolve_scope(p, None, None)
    assert (n.config_path, n.config_file, n.state_dir) == (None, deep / "cordon.toml", p.state_dir("project", deep))


def test_config_is_parsed_once_and_load_scope_fails_without_a_file(tree: tuple[Path, Path, Path]) -> None:
    home, proj, deep = tree
    p = paths_for(home, deep)
    with pytest.raises(ConfigError) as e:
        load_scope(p, None, None)
    assert "no cordon.toml" in e.value.message and "cordon route add" in (e.value.hint or "")
    (proj / "cordon.toml").write_text("listen = 7001\n")
    s = load_scope(p, None, None)
    assert s.config.listen == 7001 and s.config is s.config
