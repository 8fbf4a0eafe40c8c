"""cordon.proxy.filewatch: inotify on the generation file, and the secret cache riding on it."""

from __future__ import annotations

import os
import shutil
import ssl
import sys
from pathlib import Path

import anyio
import httpx
import pytest

import cordon.proxy.secretcache as secretcache
from cordon.proxy.filewatch import FileWatch
from cordon.proxy.secretcache import SecretCache, bump_generation
from tests.proxy_harness import DictResolver, running_proxy
from tests.upstream import UpstreamServer

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="inotify is Linux's")


async def _settle() -> None:
    for _ in range(20):   # the loop reads the inotify descriptor between these yields
        await anyio.sleep(0.01)


@linux_only
@pytest.mark.parametrize("change", ["rename over it", "write in place", "delete it", "create it"])
def test_a_change_to_the_file_is_reported(tmp_path: Path, change: str) -> None:
    f = tmp_path / "secrets.gen"
    if change != "create it":
        f.write_text("1\n")
    (tmp_path / "other").write_text("x")
    seen: list[str] = []

    async def main() -> None:
        w = FileWatch(f, lambda: seen.append("change"), lambda: seen.append("lost"))
        assert w.start() and w.active
        try:
            (tmp_path / "other").write_text("y")          # another file in the directory: not ours
            await _settle()
            assert seen == []
            if change == "rename over it":
                bump_generation(f)
            elif change == "write in place":
                with open(f, "a") as fh:
                    fh.write("2\n")
            elif change == "delete it":
                f.unlink()
            else:
                f.write_text("1\n")
            await _settle()
        finally:
            w.stop()
        assert not w.active

    anyio.run(main)
    assert seen and set(seen) == {"change"}


@linux_only
def test_losing_the_directory_reports_a_change_and_the_loss(tmp_path: Path) -> None:
    d = tmp_path / "cordon"
    d.mkdir()
    seen: list[str] = []

    async def main() -> None:
        w = FileWatch(d / "secrets.gen", lambda: seen.append("change"), lambda: seen.append("lost"))
        assert w.start()
        shutil.rmtree(d)
        await _settle()
        assert not w.active

    anyio.run(main)
    assert seen[-2:] == ["change", "lost"]


def test_a_missing_directory_cannot_be_watched(tmp_path: Path) -> None:
    async def main() -> bool:
        return FileWatch(tmp_path / "nowhere" / "secrets.gen", lambda: None, lambda: None).start()

    assert anyio.run(main) is False


def _counting_sig(monkeypatch: pytest.MonkeyPatch, gen: Path) -> list[int]:
    calls: list[int] = []
    real = secretcache._sig

    def sig(path: Path | None) -> secretcache.Sig:
        if path == gen:
            calls.append(1)
        return real(path)

    monkeypatch.setattr(secretcache, "_sig", sig)
    return calls


@linux_only
def test_a_watching_proxy_makes_no_stat_per_request_and_still_sees_the_next_change(
        up: UpstreamServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = tmp_path / "secrets.gen"
    bump_generation(gen)
    res = DictResolver({"CORDON_TEST_SECRET": "first-secret-value"})
    calls = _counting_sig(monkeypatch, gen)
    with running_proxy([up.route()], resolver=SecretCache(res, gen)) as px:
        ctx = ssl.create_default_context(cafile=str(px.ca_file))
        with httpx.Client(proxy=px.url, verify=ctx) as c:
            c.get("https://api.openai.com/json")
            before = len(calls)
            for _ in range(20):
                c.get("https://api.openai.com/json")
            assert len(calls) == before, "a request looked at the generation file"
            res.values["CORDON_TEST_SECRET"] = "second-secret-value"
            bump_generation(gen)          # then at once the next request
            c.get("https://api.openai.com/json")
    seen = [r.header("authorization") for r in up.requests]
    assert seen == ["Bearer first-secret-value"] * 21 + ["Bearer second-secret-value"]


def test_without_inotify_every_request_checks_the_file(up: UpstreamServer, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FileWatch, "start", lambda self: False)
    gen = tmp_path / "secrets.gen"
    bump_generation(gen)
    res = DictResolver({"CORDON_TEST_SECRET": "first-secret-value"})
    calls = _counting_sig(monkeypatch, gen)
    with running_proxy([up.route()], resolver=SecretCache(res, gen)) as px:
        ctx = ssl.create_default_context(cafile=str(px.ca_file))
        with httpx.Client(proxy=px.url, verify=ctx) as c:
            c.get("https://api.openai.com/json")
            before = len(calls)
            for _ in range(5):
                c.get("https://api.openai.com/json")
            assert len(calls) - before == 5
            res.values["CORDON_TEST_SECRET"] = "second-secret-value"
            bump_generation(gen)
            c.get("https://api.openai.com/json")
    assert up.requests[-1].header("authorization") == "Bearer second-secret-value"
    assert os.path.exists(gen)


@pytest.fixture
def up() -> UpstreamServer:  # type: ignore[misc]
    with UpstreamServer("api.openai.com") as u:
        yield u
