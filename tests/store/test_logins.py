"""The login store: tokens in the keyring, a token-free index, a refresh lock shared by processes."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from cordon.core.oauth import parse_client_file
from cordon.store.generation import generation_file
from cordon.store.logins import LoginStore
from cordon.store.paths import Paths
from tests.oauth_fixtures import CLAUDE_ACCESS, CLAUDE_REFRESH, claude_credentials


def store() -> LoginStore:
    return LoginStore(Paths.from_env(os.environ), os.environ)


def test_save_writes_keyring_index_and_generation(home: Path) -> None:
    s = store()
    gen = generation_file(Paths.from_env(os.environ).cordon_home)
    s.save(parse_client_file("claude", claude_credentials()))
    assert gen.exists()
    got = s.load("claude")
    assert got is not None and got.access_token == CLAUDE_ACCESS
    text = s.index_path.read_text()
    assert CLAUDE_ACCESS not in text and CLAUDE_REFRESH not in text and '"plan": "max"' in text
    assert oct(s.index_path.stat().st_mode & 0o777) == "0o600"
    s.delete("claude")
    assert s.load("claude") is None and s.names() == []


def test_a_login_being_replaced_never_reads_as_missing(home: Path) -> None:
    s = store()
    first = parse_client_file("claude", claude_credentials())
    s.save(first)

    def writer() -> None:
        for i in range(15):
            store().save(replace(first, access_token=f"sk-ant-oat01-v{i}"))

    def reader() -> list[bool]:
        return [store().load("claude") is not None for _ in range(30)]
    with ThreadPoolExecutor(2) as pool:
        w = pool.submit(writer)
        r = pool.submit(reader)
        w.result()
        assert all(r.result())


def test_the_refresh_lock_is_exclusive_across_descriptors(home: Path) -> None:
    a, b = store(), store()
    fd = a.try_lock("codex")
    assert fd is not None
    assert b.try_lock("codex") is None             # another process (another open file) waits
    a.unlock(fd)
    fd2 = b.try_lock("codex")
    assert fd2 is not None
    b.unlock(fd2)
