"""cordon SIGKILLed at any point of `setup` and of `exec` (start-up and teardown): the user's files
are intact afterwards, or repaired by the next cordon command.

Kill points are exact, not timed: tests/faults/killpoints/sitecustomize.py counts every file-system
change the cordon process makes (open for writing, rename, unlink, mkdir, chmod...) and kills the
process just before the Nth one. A dry run counts them; the test then kills at a spread of points
(a fixed random sample, plus the first and last) and checks what the user is left with.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from cordon.store.paths import Paths
from tests import configs
from tests.conftest import REPO, approve_as_user, cordon_argv

HOOK = Path(__file__).resolve().parent / "killpoints"
USER_ENV = b"# my settings\nKEEP=1\nOPENAI_BASE_URL=https://example.invalid/v1\n"
USER_CONFIG = b'model = "o3"\n\n[mcp_servers.mine]\ncommand = "my-server"\n'
ROUTE_TOML = configs.render(configs.openai(placeholder_env=configs.CODEX_VARS))   # CORDON_TEST_REAL_KEY
SAMPLE = int(os.environ.get("CORDON_KILL_POINTS", "12"))   # raise it to try every point


def env_for(home: Path, log: Path | None = None, at: int = 0) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CORDON_", "HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"))
           and k not in ("CODEX_HOME", "SSL_CERT_FILE", "OPENAI_API_KEY", "CODEX_API_KEY")}
    env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
                "XDG_RUNTIME_DIR": str(home / "run"), "XDG_DATA_HOME": str(home / ".local/share"),
                "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
                "CORDON_TEST_REAL_KEY": "sk-real-0123456789abcdef",
                "PYTHONPATH": f"{HOOK}{os.pathsep}{REPO}" if log else str(REPO)})
    if log:
        env["CORDON_TEST_KILL_LOG"] = str(log)
        env["CORDON_TEST_KILL_AT"] = str(at)
    return env


def run(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cordon_argv(*args), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)


def fresh(tmp: Path, name: str, *, config: bool) -> tuple[Path, Path]:
    root = tmp / name
    home, proj = root / "home", root / "proj"
    (home / ".config").mkdir(parents=True)
    (home / "run").mkdir(mode=0o700)
    (proj / ".codex").mkdir(parents=True)
    (proj / ".codex" / ".env").write_bytes(USER_ENV)
    (proj / ".codex" / "config.toml").write_bytes(USER_CONFIG)
    if config:
        (proj / "cordon.toml").write_text(ROUTE_TOML)
        approve_as_user(proj / "cordon.toml", env_for(home))
    return home, proj


def kill_points(tmp: Path, args: tuple[str, ...], *, config: bool) -> list[int]:
    """Count the file-system changes of a whole run; pick where to kill."""
    home, proj = fresh(tmp, "dry-run", config=config)
    log = tmp / "dry-run.log"
    r = run(proj, env_for(home, log), *args)
    assert r.returncode == 0, r.stderr
    total = len(log.read_text().splitlines())
    assert total > 5, "the hook counted nothing: is sitecustomize being imported?"
    points = list(range(1, total + 1))
    if len(points) > SAMPLE:
        rng = random.Random(f"{args}")   # a fixed sample: the same points on every run
        points = sorted({1, total, *rng.sample(points, SAMPLE - 2)})
    return points


def killed(tmp: Path, n: int, args: tuple[str, ...], *, config: bool) -> tuple[Path, Path, str]:
    home, proj = fresh(tmp, f"kill-{n}", config=config)
    log = tmp / f"kill-{n}.log"
    r = run(proj, env_for(home, log, n), *args)
    assert r.returncode == -9, f"not killed at point {n}: {r.returncode} {r.stderr}"
    last = log.read_text().splitlines()[-1]
    return home, proj, last


def leftovers(*dirs: Path) -> list[Path]:
    return [p for d in dirs for p in d.rglob("*") if ".cordon-tmp-" in p.name]


@pytest.mark.slow
def test_setup_killed_anywhere_is_repaired_by_running_it_again(tmp_path: Path) -> None:
    args = ("setup", "codex", "--scope", "project", "--yes")
    for n in kill_points(tmp_path, args, config=False):
        home, proj, where = killed(tmp_path, n, args, config=False)
        env = env_for(home)
        what = f"killed before change {where!r}"
        r = run(proj, env, *args)
        assert r.returncode == 0, f"{what}: setup again failed: {r.stderr}"
        dotenv = (proj / ".codex" / ".env").read_bytes()
        assert dotenv.startswith(USER_ENV) and b"cordon" in dotenv, what
        config = (proj / ".codex" / "config.toml").read_bytes()
        assert b'model = "o3"' in config and b"my-server" in config, what
        assert run(proj, env, "route", "list").returncode == 0, what
        r = run(proj, env, "integration", "disable", "codex", "--scope", "project")
        assert r.returncode == 0, f"{what}: {r.stderr}"
        assert (proj / ".codex" / ".env").read_bytes() == USER_ENV, what
        assert (proj / ".codex" / "config.toml").read_bytes() == USER_CONFIG, what
        assert leftovers(proj, home) == [], what
        shutil.rmtree(proj.parent)


@pytest.mark.slow
def test_exec_killed_anywhere_is_repaired_by_the_next_command(tmp_path: Path) -> None:
    args = ("exec", "--", "sh", "-c", "exit 0")
    for n in kill_points(tmp_path, args, config=True):
        home, proj, where = killed(tmp_path, n, args, config=True)
        env = env_for(home)
        what = f"killed before change {where!r}"
        r = run(proj, env, "route", "list")          # any command repairs
        assert r.returncode == 0, f"{what}: {r.stderr}"
        assert (proj / ".codex" / ".env").read_bytes() == USER_ENV, what
        assert (proj / ".codex" / "config.toml").read_bytes() == USER_CONFIG, what
        paths = Paths.from_env(env, proj)
        if paths.sessions_dir.exists():
            left = [p.name for p in paths.sessions_dir.iterdir()]
            # file-*.lock serialise edits of one file and stay; nothing else may
            assert not [p for p in left if not p.startswith("file-") or p.endswith(".json")], f"{what}: {left}"
        assert leftovers(proj, home) == [], what
        r = run(proj, env, "exec", "--", "sh", "-c", "grep -q cordon .codex/.env")
        assert r.returncode == 0, f"{what}: exec after the repair: {r.stderr}"
        assert (proj / ".codex" / ".env").read_bytes() == USER_ENV, what
        shutil.rmtree(proj.parent)


@pytest.mark.parametrize("kind", ["setup", "exec"])
def test_the_hook_really_kills(tmp_path: Path, kind: str) -> None:
    """The kill-point machinery itself: the process dies at exactly the chosen change."""
    args = ("setup", "codex", "--scope", "project", "--yes") if kind == "setup" else ("exec", "--", "true")
    _, _, last = killed(tmp_path, 3, args, config=kind == "exec")
    assert last.startswith("3 ")
