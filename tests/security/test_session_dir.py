"""The session directory's parent may be a shared 1777 temp directory (no XDG_RUNTIME_DIR).
Another user (a second uid, here a real one: the test runs commands as it) can plant
`cordon-<uid>` there first. cordon never follows a planted link, never chmods or accepts
a directory that is not its own, and removes a dead session's directory through a
descriptor, so a link planted later cannot point the removal at someone's files."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cordon.core.errors import CordonError
from cordon.store.paths import Paths
from cordon.store.session import create_session, repair_stale

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as a second user")


def other_uid() -> int:
    """A uid that is not ours and has no account: a stranger on this machine."""
    uid = 61000 + os.getpid() % 1000
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
        uid += 1


def as_other(uid: int, *argv: str) -> None:
    subprocess.run(list(argv), user=uid, group=uid, check=True, capture_output=True)


@pytest.fixture
def shared(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A world-writable sticky temp directory that the stranger can reach (unlike pytest's tmp_path)."""
    d = Path(tempfile.mkdtemp(prefix="cordon-shared-", dir="/tmp"))
    os.chmod(d, 0o1777)
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def paths(home: Path, tmp_path: Path) -> Paths:
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    p = Paths.from_env(env, tmp_path)
    assert p.runtime_dir is None
    return p


@pytest.fixture
def mine(tmp_path: Path) -> Path:
    """A directory of the victim's that a planted link points at."""
    d = tmp_path / "mine"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    (d / "notes.txt").write_text("mine")
    return d


def test_a_planted_symlink_is_neither_followed_nor_chmodded(paths: Paths, shared: Path, mine: Path) -> None:
    root = paths.session_root
    assert root.parent == shared
    as_other(other_uid(), "ln", "-s", str(mine), str(root))
    with pytest.raises(CordonError) as e:
        create_session(paths, ca_pem=b"CA", bundle_pem=b"BUNDLE")
    assert "symlink" in e.value.message and e.value.hint
    assert stat.S_IMODE(mine.stat().st_mode) == 0o755, "the victim's own directory was chmodded through the link"
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_a_directory_planted_by_another_user_is_refused_untouched(paths: Paths, shared: Path) -> None:
    root = paths.session_root
    as_other(other_uid(), "mkdir", "-m", "777", str(root))
    with pytest.raises(CordonError) as e:
        create_session(paths, ca_pem=b"CA", bundle_pem=b"BUNDLE")
    assert "another user" in e.value.message
    assert stat.S_IMODE(root.stat().st_mode) == 0o777 and list(root.iterdir()) == []


def test_a_dead_sessions_directory_is_not_removed_through_a_link_planted_later(paths: Paths, shared: Path,
                                                                               mine: Path) -> None:
    s = create_session(paths, ca_pem=b"CA", bundle_pem=b"BUNDLE")
    assert s._lock_fd is not None
    os.close(s._lock_fd)           # the session dies without teardown (SIGKILL): its record stays
    s._lock_fd = None
    shutil.rmtree(paths.session_root)   # its directory is gone (a reboot cleaned /tmp) ...
    (mine / s.id).mkdir()
    (mine / s.id / "keep.txt").write_text("the victim's")
    as_other(other_uid(), "ln", "-s", str(mine), str(paths.session_root))   # ... and a stranger plants a link
    assert repair_stale(paths) == [s.id]
    assert (mine / s.id / "keep.txt").read_text() == "the victim's"


def test_our_own_directory_is_tightened_on_the_directory_itself(paths: Paths, shared: Path) -> None:
    root = paths.session_root
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    s = create_session(paths, ca_pem=b"CA", bundle_pem=b"BUNDLE")
    try:
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
        assert stat.S_IMODE(s.dir.stat().st_mode) == 0o700
    finally:
        s.close()
    assert not s.dir.exists()
