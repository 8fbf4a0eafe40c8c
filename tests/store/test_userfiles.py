"""cordon.store.userfiles: the one record of the user files cordon changes (setup and sessions)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cordon.store import userfiles
from cordon.store.edits import DotenvBlock
from cordon.store.paths import Paths
from cordon.store.session import create_session, repair_stale
from cordon.store.userfiles import DesiredFile, Record, apply_target, dotenv_acquire, undo_file


@pytest.fixture
def paths(home: Path, tmp_path: Path) -> Paths:
    return Paths.from_env(dict(os.environ), tmp_path)


def test_a_setup_killed_between_its_record_and_a_rewrite_is_still_restored_byte_for_byte(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The record names both what cordon writes and what that write replaces, so a kill in
    between leaves a file cordon still recognises as its own (not 'edited by someone')."""
    env = tmp_path / ".codex" / ".env"
    env.parent.mkdir()
    original = b"MINE=1\r\n# keep this"          # no final newline: only a byte-exact restore gives it back
    env.write_bytes(original)
    record = Record("codex", "project")
    saved: list[str] = []

    def persist() -> None:
        saved.append(json.dumps(record.to_json()))

    apply_target(DesiredFile(env, DotenvBlock(), {("HTTPS_PROXY",): "http://a"}), record, persist)
    first = env.read_bytes()

    def killed(*a: object, **k: object) -> None:
        raise KeyboardInterrupt   # stands in for the SIGKILL after the record was saved
    monkeypatch.setattr(userfiles, "atomic_write", killed)
    with pytest.raises(KeyboardInterrupt):
        apply_target(DesiredFile(env, DotenvBlock(), {("HTTPS_PROXY",): "http://b"}), record, persist)
    monkeypatch.undo()
    assert env.read_bytes() == first
    after_kill = Record.from_json(json.loads(saved[-1]))
    change = undo_file(after_kill.files[env], DotenvBlock())
    assert change.action == "restored" and env.read_bytes() == original


def test_a_session_lease_of_an_earlier_version_is_repaired(paths: Paths, tmp_path: Path) -> None:
    """Leases written before the record was shared (keys written/swapped/created_dir) still
    restore the file after an upgrade."""
    import base64
    import hashlib

    env = tmp_path / "proj" / ".codex" / ".env"
    env.parent.mkdir(parents=True)
    env.write_bytes(b"MINE=1\n")
    s = create_session(paths, ca_pem=b"ca", bundle_pem=b"bundle")
    s.update(files=(str(env),))
    dotenv_acquire(paths, s.id, env, {"HTTPS_PROXY": "http://x"})
    lease = next(paths.sessions_dir.glob("file-*.json"))
    current = env.read_bytes()
    lease.write_text(json.dumps({
        "kind": "dotenv", "path": str(env), "mode": 0o644,
        "original": base64.b64encode(b"MINE=1\n").decode(), "created_dir": False,
        "holders": [{"id": s.id, "vars": {"HTTPS_PROXY": "http://x"}}],
        "written": hashlib.sha256(current).hexdigest()}))
    assert s._lock_fd is not None
    os.close(s._lock_fd)                      # the session dies (its lock is released)
    s._lock_fd = None
    assert repair_stale(paths) == [s.id]
    assert env.read_bytes() == b"MINE=1\n"
    assert not list(paths.sessions_dir.glob("file-*.json"))
