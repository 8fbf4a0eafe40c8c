"""A full disk while cordon writes a bundle, a `.env` or a setup file: the old file stays whole,
no temporary file is left, and the command says what happened in one line (not a traceback).

Two ways to fill a disk: a real 64 KiB tmpfs (needs root and mount rights: skipped otherwise)
and a fault-injecting writer (always runs) that fails `write` half-way or `fsync` with ENOSPC.
"""

from __future__ import annotations

import errno
import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cordon.store import atomic, castore
from tests import configs
from tests.conftest import cordon_argv, subprocess_env, write

ROUTE_TOML = configs.render(configs.openai())   # CORDON_TEST_REAL_KEY
USER_ENV = b"# mine\nKEEP=1\nOTHER=two words\n"


def leftovers(d: Path) -> list[Path]:
    return [p for p in d.rglob("*") if ".cordon-tmp-" in p.name]


# -- a real full disk --------------------------------------------------------------------------------

@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({r.stderr.strip() or r.returncode})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(d: Path) -> Path:
    """Use up every free byte of the filesystem holding `d`."""
    filler = d / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (4096, 1):     # blocks, then whatever bytes are left
            try:
                while f.write(b"\0" * size):
                    pass
            except OSError as e:
                assert e.errno == errno.ENOSPC
    return filler


def test_atomic_write_on_a_full_disk_keeps_the_old_file(tiny_fs: Path) -> None:
    target = tiny_fs / "bundle.pem"
    target.write_bytes(b"old bundle\n")
    fill(tiny_fs)
    with pytest.raises(OSError) as e:
        atomic.atomic_write(target, b"x" * 200_000)
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(target)
    assert target.read_bytes() == b"old bundle\n"
    assert leftovers(tiny_fs) == []


def test_bundle_on_a_full_disk_keeps_the_old_bundle(tiny_fs: Path) -> None:
    from cordon.core import certs

    bundle = tiny_fs / "bundle.pem"
    bundle.write_bytes(b"old\n")
    fill(tiny_fs)
    ca = certs.create_ca("full disk CA")
    with pytest.raises(OSError):
        castore.write_bundle(bundle, ca.cert_pem, {})
    assert bundle.read_bytes() == b"old\n"
    assert leftovers(tiny_fs) == []


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cordon_argv(*args), cwd=cwd, capture_output=True, text=True, timeout=60,
                          env=subprocess_env({"CORDON_TEST_REAL_KEY": "sk-real-0123456789abcdef"}))


def test_exec_on_a_full_disk_changes_nothing_and_says_why(home: Path, tiny_fs: Path) -> None:
    proj = tiny_fs / "proj"
    write(proj / "cordon.toml", ROUTE_TOML)
    dotenv = write(proj / ".codex" / ".env", "")
    dotenv.write_bytes(USER_ENV)
    filler = fill(tiny_fs)
    r = run(proj, "exec", "--", "sh", "-c", "touch child-ran")
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("cordon: error: cannot write") and "No space left on device" in r.stderr, r.stderr
    assert "hint: free some space" in r.stderr and "Traceback" not in r.stderr
    assert not (proj / "child-ran").exists()
    assert dotenv.read_bytes() == USER_ENV
    assert leftovers(tiny_fs) == []
    # space again: the next run works and restores the user's file byte for byte
    filler.unlink()
    r = run(proj, "exec", "--", "sh", "-c", "grep -q cordon .codex/.env && touch child-ran")
    assert r.returncode == 0, r.stderr
    assert (proj / "child-ran").exists()
    assert dotenv.read_bytes() == USER_ENV


def test_setup_on_a_full_disk_keeps_user_files_and_says_why(home: Path, tiny_fs: Path) -> None:
    proj = tiny_fs / "proj"
    dotenv = write(proj / ".codex" / ".env", "")
    dotenv.write_bytes(USER_ENV)
    settings = write(proj / ".claude" / "settings.local.json", '{"env": {"MINE": "1"}}\n')
    before = {p: p.read_bytes() for p in (dotenv, settings)}
    filler = fill(tiny_fs)
    for integration in ("codex", "claude-code"):
        r = run(proj, "setup", integration, "--scope", "project", "--yes")
        assert r.returncode == 1, (integration, r.stdout, r.stderr)
        assert "cordon: error:" in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert {p: p.read_bytes() for p in before} == before
        assert leftovers(tiny_fs) == []
    filler.unlink()
    for integration in ("codex", "claude-code"):
        r = run(proj, "setup", integration, "--scope", "project", "--yes")
        assert r.returncode == 0, r.stderr
    assert b"KEEP=1" in dotenv.read_bytes() and b"MINE" in settings.read_bytes()


# -- a fault-injecting writer ------------------------------------------------------------------------

class HalfWriter(io.RawIOBase):
    """A file that accepts half of what it is given, then fails like a full disk."""

    def __init__(self, f: Any) -> None:
        self.f = f
        self.failed = False

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        if self.failed:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.failed = True
        data = bytes(b)[: max(1, len(b) // 2)]
        self.f.write(data)
        self.f.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def fileno(self) -> int:
        return int(self.f.fileno())

    def close(self) -> None:
        self.f.close()
        super().close()


@pytest.mark.parametrize("fault", ["write", "fsync"])
def test_atomic_write_with_injected_enospc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str) -> None:
    target = tmp_path / ".env"
    target.write_bytes(USER_ENV)
    os.chmod(target, 0o640)
    if fault == "write":
        real_fdopen = os.fdopen
        monkeypatch.setattr("cordon.store.atomic.os.fdopen",
                            lambda fd, mode="r", *a, **k: HalfWriter(real_fdopen(fd, mode)))
    else:
        def no_space(fd: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr("cordon.store.atomic.os.fsync", no_space)
    with pytest.raises(OSError) as e:
        atomic.atomic_write(target, b"NEW=1\n" * 1000)
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(target)
    assert target.read_bytes() == USER_ENV
    assert os.stat(target).st_mode & 0o777 == 0o640
    assert leftovers(tmp_path) == []


def test_cli_turns_a_full_disk_into_one_clear_line(project: Path, monkeypatch: pytest.MonkeyPatch, cordon) -> None:  # type: ignore[no-untyped-def]
    write(project / "cordon.toml", ROUTE_TOML)

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("cordon.store.atomic.os.fsync", no_space)
    r = cordon("route", "add", "--preset", "anthropic")
    assert r.status == 1, (r.stdout, r.stderr)
    assert r.stderr.splitlines()[0] == f"cordon: error: cannot write {project / 'cordon.toml'}: No space left on device"
    assert (project / "cordon.toml").read_text() == ROUTE_TOML
