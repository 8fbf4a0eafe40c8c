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
from cordon.core.model import Auth, Route, Secret, SecretSpec
from cordon.proxy.filewatch import FileWatch
from cordon.proxy.secretcache import SecretCache
from cordon.store.generation import bump_generation
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


@pytest.mark.parametrize("inotify", [True, False], ids=["inotify", "stat"])
def test_the_proxy_sees_a_bump_on_the_very_next_request(up: UpstreamServer, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch, inotify: bool) -> None:
    """With inotify no request looks at the generation file; without it every request does."""
    if inotify and sys.platform != "linux":
        pytest.skip("inotify is Linux's")
    if not inotify:
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
            for _ in range(20):
                c.get("https://api.openai.com/json")
            assert len(calls) - before == (0 if inotify else 20)
            res.values["CORDON_TEST_SECRET"] = "second-secret-value"
            bump_generation(gen)          # then at once the next request
            c.get("https://api.openai.com/json")
    seen = [r.header("authorization") for r in up.requests]
    assert seen == ["Bearer first-secret-value"] * 21 + ["Bearer second-secret-value"]


class _FileResolver:
    def __init__(self) -> None:
        self.calls = 0

    def resolve(self, route: Route) -> Secret:
        self.calls += 1
        assert route.auth.secret.path is not None
        return Secret(route.auth.secret.path.read_text())


def _file_route(path: Path) -> Route:
    return Route(name="r", host="h", auth=Auth(type="header", secret=SecretSpec(source="file", path=path)))


@linux_only
@pytest.mark.parametrize("how", ["rewrite", "replace"])
def test_a_watched_file_source_costs_no_stat_and_its_change_is_seen(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    f = tmp_path / "key"
    f.write_text("v1")
    calls = _counting_sig(monkeypatch, f)
    res = _FileResolver()
    cache = SecretCache(res)

    async def main() -> None:
        cache.watch()
        try:
            assert (await cache.get(_file_route(f))).reveal() == "v1"
            before = len(calls)
            for _ in range(10):
                assert (await cache.get(_file_route(f))).reveal() == "v1"
            assert len(calls) == before and res.calls == 1
            if how == "rewrite":
                f.write_text("v2-longer")
            else:
                (tmp_path / "key.new").write_text("v2-longer")
                os.replace(tmp_path / "key.new", f)
            await _settle()
            assert (await cache.get(_file_route(f))).reveal() == "v2-longer"
        finally:
            cache.unwatch()

    anyio.run(main)
    assert res.calls == 2


@linux_only
def test_a_file_source_behind_a_symlink_is_checked_by_stat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a secret mount: `key` -> `..data/key`, and an update swaps `..data` for a new directory
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "key").write_text("v1")
    (tmp_path / "..data").symlink_to("v1")
    link = tmp_path / "key"
    link.symlink_to("..data/key")
    res = _FileResolver()
    cache = SecretCache(res)

    async def main() -> None:
        cache.watch()
        try:
            assert (await cache.get(_file_route(link))).reveal() == "v1"
            (tmp_path / "v2").mkdir()
            (tmp_path / "v2" / "key").write_text("v2-longer")
            (tmp_path / "..data.new").symlink_to("v2")
            os.replace(tmp_path / "..data.new", tmp_path / "..data")
            assert (await cache.get(_file_route(link))).reveal() == "v2-longer"
        finally:
            cache.unwatch()

    anyio.run(main)
