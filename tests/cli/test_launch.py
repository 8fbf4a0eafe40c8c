"""What a command loads before it does anything: `--version` and the stale-session repair step.

Start-up time itself is measured by bench/startup.py, never asserted; these
tests keep the structure that makes it cheap: `cordon --version` answers from
`cordon.cli.launch` without importing the command line, and a command with no
session record to repair never imports the session module for that step.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import REPO, subprocess_env


def _run(script: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          env=env or subprocess_env(), cwd=str(REPO), timeout=60)


def test_version_answers_without_importing_the_cli() -> None:
    out = _run("""
        import json, sys
        sys.argv = ["cordon", "--version"]
        from cordon.cli.launch import entry
        try:
            entry()
        except SystemExit as e:
            code = e.code
        loaded = sorted(m for m in sys.modules if m.startswith("cordon.") or m == "argparse")
        print(json.dumps({"code": code, "loaded": loaded}))
    """)
    assert out.returncode == 0, out.stderr
    first, last = out.stdout.splitlines()
    from cordon import __version__
    assert first == f"cordon {__version__}"
    assert json.loads(last) == {"code": 0, "loaded": ["cordon.cli", "cordon.cli.launch"]}


def test_version_through_argparse_prints_the_same() -> None:
    """Anything but exactly `--version` goes to argparse, whose version action prints the same line."""
    fast = _run("import sys; sys.argv = ['cordon', '--version']; from cordon.cli.launch import entry; entry()")
    slow = _run("import sys; sys.argv = ['cordon', '--debug', '--version']; from cordon.cli.launch import entry; "
                "entry()")
    assert (fast.returncode, slow.returncode) == (0, 0), fast.stderr + slow.stderr
    assert fast.stdout == slow.stdout != ""


def test_nothing_to_repair_loads_nothing_for_it(tmp_path: Path) -> None:
    """With no session record (no directory, or an empty one) the repair step is a directory listing."""
    home = tmp_path / "home"
    env = subprocess_env({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
                          "XDG_RUNTIME_DIR": str(tmp_path / "run")})
    script = """
        import sys
        from cordon.cli.context import Context
        from cordon.cli.main import _repair_stale_sessions
        ctx = Context()
        _repair_stale_sessions(ctx)
        print("cordon.store.session" in sys.modules)
        ctx.paths.sessions_dir.mkdir(parents=True, exist_ok=True)
        _repair_stale_sessions(ctx)
        print("cordon.store.session" in sys.modules)
    """
    out = _run(script, env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_a_stale_record_is_still_repaired(tmp_path: Path) -> None:
    """The listing must not hide a record: a session killed with SIGKILL is repaired by the next command."""
    home = tmp_path / "home"
    env = subprocess_env({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
                          "XDG_RUNTIME_DIR": str(tmp_path / "run")})
    killed = _run("""
        import os, signal
        from cordon.cli.context import Context
        from cordon.store.session import create_session
        s = create_session(Context().paths, ca_pem=b"ca", bundle_pem=b"bundle")
        print(s.dir, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """, env)
    sdir = Path(killed.stdout.strip())
    assert sdir.is_dir(), killed.stderr
    out = _run("""
        from cordon.cli.context import Context
        from cordon.cli.main import _repair_stale_sessions
        ctx = Context()
        _repair_stale_sessions(ctx)
        print(sorted(p.name for p in ctx.paths.sessions_dir.iterdir()))
    """, env)
    assert out.returncode == 0, out.stderr
    assert not sdir.exists()
    assert out.stdout.split() == ["[]"]
