"""Shared fixtures: a throwaway HOME/XDG per test, in-process and subprocess cordon.

The keyring: every test gets keyrings.alt's file backend under its own HOME (no
daemon, nothing shared between tests or xdist workers; subprocesses inherit it
through PYTHON_KEYRING_BACKEND and XDG_DATA_HOME). Tests marked
`@pytest.mark.secret_service` (or asking for `keyring_session`) run against a real
gnome-keyring Secret Service instead, one per worker, and all run on one worker
(`xdist_group`), so a run starts one daemon at most.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, settings

from cordon.cli.context import Context
from cordon.cli.main import main
from cordon.store.paths import Paths

if TYPE_CHECKING:
    from tests.proxy_harness import RunningProxy
    from tests.upstream import UpstreamServer

REPO = Path(__file__).resolve().parent.parent

# A run started in the background of a non-interactive shell (`scripts/test &`) inherits SIGINT
# and SIGQUIT ignored, and so would every shell and cordon the tests start (an ignored signal
# stays ignored across exec): the tests of Ctrl-C would see it ignored. Tests run with what a
# terminal gives; a handler of our own is reset to the default in each child.
for _sig in (signal.SIGINT, signal.SIGQUIT):
    if signal.getsignal(_sig) == signal.SIG_IGN:
        signal.signal(_sig, signal.default_int_handler if _sig == signal.SIGINT else signal.SIG_DFL)

# Property tests assert results, never speed: no per-example deadline and no "too slow"
# health check, which a loaded machine running the suite in parallel would trip at random.
# the same examples on every run (a property test that finds a new case in one run and not the
# next is a flaky test); HYPOTHESIS_PROFILE=explore draws new ones, for hunting
settings.register_profile("cordon", deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
settings.register_profile("explore", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "cordon"))


@dataclass
class Result:
    status: int
    stdout: str
    stderr: str


SECRET_SERVICE_BACKEND = "keyring.backends.SecretService.Keyring"
FILE_BACKEND = "keyrings.alt.file.PlaintextKeyring"


@dataclass
class KeyringSession:
    """The keyring the tests use: a real Secret Service, or keyrings.alt's file backend.

    With the Secret Service, the session owns the `dbus-run-session` process that
    hosts gnome-keyring-daemon, and starts a new one when the daemon stops answering
    (`ensure`, before every test), so one lost daemon costs no test. Each restart is
    recorded in `restarts` and printed at the end of the run.
    """

    backend: str
    bus_address: str | None = None
    proc: subprocess.Popen[str] | None = None
    workdir: Path | None = None
    restarts: list[str] = field(default_factory=list)

    def clear(self) -> None:
        """Delete every item the last test stored (the daemon lives for the whole session).

        gnome-keyring-daemon has been seen to abort in the middle of this (a GLib
        assertion, "invoke_get_property_in_idle_cb"); a daemon lost here is the
        next `ensure`'s to replace, not the finished test's failure.
        """
        if self.bus_address is None or not _secret_service_answers(self.bus_address):
            return  # a daemon that died is replaced by the next `ensure`
        import secretstorage
        from jeepney.io.blocking import open_dbus_connection

        try:
            conn = open_dbus_connection(self.bus_address)
            try:
                for item in secretstorage.get_default_collection(conn).get_all_items():
                    item.delete()
            finally:
                conn.close()
        except Exception:
            if _secret_service_answers(self.bus_address):
                raise   # the daemon is fine: the failure is real

    def ensure(self) -> None:
        """Restart the Secret Service if it stopped answering."""
        if self.bus_address is None or _secret_service_answers(self.bus_address):
            return
        assert self.workdir is not None
        log = self.workdir / f"daemon-{len(self.restarts)}.log"
        stderr = log.read_text(errors="replace").strip() if log.exists() else ""
        self.stop()
        started = _start_secret_service(self.workdir, len(self.restarts) + 1)
        if started is None:
            raise RuntimeError("gnome-keyring's Secret Service stopped answering and could not be restarted")
        self.proc, self.bus_address = started
        self.restarts.append(stderr or "(the daemon wrote nothing to stderr)")

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        proc.stdout.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        self.proc = None


def _start_secret_service(tmp: Path, n: int = 0) -> tuple[subprocess.Popen[str], str] | None:
    """gnome-keyring-daemon's Secret Service on a private D-Bus session, headless.

    `dbus-run-session`, then an unlocked login keyring with a throwaway password
    under a throwaway HOME (the command of the project's environment notes). The
    daemon runs with --foreground, as a child of the session's shell rather than a
    daemonised orphan, and its stderr goes to `daemon-N.log`. Closing our pipe ends
    `cat`, which ends the D-Bus session and with it the daemon.
    None when that cannot run here, or a store/read round trip fails.
    """
    if os.environ.get("CORDON_TEST_KEYRING") == "file":  # force the fallback, to test it
        return None
    if not (shutil.which("dbus-run-session") and shutil.which("gnome-keyring-daemon")):
        return None
    khome = tmp / f"keyring-home-{n}"
    khome.mkdir()
    log = tmp / f"daemon-{n}.log"
    script = (f'printf pw | gnome-keyring-daemon --foreground --unlock --components=secrets '
              f'>/dev/null 2>"{log}" & '
              'echo "$DBUS_SESSION_BUS_ADDRESS"; exec cat')
    proc = subprocess.Popen(["dbus-run-session", "--", "sh", "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(khome)},
                            start_new_session=True)
    assert proc.stdout is not None
    address = proc.stdout.readline().strip()
    # The daemon starts in the background: wait until it answers, then give the round
    # trip a few tries before falling back (a loaded CI machine saw it fail once).
    if not address or not _secret_service_ready(address):
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)
        proc.stdout.close()
        return None
    return proc, address


def _secret_service_ready(address: str, tries: int = 10) -> bool:
    # Wait for the daemon to own its bus name first: a Secret Service call made
    # before that makes D-Bus start a second, locked daemon of its own (the
    # session's service files), and ours then exits with "another secret
    # service is running".
    if not _bus_name_owned(address, "org.freedesktop.secrets", timeout=5):
        return False
    for _ in range(tries):
        if _secret_service_works(address):
            return True
        time.sleep(0.5)
    return False


def _bus_name_owned(address: str, name: str, timeout: float) -> bool:
    from jeepney.bus_messages import message_bus
    from jeepney.io.blocking import open_dbus_connection

    deadline = time.monotonic() + timeout
    try:
        conn = open_dbus_connection(address)
    except Exception:
        return False
    try:
        while time.monotonic() < deadline:
            if conn.send_and_get_reply(message_bus.NameHasOwner(name)).body[0]:
                return True
            time.sleep(0.02)
        return False
    finally:
        conn.close()


def _secret_service_answers(address: str) -> bool:
    """The default collection is there and unlocked (one D-Bus round trip)."""
    try:
        import secretstorage
        from jeepney.io.blocking import open_dbus_connection

        conn = open_dbus_connection(address)
        try:
            return not secretstorage.get_default_collection(conn).is_locked()
        finally:
            conn.close()
    except Exception:
        return False


def _secret_service_works(address: str) -> bool:
    try:
        import secretstorage
        from jeepney.io.blocking import open_dbus_connection

        conn = open_dbus_connection(address)
        try:
            coll = secretstorage.get_default_collection(conn)
            item = coll.create_item("cordon-probe", {"probe": "1"}, b"x")
            ok = item.get_secret() == b"x"
            item.delete()
            return bool(ok)
        finally:
            conn.close()
    except Exception:
        return False


_KEYRING_SESSIONS: list[KeyringSession] = []


@pytest.fixture(scope="session")
def keyring_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyringSession]:
    workdir = tmp_path_factory.mktemp("secret-service")
    started = _start_secret_service(workdir)
    if started is None:
        yield KeyringSession(FILE_BACKEND)
        return
    session = KeyringSession(SECRET_SERVICE_BACKEND, started[1], started[0], workdir)
    _KEYRING_SESSIONS.append(session)
    try:
        yield session
    finally:
        session.stop()


_WORKER_RESTARTS: list[str] = []   # under xdist: the restarts the workers reported


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:       # an xdist worker: hand the restarts to the controller
        workeroutput["secret_service_restarts"] = [r for s in _KEYRING_SESSIONS for r in s.restarts]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    _WORKER_RESTARTS.extend(getattr(node, "workeroutput", {}).get("secret_service_restarts", []))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    restarts = [r for s in _KEYRING_SESSIONS for r in s.restarts] + _WORKER_RESTARTS
    for i, stderr in enumerate(restarts, 1):
        terminalreporter.write_line(
            f"note: gnome-keyring's Secret Service stopped answering and was restarted ({i}); "
            f"its stderr: {stderr}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Secret Service tests share one worker (and so one daemon) under `--dist loadgroup`.

    The long tests (marked slow) and that group run first: xdist hands tests out in this order,
    and a long one handed out last would leave the other workers idle until it ends."""
    for item in items:
        if _wants_secret_service(item):
            item.add_marker(pytest.mark.xdist_group("secret_service"))
    items.sort(key=lambda item: 0 if item.get_closest_marker("slow") else 1 if _wants_secret_service(item) else 2)


def _wants_secret_service(item: pytest.Item) -> bool:
    return (item.get_closest_marker("secret_service") is not None
            or "keyring_session" in getattr(item, "fixturenames", ()))


def _use_keyring_backend(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """PYTHON_KEYRING_BACKEND for subprocesses and cordon, and keyring's own default in this process.

    keyring keeps the backend it chose first for the whole process; a test's
    `keyring.get_password` must reach the same store as the cordon it runs.
    """
    import keyring.core

    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", name)
    monkeypatch.setattr(keyring.core, "_keyring_backend", keyring.core.load_keyring(name))


NODE_MODULES = REPO / "tests" / "node" / "node_modules"


@functools.cache
def copilot_package_cache() -> Path | None:
    """The Copilot CLI's cache with its package unpacked, made once for the whole run.

    The CLI unpacks itself (~235 MB) into $XDG_CACHE_HOME/copilot/pkg on its first run; every
    test's fresh cache links its pkg/ here instead of unpacking it again (seconds each, and two
    workers unpacking at once on a loaded machine is how a run once failed). The rest of that
    cache (the plan it was told, settings) stays the test's own. A lock lets one xdist worker
    unpack while the others wait.
    """
    exe = NODE_MODULES / ".bin" / "copilot"
    meta = NODE_MODULES / "@github" / "copilot" / "package.json"
    if not exe.exists() or not meta.exists():
        return None
    import fcntl
    import json
    root = NODE_MODULES / ".cache" / "cordon-tests"
    done = root / f"copilot-{json.loads(meta.read_text())['version']}.unpacked"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            subprocess.run([str(exe), "--version"], env={**os.environ, "HOME": str(root / "home"),
                                                        "XDG_CACHE_HOME": str(root)},
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=300, check=True)
            done.write_text("")
    return root / "copilot" / "pkg"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh HOME with XDG dirs; os.environ points at it for the test's duration.

    The keyring is keyrings.alt's file backend under this HOME; for a test marked
    `secret_service`, gnome-keyring's Secret Service when it can run here
    (emptied after each test), else that same file backend.
    """
    h = tmp_path / "home"
    (h / ".config").mkdir(parents=True)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(h / ".config"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("XDG_DATA_HOME", str(h / ".local" / "share"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(h / ".cache"))
    copilot = copilot_package_cache()
    if copilot is not None:
        (h / ".cache" / "copilot").mkdir(parents=True)
        (h / ".cache" / "copilot" / "pkg").symlink_to(copilot)
    keyring_session: KeyringSession | None = None
    if _wants_secret_service(request.node):
        keyring_session = request.getfixturevalue("keyring_session")
        keyring_session.ensure()
        if keyring_session.bus_address:
            monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", keyring_session.bus_address)
    else:
        monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    _use_keyring_backend(monkeypatch, keyring_session.backend if keyring_session else FILE_BACKEND)
    for var in ("CORDON_SESSION", "HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy",
                "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy", "SSL_CERT_FILE", "CODEX_HOME",
                "OPENAI_API_KEY", "CODEX_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY",
                "GOOGLE_API_KEY", "GITHUB_TOKEN", "GH_TOKEN", "OPENROUTER_API_KEY",
                "MISTRAL_API_KEY", "GROQ_API_KEY", "GOOGLE_GENERATIVE_AI_API_KEY",
                "OPENCODE_AUTH_CONTENT", "COPILOT_GITHUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    try:
        yield h
    finally:
        if keyring_session is not None:
            keyring_session.clear()


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


def wait_for(path: Path, timeout: float = 30) -> None:
    """Wait until the file a child writes appears: a rendezvous with the child, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear")
        time.sleep(0.02)


def write(path: Path, text: str) -> Path:
    """Write a file. A `cordon.toml` is then approved as `cordon allow` would (the user wrote it);
    tests of the approval itself write with `Path.write_text`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if path.name.endswith("cordon.toml"):
        approve_as_user(path)
    return path


def approve_as_user(path: Path, env: Mapping[str, str] | None = None) -> None:
    """`cordon allow --config path` for `env`'s HOME/XDG (default: the current test's); invalid
    files are left alone."""
    from cordon.core.errors import CordonError
    from cordon.store import approvals
    from cordon.store.config import load_config

    try:
        cfg = load_config(path, "explicit")
    except (CordonError, OSError):
        return
    home = Paths.from_env(dict(os.environ) if env is None else env).cordon_home
    if approvals.needs_approval(home, cfg):
        approvals.approve(home, cfg)


def argv_str(argv: Sequence[str]) -> str:
    return " ".join(argv)


@pytest.fixture
def up() -> Iterator[UpstreamServer]:
    """The recording HTTPS upstream, playing api.openai.com on loopback (tests/upstream.py)."""
    from tests.upstream import UpstreamServer

    with UpstreamServer("api.openai.com") as u:
        yield u


@pytest.fixture
def px(up: UpstreamServer) -> Iterator[RunningProxy]:
    """The real proxy in front of `up`, with its one route (tests/proxy_harness.py)."""
    from tests.proxy_harness import running_proxy

    with running_proxy([up.route()]) as p:
        yield p
