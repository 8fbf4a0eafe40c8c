"""What the sandbox hides and the command line it builds (cordon/app/sandbox/), without running it.

The sandbox running for real, attacked: tests/security/test_confinement.py.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest

from cordon.app.sandbox import INNER, Sandbox, check_format
from cordon.app.sandbox.hidden import Mask, build_mask, bus_paths
from cordon.core.model import Auth, Config, Route, SecretSpec
from cordon.store.paths import Paths


def route(name: str, secret: SecretSpec) -> Route:
    return Route(name=name, host=f"{name}.example.com", auth=Auth(type="header", secret=secret))


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    (tmp_path / "run").mkdir()
    (tmp_path / "proj").mkdir()
    return Paths(home=home, config_home=home / ".config", runtime_dir=tmp_path / "run", cwd=tmp_path / "proj")


def test_bus_addresses() -> None:
    assert bus_paths("unix:path=/run/user/1000/bus") == (["/run/user/1000/bus"], False)
    assert bus_paths("unix:abstract=/tmp/dbus-AbC,guid=0123") == ([], True)
    assert bus_paths("unix:path=/tmp/a%20b,guid=1;tcp:host=x,port=1;unix:abstract=z") == (["/tmp/a b"], True)
    assert bus_paths("") == ([], False)


def test_every_secret_source_and_cordons_directory_are_masked(paths: Paths, tmp_path: Path) -> None:
    secret = tmp_path / "keys" / "openai.key"
    secret.parent.mkdir()
    secret.write_text("x")
    link = tmp_path / "via-link"
    link.symlink_to(secret)
    helper_input = tmp_path / "enc.gpg"
    helper_input.write_text("x")
    store = paths.home / ".password-store"
    store.mkdir()
    (paths.config_home / "op").mkdir()
    (paths.runtime_dir / "bus").write_text("")          # type: ignore[operator]
    routes = [route("f", SecretSpec(source="file", path=link)),
              route("c", SecretSpec(source="command", command=("gpg", "-d", str(helper_input), "--homedir",
                                                                str(paths.home)))),
              route("p", SecretSpec(source="command", command=("pass", "show", "openai"))),
              route("o", SecretSpec(source="1password", vault="v", item="i", field="f"))]
    env = {"HOME": str(paths.home), "OP_SESSION_my": "tok", "OP_SERVICE_ACCOUNT_TOKEN": "t", "PATH": "/bin",
           "DBUS_SESSION_BUS_ADDRESS": "unix:abstract=/tmp/dbus-x"}
    mask = build_mask(Config(routes=tuple(routes)), routes, env, paths)
    assert str(paths.cordon_home) in mask.dirs and paths.cordon_home.is_dir()     # made now, hidden
    assert str(secret) in mask.files                  # the real file behind the link
    assert str(helper_input) in mask.files            # named in a command's argv
    assert str(store) in mask.dirs and str(paths.config_home / "op") in mask.dirs
    assert str(paths.runtime_dir / "bus") in mask.files  # type: ignore[operator]
    # the home directory a command names is where the agent works: never hidden
    assert str(paths.home) not in mask.dirs
    assert mask.abstract_bus is True
    assert {"OP_SESSION_my", "OP_SERVICE_ACCOUNT_TOKEN", "DBUS_SESSION_BUS_ADDRESS"} <= set(mask.drop_env)
    assert "PATH" not in mask.drop_env


def test_nothing_the_child_works_in_is_ever_hidden(paths: Paths) -> None:
    # a `file` secret whose path is (absurdly) the project itself, or /
    routes = [route("a", SecretSpec(source="file", path=paths.cwd)), route("b", SecretSpec(source="file",
                                                                                            path=Path("/")))]
    mask = build_mask(Config(routes=tuple(routes)), routes, {}, paths)
    assert str(paths.cwd) not in mask.dirs and "/" not in mask.dirs
    assert not any(str(paths.home).startswith(d + "/") or str(paths.home) == d for d in mask.dirs)


def test_paths_inside_a_hidden_directory_need_no_mount_of_their_own(paths: Paths) -> None:
    inside = paths.cordon_home / "secret.key"
    paths.cordon_home.mkdir(parents=True)
    inside.write_text("x")
    routes = [route("a", SecretSpec(source="file", path=inside))]
    mask = build_mask(Config(routes=tuple(routes)), routes, {}, paths)
    assert str(inside) not in mask.files and str(paths.cordon_home) in mask.dirs


def box(root: bool, egress: tuple[int, ...] | None = None) -> Sandbox:
    mask = Mask(dirs=("/h/.config/cordon",), files=("/s/key",), drop_env=("DBUS_SESSION_BUS_ADDRESS",))
    return Sandbox(bwrap="/usr/bin/bwrap", env_cmd="/usr/bin/env", mask=mask, landlock=True,
                   egress_ports=egress, unshare="/usr/bin/unshare" if root else None)


def test_command_line_for_a_user_drops_every_capability() -> None:
    cmd = box(root=False).command(["codex", "exec"], expose=[("/h/.config/cordon/sessions/1.json", False)])
    assert cmd[:3] == ["/usr/bin/env", "--ignore-signal=INT,QUIT,TERM,HUP", "/usr/bin/bwrap"]
    assert cmd[-5:] == ["/usr/bin/env", "--default-signal=INT,QUIT,TERM,HUP", "--", "codex", "exec"]
    joined = " ".join(cmd)
    assert "--cap-drop ALL" in joined and "--unshare-pid --proc /proc" in joined and "--unshare-net" not in joined
    # masks first, then what is shown again inside them, then the tmpfs made read-only
    assert joined.index("--tmpfs /h/.config/cordon") < joined.index("--ro-bind /h/.config/cordon/sessions/1.json")
    assert joined.index("--ro-bind /dev/null /s/key") < joined.index("--remount-ro /h/.config/cordon")
    assert str(INNER) not in joined and "unshare --user" not in joined


def test_command_line_for_root_and_for_egress() -> None:
    cmd = box(root=True).command(["true"])
    joined = " ".join(cmd)
    assert "--cap-drop" not in joined and "--ro-bind-try /proc/sys /proc/sys" in joined
    at = cmd.index("/usr/bin/unshare")
    assert cmd[at:at + 6] == ["/usr/bin/unshare", "--user", "--keep-caps", "--", "/bin/sh", "-p"] and cmd[-1] == "true"
    cmd = box(root=True, egress=(5432,)).command(["true"], helper_fd=7, proxy_port=4000)
    joined = " ".join(cmd)
    # the listeners are made first, then root's user namespace
    assert "--unshare-net" in joined and f"{sys.executable} -I -S {INNER} 7 4000,5432 -- /usr/bin/unshare" in joined


@pytest.mark.skipif(os.geteuid() != 0, reason="sets its real uid apart from its effective one")
def test_roots_waiting_shell_never_resets_its_ids() -> None:
    """The shell starts before cordon writes its id maps: it may read its real uid (unmapped, 65534)
    before the write and its effective uid (0) after. A shell in its default mode then "drops
    privileges" to 65534 for good, and the command runs as nobody. Here the mismatch is made on
    purpose (real uid 65534, effective 0) instead of waited for."""
    import subprocess

    from cordon.app.sandbox import userns
    shell = userns.prefix("/usr/bin/unshare")[4:]          # the part after `unshare ... --`
    probe = [sys.executable, "-I", "-S", "-c", "import os; print(os.geteuid())"]
    out = subprocess.run([*shell, *probe], preexec_fn=lambda: os.setresuid(65534, 0, 0),
                         capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.strip() == "0", out


def test_child_env_drops_the_bus_and_keeps_the_rest() -> None:
    assert box(root=False).child_env({"DBUS_SESSION_BUS_ADDRESS": "x", "HOME": "/h"}) == {"HOME": "/h"}


def test_check_format_refuses_what_execve_would(tmp_path: Path) -> None:
    elf = tmp_path / "elf"
    elf.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 57)
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x7fELF-not-really")
    check_format(str(elf))
    check_format(str(script))
    check_format(str(tmp_path / "missing"))          # execve reports that one itself
    if any(n not in ("register", "status") for n in (os.listdir("/proc/sys/fs/binfmt_misc")
                                                      if os.path.isdir("/proc/sys/fs/binfmt_misc") else [])):
        pytest.skip("binfmt_misc formats are registered here: the kernel decides")
    with pytest.raises(OSError) as e:
        check_format(str(bad))
    assert e.value.errno == errno.ENOEXEC


def test_an_egress_port_out_of_range_is_a_usage_error(paths: Paths) -> None:
    from cordon.app.sandbox import choose
    from cordon.core.errors import UsageError
    with pytest.raises(UsageError) as e:
        choose("auto", "proxy", [70000], Config(), [], {"PATH": os.defpath}, paths, print)
    assert "70000" in e.value.message and e.value.exit_status == 2


def test_egress_limits_never_fall_back_silently(paths: Paths) -> None:
    from cordon.app.sandbox import SandboxUnavailable, choose
    from cordon.core.errors import UsageError
    with pytest.raises(UsageError):
        choose("off", "proxy", [], Config(), [], {"PATH": os.defpath}, paths, print)
    said: list[str] = []
    # no bwrap on this PATH: under `auto` a plain run would warn and go on; with egress limits it refuses
    with pytest.raises(SandboxUnavailable):
        choose("auto", "proxy", [], Config(), [], {"PATH": str(paths.cwd)}, paths, said.append)
    assert said == []


def test_seccomp_filter_is_well_formed() -> None:
    """Every jump lands inside the program, every path ends in a return, and only the two
    terminal-input requests are refused (walked here for each architecture's ioctl)."""
    from cordon.app.sandbox import seccomp
    prog = seccomp.PROGRAM
    assert len(seccomp.program()) == 8 * len(prog)

    def run(arch: int, nr: int, arg1: int) -> int:
        data = {seccomp.ARCH: arch, seccomp.NR: nr, seccomp.ARG1: arg1}
        pc, acc = 0, 0
        while True:
            code, jt, jf, k = prog[pc]
            if code == seccomp.RET_K:
                return k
            if code == seccomp.LD_W_ABS:
                acc, pc = data[k], pc + 1
            else:
                assert code == seccomp.JEQ_K
                pc = pc + 1 + (jt if acc == k else jf)
            assert 0 <= pc < len(prog)

    for arch, ioctl in ((seccomp.ARCH_X86_64, 16), (seccomp.ARCH_X86_64, 0x40000000 | 514),
                        (seccomp.ARCH_I386, 54), (seccomp.ARCH_AARCH64, 29)):
        assert run(arch, ioctl, seccomp.TIOCSTI) == seccomp.RET_EPERM
        assert run(arch, ioctl, seccomp.TIOCLINUX) == seccomp.RET_EPERM
        assert run(arch, ioctl, 0x5401) == seccomp.RET_ALLOW            # TCGETS: the terminal works
        assert run(arch, ioctl + 1, seccomp.TIOCSTI) == seccomp.RET_ALLOW
    assert run(0xDEAD, 16, seccomp.TIOCSTI) == seccomp.RET_ALLOW        # other architectures pass
