"""Shared fixtures: a throwaway HOME/XDG per test, in-process and subprocess cordon."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from cordon.cli.context import Context
from cordon.cli.main import main

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    status: int
    stdout: str
    stderr: str


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh HOME with XDG dirs; os.environ points at it for the test's duration."""
    h = tmp_path / "home"
    (h / ".config").mkdir(parents=True)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(h / ".config"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    monkeypatch.setenv("XDG_DATA_HOME", str(h / ".local" / "share"))
    for var in ("CORDON_SESSION", "HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy",
                "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy", "SSL_CERT_FILE", "CODEX_HOME",
                "OPENAI_API_KEY", "CODEX_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY",
                "GOOGLE_API_KEY", "GITHUB_TOKEN", "GH_TOKEN", "OPENROUTER_API_KEY",
                "MISTRAL_API_KEY", "GROQ_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    yield h


@pytest.fixture
def project(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project directory, made the working directory."""
    p = tmp_path / "proj"
    p.mkdir()
    monkeypatch.chdir(p)
    return p


@pytest.fixture
def cordon(home: Path):  # type: ignore[no-untyped-def]
    """Run `cordon ARGS` in-process; returns Result(status, stdout, stderr)."""

    def run(*args: str, stdin: str = "", cwd: Path | None = None) -> Result:
        out, err = io.StringIO(), io.StringIO()
        ctx = Context(env=dict(os.environ), stdin=io.StringIO(stdin), stdout=out, stderr=err,
                      cwd=cwd)
        try:
            status = main(list(args), ctx)
        except SystemExit as e:  # argparse usage errors and --help
            status = int(e.code or 0)
        return Result(status, out.getvalue(), err.getvalue())

    return run


def cordon_argv(*args: str) -> list[str]:
    """argv that runs this checkout's cordon in a subprocess."""
    return [sys.executable, "-m", "cordon", *args]


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if extra:
        env.update(extra)
    return env


@pytest.fixture
def cordon_proc(home: Path):  # type: ignore[no-untyped-def]
    """Run `cordon ARGS` as a real subprocess (for exit codes, signals, streams)."""

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None,
            cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cordon_argv(*args), input=input, capture_output=True, text=True,
                              env=subprocess_env(env), cwd=cwd, timeout=timeout)

    return run


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def argv_str(argv: Sequence[str]) -> str:
    return " ".join(argv)
