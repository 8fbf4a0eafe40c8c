"""`cordon start` follows cordon.toml without a restart: routes added, edited or removed take
effect on the next connection; an edit that does not load keeps the last good configuration
running, logs one error naming the line, and /health, status and doctor say so."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import configs
from tests.cli.test_start import _client, _env_json, health, state_dir
from tests.conftest import approve_as_user
from tests.startproc import started
from tests.upstream import UpstreamServer

ENV = {"OPENAI_REAL": "sk-openai-first", "OPENAI_OTHER": "sk-openai-second", "ANTH_REAL": "sk-anthropic-1"}


@pytest.fixture
def ups() -> Any:
    with UpstreamServer("api.openai.com") as a, UpstreamServer("api.anthropic.com") as b:
        yield a, b


def rewrite(path: Path, text: str, *, approve: bool = True) -> None:
    """Replace the file (approved as `cordon allow` would, unless told not to) and make sure its
    mtime moves (some filesystems count in coarse ticks)."""
    old = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    st = path.stat()
    if st.st_mtime_ns == old:
        os.utime(path, ns=(st.st_atime_ns, old + 1_000_000))
    if approve:
        try:
            approve_as_user(path)
        except Exception:
            pass                      # a file that does not load cannot be approved


def seen(env: dict[str, str], up: UpstreamServer, url: str) -> str | None:
    """One request on a new connection (a new client): what the upstream received."""
    with _client(env) as c:
        r = c.get(url)
    assert r.status_code == 200, r.text
    return up.requests[-1].header("authorization") or up.requests[-1].header("x-api-key")


def test_routes_added_edited_and_removed_apply_on_the_next_connection(project: Path, ups: Any) -> None:
    a, b = ups
    cfg = project / "cordon.toml"
    one = configs.openai(env="OPENAI_REAL", upstream=a)
    two = configs.anthropic(env="ANTH_REAL", upstream=b)
    rewrite(cfg, configs.render(one, listen=0))
    with started(env=ENV, cwd=project) as sp:
        env = _env_json(project)
        assert seen(env, a, "https://api.openai.com/x") == "Bearer sk-openai-first"
        # added
        rewrite(cfg, configs.render(one, two, listen=0))
        assert seen(env, b, "https://api.anthropic.com/v1/messages") == "sk-anthropic-1"
        # edited: another secret source
        rewrite(cfg, configs.render(one.with_(secret={"source": "env", "var": "OPENAI_OTHER"}), two, listen=0))
        assert seen(env, a, "https://api.openai.com/x") == "Bearer sk-openai-second"
        # removed: the host is no longer intercepted (tunnelled, so cordon's CA no longer vouches for it)
        rewrite(cfg, configs.render(two, listen=0))
        with pytest.raises(httpx.HTTPError), _client(env) as c:
            c.get("https://api.openai.com/x")
        assert health(sp.port or 0)[1]["routes"] == 1
        assert sp.stop() == 0
    assert "reloaded" in sp.stderr
    for v in ENV.values():
        assert v not in sp.stderr


def test_an_invalid_edit_keeps_the_last_good_config_and_says_so(project: Path, ups: Any, cordon_proc: Any) -> None:
    a, _ = ups
    cfg = project / "cordon.toml"
    good = configs.render(configs.openai(env="OPENAI_REAL", upstream=a), listen=0)
    rewrite(cfg, good)
    with started(env=ENV, cwd=project) as sp:
        env = _env_json(project)
        port = sp.port or 0
        live: Any = health(port)[1]["config"]
        assert live["path"] == str(cfg.resolve()) and live["error"] is None
        rewrite(cfg, good + "\n[[routes]]\nname = \"broken\"\nbogus = 1\n", approve=False)
        for _ in range(3):                                    # each on a new connection
            assert seen(env, a, "https://api.openai.com/x") == "Bearer sk-openai-first"
        body: Any = health(port)[1]["config"]
        assert body["live"] == live["live"] and body["loaded_at"] == live["loaded_at"]
        assert body["error"] is not None and "cordon.toml:" in body["error"]
        # one error line, naming the file and the line, however many connections came
        deadline = time.monotonic() + 10
        while "keeps running" not in sp.stderr and time.monotonic() < deadline:
            sp.pump(0.1)
        errors = [ln for ln in sp.lines() if "keeps running the configuration" in ln]
        assert len(errors) == 1, sp.stderr
        line = cfg.read_text().splitlines().index("bogus = 1") + 1
        assert f"cordon.toml:{line}: unknown key 'bogus'" in errors[0], errors[0]
        # status and doctor flag it
        st = cordon_proc("status", cwd=project)
        assert "changed but failed to load" in st.stdout, st.stdout
        doc = cordon_proc("doctor", "--json", "--no-probes", env=ENV, cwd=project)
        check = next(c for c in json.loads(doc.stdout)["checks"] if c["id"] == "config.live")
        assert check["status"] == "fail" and "keeps running" in check["message"]
        # fixed: the fix is live, the flag is gone
        rewrite(cfg, good.replace("OPENAI_REAL", "OPENAI_OTHER"))
        assert seen(env, a, "https://api.openai.com/x") == "Bearer sk-openai-second"
        assert health(port)[1]["config"]["error"] is None  # type: ignore[index]
        assert sp.stop() == 0
    assert state_dir(project).exists()


def test_an_unapproved_edit_waits_for_cordon_allow(project: Path, ups: Any, cordon_proc: Any) -> None:
    """An agent that adds a route to the running proxy's cordon.toml gets nothing until the user
    approves the file; `cordon allow` then takes effect on the next connection."""
    a, b = ups
    cfg = project / "cordon.toml"
    one = configs.openai(env="OPENAI_REAL", upstream=a)
    two = configs.anthropic(env="ANTH_REAL", upstream=b)
    rewrite(cfg, configs.render(one, listen=0))
    with started(env=ENV, cwd=project) as sp:
        env = _env_json(project)
        rewrite(cfg, configs.render(one, two, listen=0), approve=False)
        assert seen(env, a, "https://api.openai.com/x") == "Bearer sk-openai-first"    # still served
        with pytest.raises(httpx.HTTPError), _client(env) as c:                     # not intercepted
            c.get("https://api.anthropic.com/v1/messages")
        err: Any = health(sp.port or 0)[1]["config"]
        assert "not approved" in err["error"] or "changed since you approved it" in err["error"]
        assert b.requests == []
        p = cordon_proc("allow", cwd=project)
        assert p.returncode == 0, p.stderr
        assert seen(env, b, "https://api.anthropic.com/v1/messages") == "sk-anthropic-1"
        assert sp.stop() == 0
