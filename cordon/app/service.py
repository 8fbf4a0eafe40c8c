"""Run `cordon start` as a user service: a systemd user unit or a launchd agent.

Rendering is pure (`render_systemd_unit`, `render_launchd_plist`: a spec in,
text out). The managers drive `systemctl --user` / `launchctl` through an
injected command runner and never print. Where no user service manager runs (a
container, CI) every operation raises `NoServiceManager`, one line that
suggests `cordon start` instead of a traceback or an obscure D-Bus error.
"""

from __future__ import annotations

import os
import plistlib
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cordon.core.errors import CordonError, UsageError
from cordon.store.atomic import atomic_write
from cordon.store.paths import Paths, namespace_for

UNIT_PREFIX = "cordon-"
# Our own launchd label, not Codezero's `io.codezero.cordon.<name>`: the two tools
# can be installed side by side, and `cordon service uninstall` must never boot out
# an agent it did not create. `local.` is the prefix no vendor owns (RFC 6762),
# the usual choice for agents that do not ship from a vendor's domain.
LABEL_PREFIX = "local.cordon."

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class NoServiceManager(CordonError):
    """No user service manager is reachable here (container, CI, SSH without a user bus)."""


# ---------------------------------------------------------------- names

def validate_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise UsageError(f"service name '{name}' is not valid",
                         "use letters, digits, '.', '_' and '-' (at most 100), starting with a letter or digit")
    return name


def _sanitize(name: str) -> str:
    """A directory name made fit for a unit name or a label (spaces, unicode → '_')."""
    s = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip("._-") or "project"
    return s[:80]


def default_name(paths: Paths, config_path: Path) -> str:
    """Cordon's per-scope name: `user` for the user config, else `<dirname>-<hash8>`."""
    if config_path.resolve() == paths.user_config.resolve():
        return "user"
    ns = namespace_for(config_path.parent)
    dirname, _, digest = ns.rpartition("-")
    return f"{_sanitize(dirname)}-{digest}"


def unit_name(name: str) -> str:
    return f"{UNIT_PREFIX}{name}.service"


def launchd_label(name: str) -> str:
    return f"{LABEL_PREFIX}{name}"


# ---------------------------------------------------------------- the spec and its renderings

@dataclass(frozen=True)
class ServiceSpec:
    """Everything a rendered unit or plist depends on (no I/O to build one from this)."""

    name: str
    config_path: Path                          # absolute
    python: str                                # absolute interpreter path
    working_dir: Path
    environment: tuple[tuple[str, str], ...] = ()
    log_path: Path | None = None               # launchd only; systemd logs go to the journal

    @property
    def argv(self) -> list[str]:
        return [self.python, "-m", "cordon", "start", "--config", str(self.config_path)]


def _cordon_import_root() -> Path:
    return Path(__file__).resolve().parent.parent


def service_environment(env: Mapping[str, str], import_root: Path | None = None,
                        python_paths: Sequence[str] | None = None) -> tuple[tuple[str, str], ...]:
    """Variables the service needs from the installing shell.

    PATH so `op` and `command` secrets are found (a service starts with a bare
    PATH); XDG_CONFIG_HOME when set, since the CA and tokens live under it;
    PYTHONPATH only when cordon runs from a checkout the interpreter cannot import.
    """
    out: list[tuple[str, str]] = []
    if env.get("PATH"):
        out.append(("PATH", env["PATH"]))
    if env.get("XDG_CONFIG_HOME"):
        out.append(("XDG_CONFIG_HOME", env["XDG_CONFIG_HOME"]))
    root = import_root or _cordon_import_root()
    if python_paths is None:
        python_paths = [p for p in (sysconfig.get_paths().get("purelib"), sysconfig.get_paths().get("platlib")) if p]
    if not any(Path(p).resolve() == root for p in python_paths):
        out.append(("PYTHONPATH", str(root)))
    return tuple(out)


def build_spec(paths: Paths, env: Mapping[str, str], name: str, config_path: Path,
               platform: str = sys.platform, python: str = sys.executable) -> ServiceSpec:
    config_path = config_path.resolve()
    log = paths.home / "Library" / "Logs" / "cordon" / f"{name}.log" if platform == "darwin" else None
    return ServiceSpec(name=validate_name(name), config_path=config_path, python=python,
                       working_dir=config_path.parent, environment=service_environment(env),
                       log_path=log)


def _check_line(value: str, what: str) -> str:
    if any(c in value for c in "\r\n\x00"):
        raise CordonError(f"{what} contains a line break: {value!r}",
                          "move the file to a path without control characters")
    return value


def _systemd_quote(arg: str, *, exec_line: bool) -> str:
    """One word for ExecStart= / Environment= (systemd.syntax(7) quoting, % and $ escaped)."""
    _check_line(arg, "a service argument")
    s = arg.replace("%", "%%")
    if exec_line:
        s = s.replace("$", "$$")
    if s and not re.search(r"[\s\"'\\;]", s):
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_systemd_unit(spec: ServiceSpec) -> str:
    """A systemd user unit: restart on failure, started with the user manager (login)."""
    exec_start = " ".join(_systemd_quote(a, exec_line=True) for a in spec.argv)
    env_lines = "".join(f"Environment={_systemd_quote(f'{k}={v}', exec_line=False)}\n"
                        for k, v in spec.environment)
    return (
        "# Written by `cordon service install`; `cordon service uninstall` removes it.\n"
        "[Unit]\n"
        f"Description=cordon credential proxy ({spec.name})\n"
        # give up after 5 crashes in a minute instead of looping forever on a bad config
        "StartLimitIntervalSec=60\n"
        "StartLimitBurst=5\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"ExecStart={exec_start}\n"
        # a path setting takes the rest of the line verbatim: no quotes, only % escaped
        f"WorkingDirectory={_check_line(str(spec.working_dir), 'the directory').replace('%', '%%')}\n"
        f"{env_lines}"
        "Restart=on-failure\n"
        "RestartSec=2\n"
        "TimeoutStopSec=15\n"
        # no NoNewPrivileges=: the 1Password CLI is setgid (onepassword-cli) for its app integration
        "UMask=0077\n"
        "\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


def render_launchd_plist(spec: ServiceSpec) -> bytes:
    """A launchd user agent: RunAtLoad (login), KeepAlive only after an unsuccessful exit."""
    plist: dict[str, object] = {
        "Label": launchd_label(spec.name),
        "ProgramArguments": spec.argv,
        "WorkingDirectory": str(spec.working_dir),
        "EnvironmentVariables": dict(spec.environment),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 5,
        "Umask": 0o077,
    }
    if spec.log_path is not None:
        plist["StandardOutPath"] = str(spec.log_path)
        plist["StandardErrorPath"] = str(spec.log_path)
    return plistlib.dumps(plist, sort_keys=False)


def config_from_unit(text: str) -> Path | None:
    """The --config path of a rendered unit (to map an installed service to its scope)."""
    for line in text.splitlines():
        if line.startswith("ExecStart="):
            try:
                argv = shlex.split(line[len("ExecStart="):].replace("$$", "$").replace("%%", "%"))
            except ValueError:
                return None
            if "--config" in argv and argv.index("--config") + 1 < len(argv):
                return Path(argv[argv.index("--config") + 1])
    return None


def config_from_plist(data: bytes) -> Path | None:
    try:
        argv = plistlib.loads(data).get("ProgramArguments", [])
    except Exception:  # a damaged plist is reported as "no config", not a crash
        return None
    if isinstance(argv, list) and "--config" in argv and argv.index("--config") + 1 < len(argv):
        return Path(str(argv[argv.index("--config") + 1]))
    return None


# ---------------------------------------------------------------- running the managers

@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


class Runner(Protocol):
    def __call__(self, argv: Sequence[str]) -> CommandResult: ...


def subprocess_runner(env: Mapping[str, str], timeout: float = 30.0) -> Runner:
    def run(argv: Sequence[str]) -> CommandResult:
        try:
            p = subprocess.run(list(argv), capture_output=True, text=True, env=dict(env),
                               timeout=timeout, check=False)
        except FileNotFoundError:
            return CommandResult(127, "", f"{argv[0]}: not found")
        except subprocess.TimeoutExpired:
            return CommandResult(124, "", f"{argv[0]} did not answer within {timeout:.0f} s")
        return CommandResult(p.returncode, p.stdout, p.stderr)
    return run


@dataclass(frozen=True)
class ServiceState:
    name: str
    manager: str                    # "systemd" | "launchd"
    unit: str                       # unit name or launchd label
    path: Path                      # the unit file / plist
    installed: bool
    enabled: bool
    active: bool
    state: str                      # manager's word: active, inactive, failed, running, not loaded...
    pid: int | None
    config_path: Path | None


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _no_manager_message(what: str, config_path: Path | None) -> str:
    start = f"cordon start --config {shlex.quote(str(config_path))}" if config_path else "cordon start"
    return (f"no user service manager is running here ({what}); "
            f"run the proxy in the foreground with `{start}` instead")


class Systemd:
    kind = "systemd"

    def __init__(self, paths: Paths, env: Mapping[str, str], run: Runner | None = None) -> None:
        self.paths = paths
        self.env = env
        self.run = run or subprocess_runner(env)
        self.unit_dir = paths.config_home / "systemd" / "user"

    def path_for(self, name: str) -> Path:
        return self.unit_dir / unit_name(name)

    def render(self, spec: ServiceSpec) -> bytes:
        return render_systemd_unit(spec).encode()

    def config_of(self, path: Path) -> Path | None:
        try:
            return config_from_unit(path.read_text(encoding="utf-8"))
        except OSError:
            return None

    def ensure_available(self, config_path: Path | None = None) -> None:
        if shutil.which("systemctl", path=self.env.get("PATH")) is None:
            raise NoServiceManager(_no_manager_message("systemctl is not installed", config_path))
        r = self._systemctl("show-environment")
        if r.returncode != 0:
            why = _first_line(r.stderr) or "systemctl --user failed"
            raise NoServiceManager(_no_manager_message(f"systemctl --user: {why}", config_path))

    def _systemctl(self, *args: str) -> CommandResult:
        return self.run(["systemctl", "--user", *args])

    def _must(self, *args: str) -> None:
        r = self._systemctl(*args)
        if r.returncode != 0:
            unit = args[-1]
            raise CordonError(f"`systemctl --user {' '.join(args)}` failed: "
                              f"{_first_line(r.stderr) or f'exit status {r.returncode}'}",
                              f"see `journalctl --user -u {unit}` and `systemctl --user status {unit}`")

    def install(self, spec: ServiceSpec) -> Path:
        path = self.path_for(spec.name)
        atomic_write(path, self.render(spec), mode=0o644)
        unit = unit_name(spec.name)
        self._must("daemon-reload")
        self._must("enable", unit)
        self._must("restart", unit)   # starts it, or picks up a changed unit on reinstall
        return path

    def uninstall(self, name: str) -> Path:
        path = self.path_for(name)
        unit = unit_name(name)
        self._systemctl("disable", "--now", unit)   # may already be stopped or unloaded
        path.unlink(missing_ok=True)
        self._must("daemon-reload")
        self._systemctl("reset-failed", unit)
        return path

    def start(self, name: str) -> None:
        self._must("start", unit_name(name))

    def stop(self, name: str) -> None:
        self._must("stop", unit_name(name))

    def state(self, name: str) -> ServiceState:
        path = self.path_for(name)
        unit = unit_name(name)
        r = self._systemctl("show", unit, "--property=LoadState,ActiveState,SubState,MainPID,UnitFileState")
        props = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
        pid = int(props.get("MainPID", "0") or 0)
        active = props.get("ActiveState", "inactive")
        return ServiceState(name=name, manager=self.kind, unit=unit, path=path, installed=path.is_file(),
                            enabled=props.get("UnitFileState") == "enabled", active=active == "active",
                            state=active if path.is_file() else "not installed",
                            pid=pid or None, config_path=self.config_of(path))

    def installed_names(self) -> list[str]:
        if not self.unit_dir.is_dir():
            return []
        return sorted(p.name[len(UNIT_PREFIX):-len(".service")]
                      for p in self.unit_dir.glob(f"{UNIT_PREFIX}*.service"))


class Launchd:
    kind = "launchd"

    def __init__(self, paths: Paths, env: Mapping[str, str], run: Runner | None = None,
                 uid: int | None = None) -> None:
        self.paths = paths
        self.env = env
        self.run = run or subprocess_runner(env)
        self.domain = f"gui/{os.getuid() if uid is None else uid}"
        self.agent_dir = paths.home / "Library" / "LaunchAgents"

    def path_for(self, name: str) -> Path:
        return self.agent_dir / f"{launchd_label(name)}.plist"

    def render(self, spec: ServiceSpec) -> bytes:
        return render_launchd_plist(spec)

    def config_of(self, path: Path) -> Path | None:
        try:
            return config_from_plist(path.read_bytes())
        except OSError:
            return None

    def ensure_available(self, config_path: Path | None = None) -> None:
        if shutil.which("launchctl", path=self.env.get("PATH")) is None:
            raise NoServiceManager(_no_manager_message("launchctl is not installed", config_path))
        r = self._launchctl("print", self.domain)
        if r.returncode != 0:
            raise NoServiceManager(_no_manager_message(f"no launchd session {self.domain}", config_path))

    def _launchctl(self, *args: str) -> CommandResult:
        return self.run(["launchctl", *args])

    def _must(self, *args: str) -> None:
        r = self._launchctl(*args)
        if r.returncode != 0:
            raise CordonError(f"`launchctl {' '.join(args)}` failed: "
                              f"{_first_line(r.stderr) or f'exit status {r.returncode}'}",
                              "see the log under ~/Library/Logs/cordon/ and `launchctl print "
                              f"{self.domain}/<label>`")

    def _loaded(self, name: str) -> CommandResult:
        return self._launchctl("print", f"{self.domain}/{launchd_label(name)}")

    def install(self, spec: ServiceSpec) -> Path:
        path = self.path_for(spec.name)
        if spec.log_path is not None:
            spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, self.render(spec), mode=0o644)
        target = f"{self.domain}/{launchd_label(spec.name)}"
        if self._loaded(spec.name).returncode == 0:
            self._must("bootout", target)      # reload a changed plist
        self._must("enable", target)
        self._must("bootstrap", self.domain, str(path))
        return path

    def uninstall(self, name: str) -> Path:
        path = self.path_for(name)
        if self._loaded(name).returncode == 0:
            self._must("bootout", f"{self.domain}/{launchd_label(name)}")
        path.unlink(missing_ok=True)
        return path

    def start(self, name: str) -> None:
        if self._loaded(name).returncode == 0:
            self._must("kickstart", f"{self.domain}/{launchd_label(name)}")
        else:
            self._must("bootstrap", self.domain, str(self.path_for(name)))

    def stop(self, name: str) -> None:
        # bootout keeps the plist: like `systemctl stop`, it comes back at the next login
        if self._loaded(name).returncode == 0:
            self._must("bootout", f"{self.domain}/{launchd_label(name)}")

    def state(self, name: str) -> ServiceState:
        path = self.path_for(name)
        r = self._loaded(name)
        state, pid = ("not loaded", None)
        if r.returncode == 0:
            m = re.search(r"^\s*state = (\S+)", r.stdout, re.M)
            state = m.group(1) if m else "loaded"
            p = re.search(r"^\s*pid = (\d+)", r.stdout, re.M)
            pid = int(p.group(1)) if p else None
        if not path.is_file():
            state = "not installed"
        return ServiceState(name=name, manager=self.kind, unit=launchd_label(name), path=path,
                            installed=path.is_file(), enabled=path.is_file() and r.returncode == 0,
                            active=state == "running", state=state, pid=pid,
                            config_path=self.config_of(path))

    def installed_names(self) -> list[str]:
        if not self.agent_dir.is_dir():
            return []
        return sorted(p.name[len(LABEL_PREFIX):-len(".plist")]
                      for p in self.agent_dir.glob(f"{LABEL_PREFIX}*.plist"))


Manager = Systemd | Launchd


def manager_for(paths: Paths, env: Mapping[str, str], platform: str = sys.platform,
                run: Runner | None = None) -> Manager:
    if platform == "darwin":
        return Launchd(paths, env, run)
    if platform.startswith("linux"):
        return Systemd(paths, env, run)
    raise NoServiceManager(_no_manager_message(f"no service support on {platform}", None))


def manager_or_none(paths: Paths, env: Mapping[str, str]) -> Manager | None:
    """The platform's service manager, or None where there is none (status/doctor just skip services)."""
    try:
        return manager_for(paths, env)
    except NoServiceManager:
        return None


# ---------------------------------------------------------------- operations

def install_warnings(manager: Manager, spec: ServiceSpec, env_secret_vars: Sequence[tuple[str, str]],
                     listen: int, listen_of: Callable[[Path], int | None]) -> list[str]:
    """Things that would make the service fail or collide, said before it is installed."""
    out: list[str] = []
    for route, var in env_secret_vars:
        out.append(f"route '{route}' reads its secret from ${var}, which a service does not inherit; "
                   f"store it with `cordon secret set {route}` (keyring) instead")
    for other in manager.installed_names():
        if other == spec.name:
            continue
        cfg = manager.config_of(manager.path_for(other))
        if cfg is not None and cfg.resolve() != spec.config_path and listen_of(cfg) == listen:
            out.append(f"service '{other}' ({cfg}) also listens on port {listen}; "
                       "give one of them another `listen` port")
    return out


def require_installed(manager: Manager, name: str) -> None:
    if not manager.path_for(name).is_file():
        names = manager.installed_names()
        listed = ", ".join(names) if names else "none"
        raise CordonError(f"no cordon service named '{name}' is installed (installed: {listed})",
                          f"install it with `cordon service install {name} --config PATH`")


def select_target(paths: Paths, name: str | None, config_path: Path | None) -> tuple[str, Path]:
    """(service name, config path): NAME when given, else the scope's default name.

    `config_path` None (nothing found yet) means the project scope of the working
    directory, so `cordon service status` still names the service it would install.
    """
    cfg = (config_path or paths.cwd / "cordon.toml").absolute()
    return (validate_name(name) if name else default_name(paths, cfg)), cfg


def names_for_config(manager: Manager, config_path: Path) -> list[str]:
    """Installed services running this config (any name), e.g. `api-b` for ~/b/cordon.toml."""
    want = config_path.resolve()
    out = []
    for name in manager.installed_names():
        cfg = manager.config_of(manager.path_for(name))
        if cfg is not None and cfg.resolve() == want:
            out.append(name)
    return out
