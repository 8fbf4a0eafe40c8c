"""A child of `cordon exec` that tries every way it knows to get the key (docs/confinement.md).

Four routes, one per secret source: `keyring` (the real Secret Service, and
keyrings.alt's file backend), `file`, `env` and `1password` (an `op` stand-in that
reads its "session" from op's config directory). Each route's upstream is a real
loopback TLS server. The child (tests/security/confinement_attack.py) asks the
keyring API, secret-tool and gdbus, walks $HOME and the secret file's path, reads
every /proc/*/environ, cmdline and mem it can open, and runs `op read`; it must
come back empty-handed, as root and as an unprivileged user, while its requests
through the proxy still get the real key injected. With `--sandbox off` the same
attempts succeed, which proves it is the sandbox that stops them.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests import configs
from tests.conftest import (
    FILE_BACKEND,
    REPO,
    SECRET_SERVICE_BACKEND,
    KeyringSession,
    cordon_argv,
    subprocess_env,
    write,
)
from tests.upstream import UpstreamServer

ATTACK = Path(__file__).with_name("confinement_attack.py")
PATTERN = r"sk-conf1ned-[0-9a-f]{16}"
SOURCES = ("keyring", "file", "env", "op")

pytestmark = pytest.mark.skipif(not (sys.platform.startswith("linux") and shutil.which("bwrap")),
                                reason="confinement needs Linux and bubblewrap (scripts/test installs it)")


def new_secret() -> str:
    return f"sk-conf1ned-{secrets.token_hex(8)}"


@dataclass
class Scene:
    """A project with one route per secret source, each to its own loopback upstream."""

    root: Path                       # everything of this scene (the user's HOME is root/home)
    project: Path
    env: dict[str, str]              # cordon's environment
    secrets: dict[str, str]
    upstreams: dict[str, UpstreamServer]
    secret_file: Path
    bus: str | None
    prefix: list[str] = field(default_factory=list)   # runs a command as the scene's user
    python: str = sys.executable                       # an interpreter that user can run

    def run(self, *args: str, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.prefix, self.python, "-m", "cordon", *args], input=input, capture_output=True,
                              text=True, env=self.env, cwd=self.project, timeout=timeout)

    def attack(self, *options: str) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
        spec = {"pattern": PATTERN, "bus": self.bus, "accounts": ["kr"], "secret_file": str(self.secret_file),
                "walk": [self.env["HOME"], str(self.secret_file.parent)],
                "hosts": sorted(self.upstreams),
                "proc_scope": "parent" if "off" in options else "all"}
        r = self.run("exec", *options, "--", self.python, str(ATTACK), json.dumps(spec))
        assert r.returncode == 0, r.stderr
        report = json.loads(r.stdout.strip().splitlines()[-1])
        return report, r

    def assert_injected(self) -> None:
        for host, up in self.upstreams.items():
            source = host.split(".")[0]
            assert up.requests, f"no request reached {host}"
            assert up.requests[-1].header("authorization") == f"Bearer {self.secrets[source]}"
            up.clear()

    def assert_no_leak(self, r: subprocess.CompletedProcess[str]) -> None:
        for value in self.secrets.values():
            assert value not in r.stderr


def chown_tree(root: Path, uid: int, gid: int) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for n in [dirpath, *(os.path.join(dirpath, x) for x in dirnames + filenames)]:
            os.chown(n, uid, gid)


def make_scene(root: Path, env: dict[str, str], bus: str | None, stack: list[UpstreamServer],
               prefix: list[str] | None = None, owner: tuple[int, int] | None = None,
               python: str = sys.executable) -> Scene:
    home = Path(env["HOME"])
    project = root / "proj"
    bindir = home / "bin"
    for d in (project, bindir, home / ".config" / "op", root / "secrets"):
        d.mkdir(parents=True, exist_ok=True)
    values = {s: new_secret() for s in SOURCES}
    secret_file = root / "secrets" / "file.key"
    secret_file.write_text(values["file"] + "\n")
    secret_file.chmod(0o600)
    # the `op` stand-in: its signed-in state lives in op's config directory, as the real one's does
    (home / ".config" / "op" / "field").write_text(values["op"])
    op = bindir / "op"
    op.write_text('#!/bin/sh\n[ "$1" = read ] || exit 2\nexec cat "$HOME/.config/op/field"\n')
    op.chmod(0o755)
    routes: list[configs.RouteSpec] = []
    upstreams: dict[str, UpstreamServer] = {}
    for source in SOURCES:
        up = UpstreamServer(f"{source}.cordon.test")
        up.start()
        stack.append(up)
        upstreams[up.host] = up
        ca = root / f"{source}-ca.pem"
        shutil.copyfile(up.ca_file, ca)          # the upstream's own copy is in root's private temp dir
        secret = {"keyring": {"source": "keyring", "account": "kr"},
                  "file": {"source": "file", "path": str(secret_file)},
                  "env": {"source": "env", "var": "CORDON_TEST_ENV_SECRET"},
                  "op": {"source": "1password", "vault": "vault", "item": "item", "field": "field"}}[source]
        routes.append(configs.RouteSpec(name=source, host=up.host, secret=secret,
                                        upstream={"address": up.address, "ca_file": str(ca)}))
    (project / "cordon.toml").write_text(configs.render(*routes))
    env = {**env, "PATH": f"{bindir}{os.pathsep}{env['PATH']}", "CORDON_TEST_ENV_SECRET": values["env"]}
    if owner is not None:
        chown_tree(root, *owner)
    sc = Scene(root=root, project=project, env=env, secrets=values, upstreams=upstreams,
               secret_file=secret_file, bus=bus, prefix=prefix or [], python=python)
    r = sc.run("secret", "set", "keyring", input=values["keyring"] + "\n")
    assert r.returncode == 0, r.stderr
    r = sc.run("allow")   # the user approves the project's cordon.toml
    assert r.returncode == 0, r.stderr
    return sc


@pytest.fixture(params=[SECRET_SERVICE_BACKEND, FILE_BACKEND], ids=["secret-service", "keyrings.alt-file"])
def root_scene(request: pytest.FixtureRequest, home: Path, tmp_path: Path,
               keyring_session: KeyringSession) -> Iterator[Scene]:
    if request.param == SECRET_SERVICE_BACKEND and keyring_session.backend != SECRET_SERVICE_BACKEND:
        pytest.skip("gnome-keyring's Secret Service cannot run here")
    env = subprocess_env({"PYTHON_KEYRING_BACKEND": request.param})
    stack: list[UpstreamServer] = []
    try:
        yield make_scene(tmp_path, env, keyring_session.bus_address, stack)
    finally:
        for up in stack:
            up.stop()


def assert_nothing_found(report: dict[str, object]) -> None:
    for attempt in ("keyring_api", "secret_tool", "files", "proc", "op"):
        assert report[attempt] == [], f"{attempt} got a secret: {report}"
    assert report["gdbus_reached"] is False, "the child reached org.freedesktop.secrets"


def confined_attack_finds_nothing(sc: Scene) -> dict[str, Any]:
    """The attack under the sandbox: every attempt empty-handed, while each route's request through
    the proxy is answered with the real key injected, and no secret in cordon's output. The child's
    report, for what else the test checks."""
    report, r = sc.attack()
    assert_nothing_found(report)
    assert report["proxy"] == dict.fromkeys(sorted(sc.upstreams), "200")
    sc.assert_injected()
    sc.assert_no_leak(r)
    return report


def test_confined_child_gets_no_secret_as_root(root_scene: Scene) -> None:
    if os.geteuid() != 0:
        pytest.skip("this variant is the root one (the unprivileged one follows)")
    report = confined_attack_finds_nothing(root_scene)
    assert report["uid"] == 0


def test_sandbox_off_gives_every_attempt_back(root_scene: Scene) -> None:
    """The control: the same attempts, unconfined, find each secret (so the sandbox is what stops them)."""
    report, _ = root_scene.attack("--sandbox", "off")
    s = root_scene.secrets
    assert s["keyring"] in report["keyring_api"]
    assert s["file"] in report["files"]
    assert s["op"] in report["op"]
    if root_scene.bus and root_scene.env["PYTHON_KEYRING_BACKEND"] == SECRET_SERVICE_BACKEND:
        assert s["keyring"] in report["secret_tool"] and report["gdbus_reached"] is True
    if os.geteuid() == 0:
        # root reads cordon's memory and environ despite PR_SET_DUMPABLE = 0
        assert {s["env"], s["keyring"], s["file"]} <= set(report["proc"])
    root_scene.assert_injected()


def test_root_cannot_unmount_what_hides_the_secrets(root_scene: Scene) -> None:
    if os.geteuid() != 0:
        pytest.skip("root only")
    d = root_scene.secret_file
    cfg = Path(root_scene.env["XDG_CONFIG_HOME"]) / "cordon"
    # root keeps its capabilities inside (in a user namespace of its own), and still cannot; nor
    # can it reach the kernel's knobs that act outside (a core_pattern runs as root out there): the
    # write puts back the current value, so a failure of this test changes nothing
    script = ("grep CapEff /proc/self/status | cut -f2 >&2; "
              "v=$(cat /proc/sys/kernel/core_pattern); "
              "{ printf '%s\\n' \"$v\" > /proc/sys/kernel/core_pattern; } 2>/dev/null && echo knob-written; "
              "test -w /sys/kernel && echo sys-writable; "
              f"umount {d} 2>/dev/null; umount -l {cfg} 2>/dev/null; "
              f"unshare -Urm sh -c 'umount -l {d}; umount -l {cfg}; cat {d}' 2>/dev/null; cat {d} 2>/dev/null; "
              f"ls -A {cfg}; exit 0")
    r = root_scene.run("exec", "--", "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    assert int(r.stderr.split()[-1], 16) & (1 << 21), "CAP_SYS_ADMIN was expected inside"
    assert root_scene.secrets["file"] not in r.stdout
    # only the session's own record and lock are shown (for a nested `cordon exec`)
    assert r.stdout.split() == ["sessions"], r.stdout


# --- as an unprivileged user ------------------------------------------------------------------------

def _python_for(user: str, uid: int, gid: int) -> str | None:
    """An interpreter the user can run with cordon's dependencies (this venv's may live under /root):
    the same minor version, for the compiled ones."""
    for cand in (os.path.realpath(sys.executable), os.path.realpath("/usr/bin/python3")):
        r = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups", "sh", "-c",
                            'test -x "$1" && "$1" -c "import sys; assert sys.version_info[:2] == ($2, $3)"', "_",
                            cand, str(sys.version_info[0]), str(sys.version_info[1])],
                           capture_output=True)
        if r.returncode == 0:
            return cand
    return None


@pytest.fixture(scope="module")
def unprivileged_user() -> Iterator[tuple[str, int, int]]:
    if os.geteuid() != 0 or not (shutil.which("useradd") and shutil.which("setpriv")):
        pytest.skip("creating a user needs root, useradd and setpriv")
    name = f"cdn{secrets.token_hex(4)}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", name], check=True, capture_output=True)
    try:
        pw = pwd.getpwnam(name)
        yield name, pw.pw_uid, pw.pw_gid
    finally:
        subprocess.run(["userdel", name], capture_output=True)


def _user_secret_service(prefix: list[str], python: str, env: dict[str, str],
                         log: Path) -> tuple[subprocess.Popen[str], str] | None:
    """The user's own gnome-keyring Secret Service on the user's own D-Bus session (as conftest starts root's)."""
    if not (shutil.which("dbus-run-session") and shutil.which("gnome-keyring-daemon")):
        return None
    script = (f'printf pw | gnome-keyring-daemon --foreground --unlock --components=secrets >/dev/null 2>"{log}" & '
              'echo "$DBUS_SESSION_BUS_ADDRESS"; exec cat')
    proc = subprocess.Popen([*prefix, "dbus-run-session", "--", "sh", "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                            start_new_session=True)
    assert proc.stdout is not None and proc.stdin is not None
    address = proc.stdout.readline().strip()
    ready = address and subprocess.run(
        [*prefix, python, "-c", "import sys; from tests.conftest import _secret_service_ready as r; "
                                "sys.exit(not r(sys.argv[1]))", address],
        env=env, capture_output=True, timeout=60).returncode == 0
    if not ready:
        proc.stdin.close()
        proc.wait(10)
        proc.stdout.close()
        return None
    return proc, address


@pytest.fixture(params=[SECRET_SERVICE_BACKEND, FILE_BACKEND], ids=["secret-service", "keyrings.alt-file"])
def user_scene(request: pytest.FixtureRequest, unprivileged_user: tuple[str, int, int]) -> Iterator[Scene]:
    name, uid, gid = unprivileged_user
    python = _python_for(name, uid, gid)
    if python is None:
        pytest.skip("no Python 3.11 the new user can run")
    root = Path(tempfile.mkdtemp(prefix="cordon-confine-"))
    home = root / "home"
    (home / ".config").mkdir(parents=True)
    (home / ".local" / "share").mkdir(parents=True)
    runtime = root / "run"
    runtime.mkdir(mode=0o700)
    os.chown(root, uid, gid)
    prefix = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups"]
    site = sysconfig.get_paths()["purelib"]
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_DATA_HOME": str(home / ".local" / "share"), "XDG_RUNTIME_DIR": str(runtime), "LANG": "C.UTF-8",
           "PYTHONPATH": f"{REPO}{os.pathsep}{site}", "PYTHON_KEYRING_BACKEND": request.param}
    chown_tree(root, uid, gid)
    service = None
    if request.param == SECRET_SERVICE_BACKEND:
        service = _user_secret_service(prefix, python, env, root / "daemon.log")
        if service is None:
            shutil.rmtree(root, ignore_errors=True)
            pytest.skip("gnome-keyring's Secret Service cannot run here as another user")
        env["DBUS_SESSION_BUS_ADDRESS"] = service[1]
    stack: list[UpstreamServer] = []
    try:
        yield make_scene(root, env, service[1] if service else None, stack, prefix=prefix, owner=(uid, gid),
                         python=python)
    finally:
        for up in stack:
            up.stop()
        if service is not None:
            proc = service[0]
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.close()
            proc.stdout.close()
            proc.wait(10)
        shutil.rmtree(root, ignore_errors=True)


def test_confined_child_gets_no_secret_as_an_unprivileged_user(user_scene: Scene) -> None:
    report = confined_attack_finds_nothing(user_scene)
    assert report["uid"] != 0


def test_sandbox_off_gives_the_unprivileged_user_its_secrets_back(user_scene: Scene) -> None:
    report, _ = user_scene.attack("--sandbox", "off")
    s = user_scene.secrets
    assert s["keyring"] in report["keyring_api"] and s["file"] in report["files"] and s["op"] in report["op"]
    if user_scene.bus:
        assert s["keyring"] in report["secret_tool"] and report["gdbus_reached"] is True
    # not dumpable: an unprivileged child cannot read cordon's memory even unconfined
    assert report["proc"] == []


# --- an abstract-socket bus: no path to mount over; Landlock's scope hides it ---------------------

@pytest.fixture
def abstract_bus(tmp_path: Path) -> Iterator[str]:
    if not shutil.which("dbus-daemon") or not shutil.which("gdbus"):
        pytest.skip("needs dbus-daemon and gdbus (scripts/test installs them)")
    proc = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1",
                             f"--address=unix:abstract=/tmp/cordon-test-{secrets.token_hex(6)}"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    address = proc.stdout.readline().strip()
    try:
        assert address.startswith("unix:abstract="), address
        yield address
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()


def test_an_abstract_socket_bus_is_out_of_reach(project: Path, home: Path, abstract_bus: str) -> None:
    from cordon.app.sandbox import landlock
    call = ["gdbus", "call", "--session", "--dest", "org.freedesktop.DBus", "--object-path",
            "/org/freedesktop/DBus", "--method", "org.freedesktop.DBus.GetId"]
    # the child puts the address back itself: dropping the variable alone would hide nothing
    script = f"DBUS_SESSION_BUS_ADDRESS='{abstract_bus}' {' '.join(call)} >/dev/null 2>&1 && echo reached || echo cut"
    env = subprocess_env({"DBUS_SESSION_BUS_ADDRESS": abstract_bus})
    off = subprocess.run(cordon_argv("exec", "--sandbox", "off", "--", "sh", "-c", script), cwd=project, env=env,
                         capture_output=True, text=True, timeout=60)
    assert off.stdout.split()[-1] == "reached", off.stderr
    r = subprocess.run(cordon_argv("exec", "--", "sh", "-c", script), cwd=project, env=env,
                       capture_output=True, text=True, timeout=60)
    if landlock.abi() < landlock.SCOPE_ABI:
        # no way to hide it: auto says so and runs unconfined; required refuses
        assert "abstract socket" in r.stderr and "running unconfined" in r.stderr
        return
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == "cut"


# --- when confinement is unavailable ----------------------------------------------------------------

def _path_without_bwrap(tmp_path: Path) -> str:
    """PATH with every tool but bwrap: links to each directory's commands except bwrap."""
    keep = tmp_path / "no-bwrap-bin"
    keep.mkdir()
    for d in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            target = keep / name
            if name != "bwrap" and not target.exists():
                target.symlink_to(os.path.join(d, name))
    return str(keep)


def read_secret_file(project: Path, env: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cordon_argv("exec", *options, "--", "cat", str(project / "secret.key")), cwd=project,
                          env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def file_routed(project: Path) -> Path:
    (project / "secret.key").write_text("sk-file-route-0123456789\n")
    (project / "secret.key").chmod(0o600)
    configs.write(project / "cordon.toml",
                  configs.openai(secret={"source": "file", "path": str(project / "secret.key")}))
    return project


def test_without_bwrap_auto_warns_once_and_required_refuses(file_routed: Path, tmp_path: Path) -> None:
    env = subprocess_env({"PATH": _path_without_bwrap(tmp_path)})
    r = read_secret_file(file_routed, env)
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if "unconfined" in line]
    assert warnings == ["cordon: warning: running unconfined: bubblewrap (bwrap) is not on PATH; to confine it: "
                        "install it (Debian/Ubuntu: apt install bubblewrap; Fedora: dnf install bubblewrap), "
                        "or pass --sandbox off (or set [exec] sandbox = \"off\") to run unconfined"]
    assert "sk-file-route-0123456789" in r.stdout       # it really ran unconfined
    r = read_secret_file(file_routed, env, "--sandbox", "required")
    assert r.returncode == 1
    assert r.stderr.splitlines()[-2:] == [
        "cordon: error: bubblewrap (bwrap) is not on PATH",
        "hint: install it (Debian/Ubuntu: apt install bubblewrap; Fedora: dnf install bubblewrap), "
        "or pass --sandbox off (or set [exec] sandbox = \"off\") to run unconfined"]
    assert "sk-file-route" not in r.stdout               # the command never ran


def test_a_bwrap_that_cannot_make_namespaces_is_reported(file_routed: Path, tmp_path: Path) -> None:
    """What a kernel without unprivileged user namespaces does to bwrap, played by a stand-in."""
    bindir = tmp_path / "fake-bwrap"
    bindir.mkdir()
    fake = bindir / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    env = subprocess_env({"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"})
    write(file_routed / "cordon.toml", (file_routed / "cordon.toml").read_text()
          + '\n[exec]\nsandbox = "required"\n')
    r = read_secret_file(file_routed, env)
    assert r.returncode == 1
    assert ("cordon: error: bubblewrap cannot create the sandbox here "
            "(bwrap: No permissions to create new namespace)") in r.stderr
    assert "hint: allow unprivileged user namespaces" in r.stderr
    assert "sk-file-route" not in r.stdout


def test_config_sandbox_off_and_the_flag_over_it(file_routed: Path) -> None:
    env = subprocess_env()
    assert "sk-file-route-0123456789" not in read_secret_file(file_routed, env).stdout
    write(file_routed / "cordon.toml", (file_routed / "cordon.toml").read_text()
          + '\n[exec]\nsandbox = "off"\n')
    assert "sk-file-route-0123456789" in read_secret_file(file_routed, env).stdout
    assert "sk-file-route-0123456789" not in read_secret_file(file_routed, env, "--sandbox", "auto").stdout


def test_nested_exec_inside_a_confined_session_reuses_its_proxy(file_routed: Path) -> None:
    inner = f"{sys.executable} -m cordon exec -- sh -c 'echo \"$CORDON_SESSION $HTTPS_PROXY\"'"
    r = subprocess.run(cordon_argv("exec", "--sandbox", "required", "--", "sh", "-c",
                                   f"echo \"$CORDON_SESSION $HTTPS_PROXY\"; {inner}"),
                       cwd=file_routed, env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    outer, nested = r.stdout.splitlines()
    assert outer == nested and outer.split()[0]          # same session, same proxy
    assert "sk-file-route" not in r.stdout + r.stderr


# --- egress -------------------------------------------------------------------------------------------

EGRESS_PROBE = textwrap.dedent("""\
    import socket, subprocess, sys
    def reach(port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            return "open"
        except OSError as e:
            return type(e).__name__
    direct, listed = int(sys.argv[1]), int(sys.argv[2])
    via = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", sys.argv[3]],
                         capture_output=True, text=True).stdout
    print(reach(direct), reach(listed), via)
    """)


def test_egress_proxy_lets_only_the_proxy_and_listed_ports_through(project: Path, tmp_path: Path) -> None:
    with UpstreamServer("api.openai.com") as up, UpstreamServer("127.0.0.1", tls=False) as listed:
        route = configs.openai(env="CORDON_TEST_SECRET", upstream=up)
        configs.write(project / "cordon.toml", route)
        probe = tmp_path / "probe.py"
        probe.write_text(EGRESS_PROBE)
        env = subprocess_env({"CORDON_TEST_SECRET": "sk-egress-secret-42"})

        def run(*options: str) -> list[str]:
            r = subprocess.run(cordon_argv("exec", *options, "--", sys.executable, str(probe), str(up.port),
                                           str(listed.port), "https://api.openai.com/json"),
                               cwd=project, env=env, capture_output=True, text=True, timeout=90)
            assert r.returncode == 0, r.stderr
            return r.stdout.split()

        # without egress limits the upstream's port is directly reachable (the control)
        assert run() == ["open", "open", "200"]
        direct, listed_port, via = run("--egress", "proxy", "--egress-port", str(listed.port))
        assert direct == "ConnectionRefusedError"         # nothing listens there inside the sandbox
        assert listed_port == "open" and via == "200"
        assert up.requests[-1].header("authorization") == "Bearer sk-egress-secret-42"
        # the same from [exec], with no listed port: only the proxy
        configs.write(project / "cordon.toml", route, exec={"egress": "proxy"})
        assert run() == ["ConnectionRefusedError", "ConnectionRefusedError", "200"]


def test_sockets_that_run_commands_outside_are_hidden(file_routed: Path, tmp_path: Path) -> None:
    """A terminal multiplexer's server (here tmux's socket, where TMUX_TMPDIR puts it) runs what it is
    asked to outside the sandbox; the child must not reach it."""
    import socket as socketlib
    tmux_dir = tmp_path / "tmux-tmp" / f"tmux-{os.geteuid()}"
    tmux_dir.mkdir(parents=True)
    server = socketlib.socket(socketlib.AF_UNIX)
    server.bind(str(tmux_dir / "default"))
    server.listen()
    probe = (f"import socket; s = socket.socket(socket.AF_UNIX)\n"
             f"try:\n    s.connect({str(tmux_dir / 'default')!r}); print('reached')\n"
             f"except OSError as e:\n    print('cut', e.errno)\n")
    env = subprocess_env({"TMUX_TMPDIR": str(tmp_path / "tmux-tmp"), "TMUX": f"{tmux_dir}/default,1,0"})
    try:
        def run(*options: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(cordon_argv("exec", *options, "--", sys.executable, "-c", probe),
                                  cwd=file_routed, env=env, capture_output=True, text=True, timeout=60)
        assert run("--sandbox", "off").stdout.split()[0] == "reached"
        r = run()
        assert r.returncode == 0, r.stderr
        assert r.stdout.split()[0] == "cut"
    finally:
        server.close()


@pytest.mark.parametrize("user_scene", [FILE_BACKEND], indirect=True, ids=["keyrings.alt-file"])
def test_an_agents_own_bubblewrap_runs_inside_for_a_user(user_scene: Scene) -> None:
    """What Claude Code's sandbox runs (its bwrap flags), nested in cordon's, as a normal user."""
    nested = ("bwrap --bind / / --dev /dev --unshare-user --unshare-pid --unshare-net --proc /proc "
              "--new-session --die-with-parent -- sh -c 'echo nested-ok'")
    r = user_scene.run("exec", "--sandbox", "required", "--", "sh", "-c", nested)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["nested-ok"]


def test_root_keeps_its_powers_over_its_own_files(file_routed: Path) -> None:
    """Confined root still does root's ordinary work: files of any owner (apt, tar, a project
    mounted from a user's home), processes it starts."""
    if os.geteuid() != 0:
        pytest.skip("root only")
    script = ("touch owned && chown 12345:23456 owned && stat -c '%u:%g' owned && "
              "echo hi > owned && chmod 000 owned && cat owned && id -u")
    r = subprocess.run(cordon_argv("exec", "--sandbox", "required", "--", "sh", "-c", script), cwd=file_routed,
                       env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["12345:23456", "hi", "0"]
    assert (file_routed / "owned").stat().st_uid == 12345          # the same ids outside


INJECT = ("import fcntl, termios\n"
          "try:\n    fcntl.ioctl(0, termios.TIOCSTI, b'#'); print('injected')\n"
          "except OSError as e:\n    print('refused', e.errno)\n")


def test_the_child_cannot_type_into_the_terminal(file_routed: Path) -> None:
    """TIOCSTI would queue input for the shell that reads the terminal after cordon exits, outside
    the sandbox (bubblewrap's CVE-2017-5226); the seccomp filter refuses it, the terminal stays."""
    import termios

    import pexpect
    if not hasattr(termios, "TIOCSTI"):
        pytest.skip("no TIOCSTI here")

    def run(*options: str) -> str:
        argv = cordon_argv("exec", *options, "--", sys.executable, "-c", INJECT)
        child = pexpect.spawn(argv[0], argv[1:], cwd=str(file_routed), env=subprocess_env(), encoding="utf-8",
                              timeout=60)
        child.expect(pexpect.EOF)
        child.close()
        return str(child.before)

    off = run("--sandbox", "off")
    if "refused" in off:
        pytest.skip("this kernel refuses TIOCSTI anyway (dev.tty.legacy_tiocsti = 0)")
    assert "injected" in off
    assert "refused 1" in run("--sandbox", "required")
