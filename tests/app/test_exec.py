"""`cordon exec` lifecycle: exit statuses, signals, TTY, .codex/.env, concurrency, crash repair,
nesting, preflight, zero-config and the secret's absence from everything the child can see.

Real processes throughout (the subprocess runs this checkout's cordon); pexpect for the TTY.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pexpect
import pytest

from cordon.store.dotenvfile import SESSION_BEGIN
from cordon.store.paths import Paths
from tests import configs
from tests.conftest import cordon_argv, subprocess_env, wait_for, write

SECRET = "sk-real-7c1f3e9a-DO-NOT-LEAK"
PLACEHOLDER = "dummy-replaced-by-cordon"

ROUTE_TOML = configs.render(configs.openai(placeholder_env=configs.CODEX_VARS))   # CORDON_TEST_REAL_KEY
KEYRING_TOML = configs.render(configs.openai(keyring=""))


def py(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


@pytest.fixture
def routed(project: Path) -> Path:
    write(project / "cordon.toml", ROUTE_TOML)
    return project


# --- exit statuses -------------------------------------------------------------------------------

def test_exit_code_passes_through(project: Path, cordon_proc) -> None:  # type: ignore[no-untyped-def]
    r = cordon_proc("exec", "--", "sh", "-c", "exit 3")
    assert r.returncode == 3, r.stderr


def test_death_by_signal_is_128_plus_n(project: Path, cordon_proc) -> None:  # type: ignore[no-untyped-def]
    r = cordon_proc("exec", "--", "sh", "-c", "kill -TERM $$")
    assert r.returncode == 143, r.stderr
    r = cordon_proc("exec", "--", "sh", "-c", "kill -KILL $$")
    assert r.returncode == 137, r.stderr


def test_command_not_found_is_127(project: Path, cordon_proc) -> None:  # type: ignore[no-untyped-def]
    r = cordon_proc("exec", "--", "no-such-command-xyz", "arg")
    assert r.returncode == 127
    assert "cordon: command not found: no-such-command-xyz" in r.stderr.splitlines()
    r = cordon_proc("exec", "--", "./missing/path")
    assert r.returncode == 127 and "cordon: command not found: ./missing/path" in r.stderr


def test_not_executable_is_126(project: Path, cordon_proc) -> None:  # type: ignore[no-untyped-def]
    write(project / "script.sh", "echo hi\n").chmod(0o644)
    r = cordon_proc("exec", "--", "./script.sh", cwd=project)
    assert r.returncode == 126 and "permission denied" in r.stderr
    # executable but not a program the kernel can run: found, then refused by execve
    bad = write(project / "bad", "")
    bad.write_bytes(b"\x7fELF-not-really")
    bad.chmod(0o755)
    r = cordon_proc("exec", "--", "./bad", cwd=project)
    assert r.returncode == 126 and "cordon: cannot run ./bad" in r.stderr, r.stderr
    assert "internal error" not in r.stderr


def test_no_command_is_a_usage_error(project: Path, cordon_proc) -> None:  # type: ignore[no-untyped-def]
    r = cordon_proc("exec")
    assert r.returncode == 2 and "no command given" in r.stderr


def test_stdin_stdout_are_inherited(project: Path, cordon_proc) -> None:  # type: ignore[no-untyped-def]
    r = cordon_proc("exec", "--", "sh", "-c", "read x; echo got:$x; echo err >&2", input="hello\n")
    assert r.returncode == 0 and r.stdout == "got:hello\n" and "err" in r.stderr


# --- the TTY and signals (pexpect) -----------------------------------------------------------------

def spawn(*args: str, cwd: Path) -> pexpect.spawn:
    argv = cordon_argv(*args)
    return pexpect.spawn(argv[0], argv[1:], cwd=str(cwd), env=subprocess_env(), encoding="utf-8", timeout=30)


def test_child_reads_a_line_from_the_terminal(project: Path) -> None:
    child = spawn("exec", "--", "sh", "-c", "printf 'name? '; read x; echo hello-$x; [ -t 0 ] && echo tty",
                  cwd=project)
    child.expect_exact("name? ")
    child.sendline("world")
    child.expect_exact("hello-world")
    child.expect_exact("tty")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


SIGINT_COUNTER = """
import signal, sys, time
n = 0
def on_int(signum, frame):
    global n
    n += 1
    print(f"sigint {n}", flush=True)
signal.signal(signal.SIGINT, on_int)
print("ready", flush=True)
sys.stdin.readline()
time.sleep(0.3)   # room for a wrongly forwarded second copy to arrive
print(f"count={n}", flush=True)
"""


@pytest.mark.parametrize("key", ["c", "\\"])
def test_ctrl_c_reaches_the_child_exactly_once(project: Path, key: str) -> None:
    # Ctrl-C (SIGINT) and Ctrl-\ (SIGQUIT) from the terminal go to the whole foreground
    # group: the child gets them from the terminal and cordon must not send a second copy
    code = SIGINT_COUNTER if key == "c" else SIGINT_COUNTER.replace("SIGINT", "SIGQUIT")
    child = spawn("exec", "--", *py(code), cwd=project)
    child.expect_exact("ready")
    child.sendcontrol(key)
    child.expect_exact("sigint 1")
    child.sendline("done")
    child.expect(r"count=(\d+)")
    assert child.match.group(1) == "1"
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0        # cordon survived the Ctrl-C and waited for the child


def test_ctrl_c_killing_the_child_gives_130(project: Path) -> None:
    child = spawn("exec", "--", "sh", "-c", "echo ready; exec sleep 60", cwd=project)
    child.expect_exact("ready")
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT])
def test_signals_sent_to_cordon_are_forwarded(project: Path, sig: signal.Signals) -> None:
    code = f"""
    import signal, sys
    def on(signum, frame):
        print("child got", signal.Signals(signum).name, flush=True)
        sys.exit(7)
    signal.signal({int(sig)}, on)
    print("ready", flush=True)
    signal.pause()
    """
    p = subprocess.Popen(cordon_argv("exec", "--", *py(code)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=subprocess_env(), cwd=project)
    assert p.stdout is not None
    assert p.stdout.readline() == "ready\n"
    p.send_signal(sig)
    out, err = p.communicate(timeout=30)
    assert out == f"child got {sig.name}\n", err
    assert p.returncode == 7


def test_sigterm_to_cordon_with_default_child_gives_143(project: Path, home: Path) -> None:
    p = subprocess.Popen(cordon_argv("exec", "--", "sh", "-c", "echo ready; exec sleep 60"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env(), cwd=project)
    assert p.stdout is not None and p.stdout.readline() == "ready\n"
    p.terminate()
    p.communicate(timeout=30)
    assert p.returncode == 143
    paths = Paths.from_env(dict(os.environ), project)
    assert not list(paths.session_root.iterdir())            # teardown ran
    assert not [f for f in paths.sessions_dir.iterdir() if f.suffix == ".json"]


# --- .codex/.env -----------------------------------------------------------------------------------

def test_codex_env_block_user_lines_kept_and_restored(routed: Path, cordon_proc) -> None:  # type: ignore[no-untyped-def]
    dotenv = routed / ".codex" / ".env"
    original = b"# my settings\nMY_VAR=keep me\nHTTPS_PROXY=http://stale:1\n"
    write(dotenv, "").write_bytes(original)
    out = routed / "seen"
    r = cordon_proc("exec", "--", "sh", "-c", f'cp .codex/.env {out}; echo "$CODEX_HOME"',
                    env={"CORDON_TEST_REAL_KEY": SECRET}, cwd=routed)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(routed / ".codex")
    seen = out.read_text()
    assert seen.startswith(original.decode())                 # the user's lines, untouched
    block = seen[len(original):]
    # the session's block says the session restores the file, not that `integration disable` removes it
    assert block.splitlines()[0] == SESSION_BEGIN and "integration disable" not in block
    assert "HTTPS_PROXY='http://cordon:" in block and "SSL_CERT_FILE=" in block
    assert "OPENAI_API_KEY='dummy-replaced-by-cordon'" in block
    assert not [ln for ln in block.splitlines() if ln.upper().startswith("CODEX_")]
    assert SECRET not in seen
    assert dotenv.read_bytes() == original


def test_codex_env_created_then_removed(routed: Path, home: Path, cordon_proc) -> None:  # type: ignore[no-untyped-def]
    """A project without a .codex of its own gets a Codex home under the user's (~/.codex/cordon/...):
    the session's .env lives there for the session only, and the project gets nothing."""
    r = cordon_proc("exec", "--", "sh", "-c", 'test -f "$CODEX_HOME/.env" && echo "$CODEX_HOME"',
                    env={"CORDON_TEST_REAL_KEY": SECRET}, cwd=routed)
    assert r.returncode == 0, r.stderr
    codex_home = Path(r.stdout.strip())
    assert codex_home.parent == home / ".codex" / "cordon"
    assert not (codex_home / ".env").exists()
    assert not (routed / ".codex").exists()


def test_two_concurrent_sessions_in_one_project(routed: Path) -> None:
    dotenv = routed / ".codex" / ".env"
    original = b"USER_LINE=1\n"
    write(dotenv, "").write_bytes(original)
    # files appear complete (written, then renamed): the test polls for them
    script = ('echo "$HTTPS_PROXY" > {n}.url; grep HTTPS_PROXY .codex/.env > {n}.tmp; mv {n}.tmp {n}.block; '
              'while [ ! -e go-{n} ]; do sleep 0.02; done')
    env = subprocess_env({"CORDON_TEST_REAL_KEY": SECRET})
    a = subprocess.Popen(cordon_argv("exec", "--", "sh", "-c", script.format(n="a")), cwd=routed, env=env)
    wait_for(routed / "a.block")
    b = subprocess.Popen(cordon_argv("exec", "--", "sh", "-c", script.format(n="b")), cwd=routed, env=env)
    wait_for(routed / "b.block")
    url_a, url_b = (routed / "a.url").read_text().strip(), (routed / "b.url").read_text().strip()
    assert url_a != url_b and url_a.rsplit(":", 1)[1] != url_b.rsplit(":", 1)[1]   # each its own port
    assert url_a.rsplit(":", 1)[1] in (routed / "a.block").read_text()
    assert url_b.rsplit(":", 1)[1] in (routed / "b.block").read_text()
    (routed / "go-b").touch()
    assert b.wait(timeout=30) == 0
    # b is gone: the block is a's again, a's proxy port is what the file names
    assert url_a.rsplit(":", 1)[1] in dotenv.read_text()
    assert dotenv.read_bytes().startswith(original)
    (routed / "go-a").touch()
    assert a.wait(timeout=30) == 0
    assert dotenv.read_bytes() == original


def test_sigkilled_session_is_repaired_by_the_next_command(routed: Path, home: Path) -> None:
    dotenv = routed / ".codex" / ".env"
    original = b"KEEP=1\n"
    write(dotenv, "").write_bytes(original)
    env = subprocess_env({"CORDON_TEST_REAL_KEY": SECRET})
    p = subprocess.Popen(cordon_argv("exec", "--", "sh", "-c",
                                     'echo "$SSL_CERT_FILE" > bundle; echo $$ > pid; exec sleep 60'),
                         cwd=routed, env=env)
    wait_for(routed / "pid")
    while not (routed / "pid").read_text().strip():
        time.sleep(0.02)
    session_dir = Path((routed / "bundle").read_text().strip()).parent
    assert session_dir.is_dir() and b"cordon" in dotenv.read_bytes()
    p.kill()
    p.wait()
    os.kill(int((routed / "pid").read_text()), signal.SIGKILL)     # the orphaned child
    assert session_dir.is_dir()                                      # left behind by the crash
    # any command repairs it, not only another exec
    r = subprocess.run(cordon_argv("route", "list"), cwd=routed, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert dotenv.read_bytes() == original
    assert not session_dir.exists()
    paths = Paths.from_env(dict(os.environ), routed)
    assert not [f for f in paths.sessions_dir.iterdir() if f.suffix == ".json"]


# --- nesting, preflight, zero-config ----------------------------------------------------------------

def test_nesting_reuses_the_outer_proxy(routed: Path, home: Path) -> None:
    paths = Paths.from_env(dict(os.environ), routed)
    show = f'echo "$CORDON_SESSION $HTTPS_PROXY $SSL_CERT_FILE"; ls {paths.sessions_dir}/[0-9]*.json | wc -l'
    inner = " ".join(f"'{a}'" for a in cordon_argv("exec", "--", "sh", "-c", show))
    r = subprocess.run(cordon_argv("exec", "--", "sh", "-c", f"{show}; {inner}"), cwd=routed,
                       env=subprocess_env({"CORDON_TEST_REAL_KEY": SECRET}), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    outer_line, outer_count, inner_line, inner_count = r.stdout.splitlines()
    assert outer_line == inner_line and "http://cordon:" in outer_line
    assert outer_count == inner_count == "1"                 # no second session, no second proxy


def test_preflight_names_the_route_and_the_fix(project: Path, cordon_proc) -> None:  # type: ignore[no-untyped-def]
    write(project / "cordon.toml", KEYRING_TOML)
    r = cordon_proc("exec", "--", "touch", "child-ran", cwd=project)
    assert r.returncode == 1
    assert "route 'openai'" in r.stderr and "`cordon secret set openai`" in r.stderr
    assert not (project / "child-ran").exists()
    other = write(project / "elsewhere" / "my cordon.toml", KEYRING_TOML)
    r = cordon_proc("exec", "--config", str(other), "--", "touch", "child-ran", cwd=project)
    assert r.returncode == 1
    assert f"`cordon secret set openai --config '{other}'`" in r.stderr
    assert not (project / "child-ran").exists()
    paths = Paths.from_env(dict(os.environ), project)
    assert not paths.session_root.exists() or not list(paths.session_root.iterdir())


def test_zero_config_protects_preset_variables(project: Path, cordon_proc) -> None:  # type: ignore[no-untyped-def]
    r = cordon_proc("exec", "--", "sh", "-c", 'echo "$OPENAI_API_KEY $CODEX_API_KEY"; cat /proc/$$/environ',
                    env={"OPENAI_API_KEY": SECRET}, cwd=project)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == f"{PLACEHOLDER} {PLACEHOLDER}"
    assert SECRET not in r.stdout and SECRET not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("cordon:")]
    assert len(lines) == 1 and "OPENAI_API_KEY" in lines[0] and "api.openai.com" in lines[0]


def test_no_routes_is_tunnel_only(project: Path, cordon_proc) -> None:  # type: ignore[no-untyped-def]
    r = cordon_proc("exec", "--", "sh", "-c", 'echo "$HTTPS_PROXY"', cwd=project)
    assert r.returncode == 0 and r.stdout.startswith("http://cordon:")
    assert "no routes: tunnel only" in r.stderr


def test_other_variables_holding_the_secret_are_dropped(routed: Path, cordon_proc) -> None:  # type: ignore[no-untyped-def]
    r = cordon_proc("exec", "--", "sh", "-c", 'echo "[$COPY]"', cwd=routed,
                    env={"CORDON_TEST_REAL_KEY": SECRET, "COPY": f"Bearer {SECRET}"})
    assert r.returncode == 0 and r.stdout == "[]\n"
    assert "COPY" in r.stderr and SECRET not in r.stderr


# --- the secret stays out of everything the child can see -------------------------------------------

def test_secret_absent_from_child_environ_argv_files_and_streams(routed: Path, home: Path, tmp_path: Path) -> None:
    grab = tmp_path / "grab"
    grab.mkdir()
    script = textwrap.dedent(f"""
        cat /proc/$$/environ > {grab}/environ
        cat /proc/$$/cmdline > {grab}/cmdline
        cat /proc/$PPID/cmdline > {grab}/cordon-cmdline
        cp -r "$(dirname "$SSL_CERT_FILE")" {grab}/session
        cp -r .codex {grab}/codex
        ls -ld "$(dirname "$SSL_CERT_FILE")" > {grab}/mode
        echo "$OPENAI_API_KEY"
    """)
    r = subprocess.run(cordon_argv("exec", "--log-level", "debug", "--", "sh", "-c", script), cwd=routed,
                       env=subprocess_env({"CORDON_TEST_REAL_KEY": SECRET}), capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == (PLACEHOLDER + "\n").encode()
    assert SECRET.encode() not in r.stdout + r.stderr
    env_entries = (grab / "environ").read_bytes().split(b"\0")
    assert b"CORDON_TEST_REAL_KEY=" + SECRET.encode() not in env_entries
    assert not any(e.startswith(b"CORDON_TEST_REAL_KEY=") for e in env_entries)
    assert (grab / "mode").read_text().startswith("drwx------")
    files = [p for p in grab.rglob("*") if p.is_file()]
    assert {"ca.pem", "bundle.pem"} <= {p.name for p in (grab / "session").iterdir()}
    assert len(files) >= 6
    for f in files:
        data = f.read_bytes()
        assert SECRET.encode() not in data, f
        assert b"PRIVATE KEY" not in data, f                   # the CA key never touches disk
    ca_pem = (grab / "session" / "ca.pem").read_bytes()
    assert ca_pem.count(b"BEGIN CERTIFICATE") == 1
    assert ca_pem in (grab / "session" / "bundle.pem").read_bytes() or \
        ca_pem.strip().splitlines()[1] in (grab / "session" / "bundle.pem").read_bytes()
    assert (grab / "session" / "bundle.pem").read_bytes().count(b"BEGIN CERTIFICATE") > 10   # system roots too


def test_cordon_is_not_dumpable_from_the_child(routed: Path, home: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("prctl(PR_SET_DUMPABLE) is Linux only")
    read_parent = 'cat /proc/$PPID/environ > /dev/null && echo readable || echo refused'
    wrap: list[str] = []
    if os.geteuid() == 0:
        # root reads any /proc/<pid>/environ (CAP_SYS_PTRACE); run both sides without capabilities
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root and util-linux's setpriv is missing")
        wrap = [setpriv, "--bounding-set=-all", "--"]
    env = subprocess_env({"CORDON_TEST_REAL_KEY": SECRET})
    control = subprocess.run([*wrap, "sh", "-c", f"sh -c '{read_parent}'"], capture_output=True, text=True,
                             env=env, timeout=60)
    assert control.stdout.strip() == "readable", control.stderr   # the check can see a dumpable parent
    # unconfined: the sandbox's pid namespace would hide the parent anyway (tests/security/test_confinement.py)
    r = subprocess.run([*wrap, *cordon_argv("exec", "--sandbox", "off", "--", "sh", "-c", read_parent)], cwd=routed,
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "refused"


def test_sigterm_while_starting_gives_143_and_leaves_nothing(project: Path, home: Path) -> None:
    # the secret comes from a command that blocks: cordon is still in preflight when TERM arrives
    configs.write(project / "cordon.toml", configs.openai(secret={
        "source": "command", "command": ["sh", "-c", "touch resolving; exec sleep 30"], "timeout": 60}))
    p = subprocess.Popen(cordon_argv("exec", "--", "touch", "child-ran"), cwd=project, env=subprocess_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(project / "resolving")
    p.terminate()
    _out, err = p.communicate(timeout=30)
    assert p.returncode == 143, err
    assert not (project / "child-ran").exists()
    paths = Paths.from_env(dict(os.environ), project)
    assert not paths.session_root.exists() or not list(paths.session_root.iterdir())
    assert not paths.sessions_dir.exists() or not [f for f in paths.sessions_dir.iterdir() if f.suffix == ".json"]


def test_routes_with_tls_disabled_are_refused(project: Path, cordon_proc) -> None:  # type: ignore[no-untyped-def]
    configs.write(project / "cordon.toml", configs.openai(placeholder_env=configs.CODEX_VARS),
                  tls={"enabled": False})
    r = cordon_proc("exec", "--", "touch", "child-ran", cwd=project, env={"CORDON_TEST_REAL_KEY": SECRET})
    assert r.returncode == 1 and "enabled = false" in r.stderr
    assert not (project / "child-ran").exists()
