"""`cordon service`: the rendered unit and plist, names, and the managers' command sequences.

systemd and launchd do not run here; `systemd-analyze verify` checks the unit
offline, and a stand-in `systemctl`/`launchctl` on PATH records what cordon asks
of them (the managers are not the thing under test; cordon's use of them is).
"""

from __future__ import annotations

import os
import plistlib
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cordon.app.service import (
    Launchd,
    ServiceSpec,
    Systemd,
    build_spec,
    config_from_plist,
    config_from_unit,
    default_name,
    launchd_label,
    render_launchd_plist,
    render_systemd_unit,
    service_environment,
    unit_name,
    validate_name,
)
from cordon.store.paths import Paths, namespace_for
from tests import configs
from tests.conftest import write

OPENAI = configs.openai(keyring="openai")
CONFIG = configs.render(OPENAI, listen=6790)

ENV_ROUTE = configs.render(configs.openai(name="gh", host="api.github.com", env="GH_REAL"), listen=6790)


def _spec(tmp_path: Path, config_dir: str = "my proj %h $HOME") -> ServiceSpec:
    cfg = tmp_path / config_dir / "cordon.toml"
    return ServiceSpec(name="my-proj-1234abcd", config_path=cfg, python=sys.executable,
                       working_dir=cfg.parent,
                       environment=(("PATH", "/usr/bin:/bin"), ("XDG_CONFIG_HOME", str(tmp_path / "x y"))),
                       log_path=tmp_path / "log" / "x.log")


def _verify(unit_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", str(unit_file)], capture_output=True, text=True,
                          timeout=60)


def _verify_problems(unit_file: Path) -> list[str]:
    """systemd-analyze exits 0 on many bad lines (it only warns): read its messages too."""
    r = _verify(unit_file)
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if unit_file.name in ln or "Failed" in ln]
    if r.returncode != 0:
        lines.append(f"exit status {r.returncode}")
    return lines


needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")


@needs_analyze
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    spec.working_dir.mkdir(parents=True)
    unit = tmp_path / "units" / unit_name(spec.name)
    write(unit, render_systemd_unit(spec))
    assert _verify_problems(unit) == []


@needs_analyze
def test_the_verify_check_catches_a_broken_unit(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    spec.working_dir.mkdir(parents=True)
    unit = tmp_path / "units" / unit_name(spec.name)
    write(unit, render_systemd_unit(spec).replace("Restart=on-failure", "Restart=sometimes"))
    assert _verify_problems(unit)
    write(unit, render_systemd_unit(spec).replace(sys.executable, "/nonexistent/python"))
    assert _verify_problems(unit)


def test_unit_restarts_on_failure_and_starts_with_the_session(tmp_path: Path) -> None:
    text = render_systemd_unit(_spec(tmp_path))
    assert "Restart=on-failure\n" in text
    assert "WantedBy=default.target\n" in text
    assert "ExecStart=" in text and " -m cordon start --config " in text


def test_unit_quoting_round_trips_the_config_path(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    text = render_systemd_unit(spec)
    # systemd would expand %h and $HOME: both must be escaped
    assert "%%h" in text and "$$HOME" in text
    assert config_from_unit(text) == spec.config_path
    assert f'Environment="XDG_CONFIG_HOME={tmp_path}/x y"' in text


def test_a_path_with_a_newline_is_refused(tmp_path: Path) -> None:
    from cordon.core.errors import CordonError
    with pytest.raises(CordonError, match="line break"):
        render_systemd_unit(_spec(tmp_path, "bad\ndir"))


def test_plist_parses_with_the_expected_keys(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    data = plistlib.loads(render_launchd_plist(spec))
    assert data["Label"] == "local.cordon.my-proj-1234abcd" == launchd_label(spec.name)
    assert data["ProgramArguments"] == [sys.executable, "-m", "cordon", "start", "--config",
                                        str(spec.config_path)]
    assert data["RunAtLoad"] is True
    assert data["KeepAlive"] == {"SuccessfulExit": False}   # restart only after a failure
    assert data["WorkingDirectory"] == str(spec.working_dir)
    assert data["EnvironmentVariables"]["PATH"] == "/usr/bin:/bin"
    assert data["StandardErrorPath"] == str(spec.log_path)
    assert config_from_plist(render_launchd_plist(spec)) == spec.config_path


def test_default_names_follow_cordon(tmp_path: Path) -> None:
    paths = Paths.from_env({"HOME": str(tmp_path / "h")}, cwd=tmp_path)
    assert default_name(paths, paths.user_config) == "user"
    proj = tmp_path / "shop"
    proj.mkdir()
    assert default_name(paths, proj / "cordon.toml") == namespace_for(proj)
    assert default_name(paths, proj / "cordon.toml").startswith("shop-")
    odd = tmp_path / "my dir é"
    odd.mkdir()
    name = default_name(paths, odd / "cordon.toml")
    assert validate_name(name) == name and name.endswith(namespace_for(odd)[-9:])


@pytest.mark.parametrize("bad", ["../x", "a b", "", "-x", "x/y", "a" * 101])
def test_bad_names_are_refused(bad: str) -> None:
    from cordon.core.errors import UsageError
    with pytest.raises(UsageError):
        validate_name(bad)


def test_pythonpath_only_when_cordon_is_not_installed(tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    env = service_environment({"PATH": "/bin"}, import_root=root, python_paths=[str(tmp_path / "site")])
    assert ("PYTHONPATH", str(root)) in env
    env = service_environment({"PATH": "/bin"}, import_root=root, python_paths=[str(root)])
    assert all(k != "PYTHONPATH" for k, _ in env)


# ---------------------------------------------------------------- no service manager here

def _user_manager_running() -> bool:
    if shutil.which("systemctl") is None:
        return False
    r = subprocess.run(["systemctl", "--user", "show-environment"], capture_output=True, timeout=30)
    return r.returncode == 0


@pytest.mark.skipif(not sys.platform.startswith("linux") or _user_manager_running(),
                    reason="a user service manager is running")
@pytest.mark.parametrize("action", ["install", "uninstall", "start", "stop", "status"])
def test_without_a_service_manager_every_subcommand_says_so(project: Path, cordon_proc, action: str) -> None:  # type: ignore[no-untyped-def]
    write(project / "cordon.toml", CONFIG)
    r = cordon_proc("service", action)
    assert r.returncode == 1
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "no user service manager is running here" in lines[0]
    assert "cordon start" in lines[0]
    assert "Traceback" not in r.stderr


def test_without_systemctl_at_all(project: Path, cordon, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    if not sys.platform.startswith("linux"):
        pytest.skip("linux")
    write(project / "cordon.toml", CONFIG)
    monkeypatch.setenv("PATH", str(project / "empty-bin"))
    r = cordon("service", "install")
    assert r.status == 1
    assert "systemctl is not installed" in r.stderr and "cordon start --config" in r.stderr


def test_install_print_needs_no_manager(project: Path, cordon) -> None:  # type: ignore[no-untyped-def]
    write(project / "cordon.toml", CONFIG)
    r = cordon("service", "install", "--print")
    assert r.status == 0
    if sys.platform == "darwin":
        assert plistlib.loads(r.stdout.encode())["Label"].startswith("local.cordon.")
    else:
        assert f"--config {project / 'cordon.toml'}" in r.stdout
        assert f"Description=cordon credential proxy ({namespace_for(project)})" in r.stdout


# ---------------------------------------------------------------- systemd, with a stand-in systemctl

FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >> "$FAKE_LOG"
case "$2" in
  show-environment) echo "HOME=$HOME"; exit 0 ;;
  show) echo "LoadState=loaded"; echo "ActiveState=${FAKE_ACTIVE:-active}"; echo "SubState=running";
        echo "MainPID=4242"; echo "UnitFileState=enabled"; exit 0 ;;
  restart|start|stop|enable|daemon-reload|reset-failed) exit ${FAKE_RC:-0} ;;
  disable) exit 0 ;;
esac
exit 0
"""


@pytest.fixture
def fake_systemctl(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    if not sys.platform.startswith("linux"):
        pytest.skip("systemd is Linux only")
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    exe = bindir / "systemctl"
    exe.write_text(FAKE_SYSTEMCTL)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "systemctl.log"
    log.touch()
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(log))
    return log


def test_install_writes_the_unit_and_enables_it(project: Path, home: Path, cordon, fake_systemctl: Path) -> None:  # type: ignore[no-untyped-def]
    write(project / "cordon.toml", CONFIG)
    name = namespace_for(project)
    r = cordon("service", "install")
    assert r.status == 0, r.stderr
    unit = home / ".config" / "systemd" / "user" / f"cordon-{name}.service"
    assert unit.is_file()
    assert config_from_unit(unit.read_text()) == project / "cordon.toml"
    calls = fake_systemctl.read_text().splitlines()
    i = calls.index("--user daemon-reload")
    assert calls[i:i + 3] == ["--user daemon-reload", f"--user enable cordon-{name}.service",
                              f"--user restart cordon-{name}.service"]
    assert f"installed service '{name}'" in r.stdout and "active (pid 4242)" in r.stdout

    r = cordon("service", "status")
    assert r.status == 0 and name in r.stdout and str(project / "cordon.toml") in r.stdout
    r = cordon("service", "stop")
    assert r.status == 0 and f"--user stop cordon-{name}.service" in fake_systemctl.read_text().splitlines()
    r = cordon("service", "uninstall")
    assert r.status == 0, r.stderr
    assert not unit.exists()
    assert f"--user disable --now cordon-{name}.service" in fake_systemctl.read_text()


def test_named_instances_side_by_side(project: Path, home: Path, tmp_path: Path, cordon,  # type: ignore[no-untyped-def]
                                      fake_systemctl: Path) -> None:
    write(project / "cordon.toml", CONFIG)
    other = write(tmp_path / "other" / "cordon.toml", configs.render(OPENAI, listen=6791))
    assert cordon("service", "install", "api-a").status == 0
    r = cordon("service", "install", "api-b", "--config", str(other))
    assert r.status == 0 and "warning" not in r.stderr
    unit_dir = home / ".config" / "systemd" / "user"
    assert sorted(p.name for p in unit_dir.iterdir()) == ["cordon-api-a.service", "cordon-api-b.service"]
    r = cordon("service", "status")
    assert "api-a" in r.stdout and "api-b" in r.stdout and str(other) in r.stdout
    # a third on the same port as api-a is installed, with a warning naming the clash
    third = write(tmp_path / "third" / "cordon.toml", CONFIG)
    r = cordon("service", "install", "api-c", "--config", str(third))
    assert r.status == 0 and "service 'api-a'" in r.stderr and "port 6790" in r.stderr


def test_install_warns_about_env_secrets(project: Path, cordon, fake_systemctl: Path) -> None:  # type: ignore[no-untyped-def]
    write(project / "cordon.toml", ENV_ROUTE)
    r = cordon("service", "install")
    assert r.status == 0
    assert "route 'gh' reads its secret from $GH_REAL" in r.stderr


def test_install_refuses_a_missing_or_broken_config(project: Path, home: Path, cordon, fake_systemctl: Path) -> None:  # type: ignore[no-untyped-def]
    r = cordon("service", "install")
    assert r.status == 1 and "no such file" in r.stderr
    write(project / "cordon.toml", "listen = \n")
    r = cordon("service", "install")
    assert r.status == 1 and "invalid TOML" in r.stderr
    assert not (home / ".config" / "systemd" / "user").exists()


def test_a_failing_systemctl_is_reported_with_the_journal_hint(project: Path, cordon, fake_systemctl: Path,  # type: ignore[no-untyped-def]
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    write(project / "cordon.toml", CONFIG)
    monkeypatch.setenv("FAKE_RC", "1")
    r = cordon("service", "install")
    assert r.status == 1
    assert "systemctl --user daemon-reload` failed" in r.stderr
    assert "journalctl --user -u" in r.stderr


def test_operations_on_an_unknown_name(project: Path, cordon, fake_systemctl: Path) -> None:  # type: ignore[no-untyped-def]
    r = cordon("service", "start", "nope")
    assert r.status == 1 and "no cordon service named 'nope'" in r.stderr


def test_status_of_a_failed_service_exits_1(project: Path, cordon, fake_systemctl: Path,  # type: ignore[no-untyped-def]
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    write(project / "cordon.toml", CONFIG)
    assert cordon("service", "install").status == 0
    monkeypatch.setenv("FAKE_ACTIVE", "failed")
    r = cordon("service", "status", namespace_for(project))
    assert r.status == 1 and "failed" in r.stdout


def test_systemd_state_reads_the_manager(tmp_path: Path) -> None:
    from cordon.app.service import CommandResult
    calls: list[list[str]] = []

    def run(argv):  # type: ignore[no-untyped-def]
        calls.append(list(argv))
        return CommandResult(0, "ActiveState=inactive\nMainPID=0\nUnitFileState=disabled\n", "")

    paths = Paths.from_env({"HOME": str(tmp_path)}, cwd=tmp_path)
    st = Systemd(paths, {}, run).state("x")
    assert (st.installed, st.active, st.enabled, st.pid, st.state) == (False, False, False, None, "not installed")


# ---------------------------------------------------------------- launchd, with a recording runner

def test_launchd_install_bootstraps_the_agent(tmp_path: Path) -> None:
    from cordon.app.service import CommandResult
    calls: list[list[str]] = []
    loaded: set[str] = set()

    def run(argv):  # type: ignore[no-untyped-def]
        calls.append(list(argv))
        if argv[1] == "print":
            target = argv[2]
            if target.count("/") == 1 or target in loaded:
                return CommandResult(0, "state = running\npid = 77\n", "")
            return CommandResult(113, "", "Could not find service")
        if argv[1] == "bootstrap":
            loaded.add(f"{argv[2]}/{Path(argv[3]).stem}")
        if argv[1] == "bootout":
            loaded.discard(argv[2])
        return CommandResult(0, "", "")

    paths = Paths.from_env({"HOME": str(tmp_path)}, cwd=tmp_path)
    mgr = Launchd(paths, {}, run, uid=501)
    spec = build_spec(paths, {"PATH": "/usr/bin"}, "user", paths.user_config, platform="darwin")
    path = mgr.install(spec)
    assert path == tmp_path / "Library" / "LaunchAgents" / "local.cordon.user.plist"
    assert plistlib.loads(path.read_bytes())["Label"] == "local.cordon.user"
    assert ["launchctl", "bootstrap", "gui/501", str(path)] in calls
    st = mgr.state("user")
    assert st.active and st.pid == 77 and st.config_path == paths.user_config.resolve()
    assert mgr.installed_names() == ["user"]
    mgr.stop("user")
    assert ["launchctl", "bootout", "gui/501/local.cordon.user"] in calls
    assert not mgr.state("user").active
    mgr.uninstall("user")
    assert not path.exists()


def test_status_and_doctor_find_a_named_service_of_the_scope(project: Path, cordon, fake_systemctl: Path) -> None:  # type: ignore[no-untyped-def]
    import json
    write(project / "cordon.toml", CONFIG)
    assert cordon("service", "install", "api-a").status == 0
    r = cordon("status", "--json")
    scopes = json.loads(r.stdout)["scopes"]
    assert len(scopes) == 1
    assert scopes[0]["service"] == {"name": "api-a", "manager": "systemd", "installed": True, "active": True,
                                    "state": "active", "pid": 4242, "note": None}
    r = cordon("doctor", "--json", "--no-probes")
    svc = next(c for c in json.loads(r.stdout)["checks"] if c["id"] == "service")
    assert svc["status"] == "ok" and "service 'api-a'" in svc["message"]
