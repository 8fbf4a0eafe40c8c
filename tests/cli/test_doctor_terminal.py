"""`cordon doctor` on a terminal: each check appears as it finishes, failures stand out in colour;
no colour under NO_COLOR or when piped."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pexpect
import pytest

from tests import configs
from tests.conftest import subprocess_env, write

ESC = "\x1b["


def spawn(project: Path, *args: str, env: dict[str, str] | None = None) -> pexpect.spawn:
    child = pexpect.spawn(sys.executable, ["-m", "cordon", *args], cwd=str(project), env=subprocess_env(env),
                          encoding="utf-8", timeout=60, dimensions=(40, 200))
    child.logfile_read = open(os.devnull, "w")  # noqa: SIM115 - closed with the child
    return child


def close(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    child.logfile_read.close()
    return int(child.exitstatus)


def test_checks_appear_while_a_probe_is_still_running(project: Path, tmp_path: Path) -> None:
    """A `curl` that waits for the test's word holds the probes back: the checks before it are on
    the screen already, the summary is not; once it goes on, the rest follows."""
    real = shutil.which("curl")
    if real is None:
        pytest.skip("curl is not installed (scripts/test installs it)")
    go = tmp_path / "go"
    bindir = tmp_path / "bin"
    write(bindir / "curl", f'#!/bin/sh\nwhile [ ! -e "{go}" ]; do sleep 0.02; done\nexec "{real}" "$@"\n')
    (bindir / "curl").chmod(0o755)
    write(project / "cordon.toml", "listen = 0\n")
    c = spawn(project, "doctor", env={"PATH": f"{bindir}:{os.environ['PATH']}"})
    c.expect(r"cordon doctor: project scope")
    c.expect(r"config\s+\S+cordon.toml parses")
    c.expect(r"bundle")                                   # static checks are out while curl waits
    assert "ok, " not in c.before                        # no summary yet
    go.write_text("")
    c.expect(r"probe\.curl")
    c.expect(r"\d+ ok, \d+ warnings?, \d+ failed, \d+ skipped")
    close(c)


def test_colour_on_a_terminal_and_failures_stand_out(project: Path) -> None:
    configs.write(project / "cordon.toml", configs.anthropic(name="x", host="api.x.example", header_name="x-key",
                                                          env="DOCTOR_TTY_UNSET"), listen=0)
    c = spawn(project, "doctor", "--no-probes")
    c.expect(r"cordon doctor: ")
    c.expect_exact(f"{ESC}1;31mfail{ESC}0m")                 # the failed secret, in red
    c.expect_exact(f"{ESC}1;31mroute 'x': environment variable DOCTOR_TTY_UNSET is not set")
    c.expect(r"skipped")
    assert close(c) == 1


@pytest.mark.parametrize("how", ["NO_COLOR", "piped"])
def test_no_colour_under_no_color_or_when_piped(project: Path, cordon_proc: Any, how: str) -> None:
    write(project / "cordon.toml", "listen = 0\n")
    if how == "NO_COLOR":
        c = spawn(project, "doctor", "--no-probes", env={"NO_COLOR": "1"})
        c.expect(r"skipped")
        out = c.before
        close(c)
    else:
        out = cordon_proc("doctor", "--no-probes", cwd=project).stdout
        assert "cordon doctor: project scope" in out
    assert ESC not in out
