"""Session directories, records, the shared .env block and repair after SIGKILL."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cordon.store.dotenvfile import read_block
from cordon.store.paths import Paths
from cordon.store.session import (
    create_session,
    is_alive,
    live_session,
    load_record,
    repair_stale,
)
from cordon.store.userfiles import dotenv_acquire, release
from tests.conftest import REPO


@pytest.fixture
def paths(home: Path, tmp_path: Path) -> Paths:
    return Paths.from_env(dict(os.environ), tmp_path)


def test_session_dir_is_private_and_removed(paths: Paths) -> None:
    s = create_session(paths, ca_pem=b"CA", bundle_pem=b"ROOTS+CA", route_hosts=["api.openai.com"])
    assert s.dir.parent == paths.session_root
    assert stat.S_IMODE(s.dir.stat().st_mode) == 0o700
    assert s.ca_path.read_bytes() == b"CA" and s.bundle_path.read_bytes() == b"ROOTS+CA"
    assert stat.S_IMODE(s.ca_path.stat().st_mode) == 0o600
    assert is_alive(paths, s.id)
    s.update(port=4242)
    rec = live_session(paths, s.id)
    assert rec is not None and rec.port == 4242 and rec.route_hosts == ("api.openai.com",)
    assert stat.S_IMODE(paths.sessions_dir.stat().st_mode) == 0o700
    assert repair_stale(paths) == []          # a live session is never "repaired"
    s.close()
    assert not s.dir.exists()
    assert load_record(paths, s.id) is None and not is_alive(paths, s.id)
    assert sorted(os.listdir(paths.sessions_dir)) == []


def test_live_session_rejects_odd_ids(paths: Paths) -> None:
    assert live_session(paths, "../etc") is None
    assert live_session(paths, "") is None


def _vars(port: int) -> dict[str, str]:
    return {"HTTPS_PROXY": f"http://cordon:t@127.0.0.1:{port}"}


@pytest.mark.parametrize("existed", [True, False])
def test_two_holders_then_exact_restore(paths: Paths, tmp_path: Path, existed: bool) -> None:
    env = tmp_path / "proj" / ".codex" / ".env"
    original = b"# user\r\nFOO=bar\nBIN=\xff\xfe\n"   # CRLF and non-UTF-8 bytes survive
    if existed:
        env.parent.mkdir(parents=True)
        env.write_bytes(original)
        env.chmod(0o640)
    a = create_session(paths, ca_pem=b"a", bundle_pem=b"a")
    b = create_session(paths, ca_pem=b"b", bundle_pem=b"b")
    dotenv_acquire(paths, a.id, env, _vars(1))
    assert read_block(env.read_text(errors="replace")) == _vars(1)
    dotenv_acquire(paths, b.id, env, _vars(2))
    text = env.read_bytes()
    assert read_block(text.decode(errors="replace")) == _vars(2)
    assert text.count(b"# >>> cordon") == 1
    if existed:
        assert text.startswith(original)
    release(paths, b.id, env)          # the newest leaves first: back to a's block
    assert read_block(env.read_text(errors="replace")) == _vars(1)
    release(paths, a.id, env)
    if existed:
        assert env.read_bytes() == original
        assert stat.S_IMODE(env.stat().st_mode) == 0o640
    else:
        assert not env.exists() and not env.parent.exists()
    a.close()
    b.close()
    assert not [p for p in os.listdir(paths.sessions_dir) if p.endswith(".json")]


def test_user_edit_during_session_is_kept(paths: Paths, tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("A=1\n")
    s = create_session(paths, ca_pem=b"", bundle_pem=b"")
    dotenv_acquire(paths, s.id, env, _vars(1))
    env.write_text(env.read_text() + "B=2\n")
    release(paths, s.id, env)
    assert env.read_text() == "A=1\nB=2\n"
    s.close()


def test_sigkilled_session_is_repaired_by_the_next_one(paths: Paths, tmp_path: Path, home: Path) -> None:
    env = tmp_path / "proj" / ".codex" / ".env"
    env.parent.mkdir(parents=True)
    env.write_bytes(b"MINE=1\n")
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from cordon.store.paths import Paths
        from cordon.store.session import create_session
        from cordon.store.userfiles import dotenv_acquire
        paths = Paths.from_env(dict(os.environ), Path({str(tmp_path)!r}))
        s = create_session(paths, ca_pem=b"ca", bundle_pem=b"bundle")
        env = Path({str(env)!r})
        s.update(files=(str(env),))
        dotenv_acquire(paths, s.id, env, {{"HTTPS_PROXY": "http://x"}})
        print(s.id, s.dir, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert p.returncode == -signal.SIGKILL, p.stderr
    sid, sdir = p.stdout.split()
    assert Path(sdir).is_dir() and b"cordon" in env.read_bytes()
    assert not is_alive(paths, sid)
    assert repair_stale(paths) == [sid]
    assert env.read_bytes() == b"MINE=1\n"
    assert not Path(sdir).exists()
    assert load_record(paths, sid) is None
    assert repair_stale(paths) == []


def test_stale_state_is_undone_before_a_new_holder(paths: Paths, tmp_path: Path) -> None:
    # the crashed session's record is gone but its .env state is not: the next holder
    # must save the true original, not the crashed session's block
    env = tmp_path / ".env"
    env.write_text("A=1\n")
    dead = create_session(paths, ca_pem=b"", bundle_pem=b"")
    dotenv_acquire(paths, dead.id, env, _vars(9))
    dead.close()                               # as if killed after its record was removed
    s = create_session(paths, ca_pem=b"", bundle_pem=b"")
    dotenv_acquire(paths, s.id, env, _vars(1))
    release(paths, s.id, env)
    assert env.read_text() == "A=1\n"
    s.close()


def test_symlinked_env_file_stays_a_symlink(paths: Paths, tmp_path: Path) -> None:
    target = tmp_path / "dotfiles" / "codex.env"
    target.parent.mkdir()
    target.write_bytes(b"MINE=1\n")
    link = tmp_path / "proj" / ".codex" / ".env"
    link.parent.mkdir(parents=True)
    link.symlink_to(target)
    s = create_session(paths, ca_pem=b"", bundle_pem=b"")
    dotenv_acquire(paths, s.id, link, _vars(1))
    assert link.is_symlink() and read_block(target.read_text()) == _vars(1)
    release(paths, s.id, link)
    assert link.is_symlink() and target.read_bytes() == b"MINE=1\n"
    s.close()


def test_an_edit_between_two_holders_is_kept(paths: Paths, tmp_path: Path) -> None:
    # once someone else has edited the file, a later holder's write must not make it look
    # like cordon's alone: the last one out would restore the original over that edit
    env = tmp_path / ".env"
    env.write_text("A=1\n")
    a = create_session(paths, ca_pem=b"", bundle_pem=b"")
    b = create_session(paths, ca_pem=b"", bundle_pem=b"")
    dotenv_acquire(paths, a.id, env, _vars(1))
    env.write_text("B=2\n" + env.read_text())
    dotenv_acquire(paths, b.id, env, _vars(2))
    release(paths, a.id, env)
    release(paths, b.id, env)
    assert env.read_text() == "B=2\nA=1\n"
    a.close()
    b.close()
