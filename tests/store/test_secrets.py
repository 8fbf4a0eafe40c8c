"""Secret sources against real backends: the Secret Service keyring, real files and processes.

The 1Password CLI is not installed here; a small script stands in for `op`
(it is the thing cordon talks to, not the thing under test) and records its argv.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cordon.core.errors import SecretError
from cordon.core.model import Auth, Route, Secret, SecretSpec
from cordon.proxy.secretcache import SecretCache
from cordon.store.secrets import (
    SecretResolver,
    delete_keyring_secret,
    fix_hint,
    get_keyring_secret,
    set_keyring_secret,
)
from tests.conftest import (
    SECRET_SERVICE_BACKEND,
    KeyringSession,
    _secret_service_answers,
    _secret_service_works,
    _start_secret_service,
)

SECRET = "sk-test-9f8e7d6c5b4a"


def route(spec: SecretSpec, name: str = "svc") -> Route:
    return Route(name=name, host="api.example.com",
                 auth=Auth(type="header", header_name="Authorization", scheme="Bearer", secret=spec))


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


# --- the Secret type ---------------------------------------------------------------------------

def test_secret_is_redacted_everywhere() -> None:
    s = Secret(SECRET)
    assert SECRET not in repr(s) and SECRET not in str(s) and SECRET not in f"{s}" and SECRET not in f"{s!r}"
    assert SECRET not in repr([s]) and SECRET not in repr({"k": s})
    assert s.reveal() == SECRET


# --- env ---------------------------------------------------------------------------------------

def test_env_source() -> None:
    r = route(SecretSpec(source="env", var="MY_KEY"))
    assert SecretResolver({"MY_KEY": f"  {SECRET}\n"}).resolve(r).reveal() == SECRET


def test_env_missing_names_route_variable_and_fix() -> None:
    r = route(SecretSpec(source="env", var="MY_KEY"), name="openai")
    with pytest.raises(SecretError) as e:
        SecretResolver({}).resolve(r)
    assert "openai" in e.value.message and "MY_KEY" in e.value.message
    assert e.value.hint == "export MY_KEY before starting cordon"


def test_a_value_with_a_line_break_is_refused() -> None:
    r = route(SecretSpec(source="env", var="MY_KEY"))
    with pytest.raises(SecretError, match="line break"):
        SecretResolver({"MY_KEY": "abc\r\nX-Evil: 1"}).resolve(r)


def test_env_is_a_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"MY_KEY": "one"}
    res = SecretResolver(env)
    env["MY_KEY"] = "two"
    assert res.resolve(route(SecretSpec(source="env", var="MY_KEY"))).reveal() == "one"


# --- file --------------------------------------------------------------------------------------

def test_file_source_trims_and_rereads(tmp_path: Path) -> None:
    f = tmp_path / "key"
    f.write_text(SECRET + "\n")
    f.chmod(0o600)
    res = SecretResolver({})
    r = route(SecretSpec(source="file", path=f))
    assert res.resolve(r).reveal() == SECRET
    f.write_text("rotated\n")
    assert res.resolve(r).reveal() == "rotated"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    f = tmp_path / "key"
    f.write_text(SECRET)
    f.chmod(mode)
    with pytest.raises(SecretError) as e:
        SecretResolver({}).resolve(route(SecretSpec(source="file", path=f)))
    assert "group or others" in e.value.message and f"{mode:04o}" in e.value.message
    assert e.value.hint == f"run `chmod 600 {f}`"
    assert SECRET not in e.value.message


def test_file_missing(tmp_path: Path) -> None:
    f = tmp_path / "nope"
    with pytest.raises(SecretError, match="does not exist") as e:
        SecretResolver({}).resolve(route(SecretSpec(source="file", path=f)))
    assert str(f) in (e.value.hint or "")


def test_empty_file_is_missing(tmp_path: Path) -> None:
    f = tmp_path / "key"
    f.write_text("\n")
    f.chmod(0o600)
    with pytest.raises(SecretError, match="empty"):
        SecretResolver({}).resolve(route(SecretSpec(source="file", path=f)))


# --- command -----------------------------------------------------------------------------------

def counting_command(tmp_path: Path, value: str = SECRET) -> tuple[tuple[str, ...], Path]:
    count = tmp_path / "count"
    s = script(tmp_path / "get-secret", f'echo x >> "{count}"\nprintf "  %s\\n\\n" "{value}"\n')
    return (str(s),), count


def runs(count: Path) -> int:
    return len(count.read_text().splitlines()) if count.exists() else 0


def test_command_stdout_is_trimmed(tmp_path: Path) -> None:
    argv, _ = counting_command(tmp_path)
    assert SecretResolver(os.environ).resolve(route(SecretSpec(source="command", command=argv))).reveal() == SECRET


def test_command_argv_is_not_a_shell(tmp_path: Path) -> None:
    r = route(SecretSpec(source="command", command=("printf", "%s", "a b; echo pwned")))
    assert SecretResolver(os.environ).resolve(r).reveal() == "a b; echo pwned"


def test_the_resolver_reads_every_time_and_ttl_zero_runs_every_time(tmp_path: Path) -> None:
    argv, count = counting_command(tmp_path)
    r = route(SecretSpec(source="command", command=argv, ttl=300))
    SecretResolver(os.environ).resolve(r)
    SecretResolver(os.environ).resolve(r)
    assert runs(count) == 2      # the reader has no cache: SecretCache is the one
    res = SecretCache(SecretResolver(os.environ))
    r = route(SecretSpec(source="command", command=argv, ttl=0))
    res.resolve(r)
    res.resolve(r)
    assert runs(count) == 4


def test_command_ttl_caches_until_expiry_or_invalidate(tmp_path: Path) -> None:
    argv, count = counting_command(tmp_path)
    now = [1000.0]
    res = SecretCache(SecretResolver(os.environ), clock=lambda: now[0])
    r = route(SecretSpec(source="command", command=argv, ttl=60))
    res.resolve(r)
    now[0] += 59
    res.resolve(r)
    assert runs(count) == 1
    now[0] += 2
    res.resolve(r)
    assert runs(count) == 2
    res.invalidate("other-route")
    res.resolve(r)
    assert runs(count) == 2
    res.invalidate("svc")
    res.resolve(r)
    assert runs(count) == 3
    res.invalidate()
    res.resolve(r)
    assert runs(count) == 4


def test_concurrent_resolves_run_the_command_once(tmp_path: Path) -> None:
    count = tmp_path / "count"
    s = script(tmp_path / "slow", f'echo x >> "{count}"\nsleep 0.3\necho {SECRET}\n')
    res = SecretCache(SecretResolver(os.environ))
    r = route(SecretSpec(source="command", command=(str(s),), ttl=300))
    with ThreadPoolExecutor(8) as pool:
        values = list(pool.map(lambda _: res.resolve(r).reveal(), range(8)))
    assert values == [SECRET] * 8
    assert runs(count) == 1


def test_command_failure_does_not_show_its_stderr(tmp_path: Path) -> None:
    s = script(tmp_path / "leaky", f'echo "partial {SECRET}" >&2\nexit 3\n')
    with pytest.raises(SecretError) as e:
        SecretResolver(os.environ).resolve(route(SecretSpec(source="command", command=(str(s),))))
    assert "status 3" in e.value.message
    assert SECRET not in e.value.message and SECRET not in (e.value.hint or "")


def test_command_timeout(tmp_path: Path) -> None:
    s = script(tmp_path / "hang", "exec sleep 30\n")
    with pytest.raises(SecretError, match=r"timed out after 0\.3s"):
        SecretResolver(os.environ).resolve(route(SecretSpec(source="command", command=(str(s),), timeout=0.3)))


def test_command_timeout_ends_its_children_too(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    s = script(tmp_path / "spawner", f'sleep 600 &\necho $! > "{pidfile}"\nwait\n')
    with pytest.raises(SecretError, match="timed out"):
        SecretResolver(os.environ).resolve(route(SecretSpec(source="command", command=(str(s),), timeout=0.5)))
    pid = int(pidfile.read_text())

    def gone() -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        return state in ("Z", "X")   # killed; waiting for whoever adopted it to reap it

    for _ in range(200):
        if gone():
            break
        time.sleep(0.05)
    assert gone(), "the command's child outlived the timeout"


def test_command_not_found() -> None:
    with pytest.raises(SecretError, match="not found"):
        SecretResolver({"PATH": "/nonexistent"}).resolve(
            route(SecretSpec(source="command", command=("no-such-secret-tool",))))


def test_command_gets_a_minimal_environment_plus_its_env_names(tmp_path: Path) -> None:
    code = "import os; print(os.environ['VAULT_TOKEN_X'], os.environ.get('OTHER', '-'), os.environ['HOME'])"
    r = route(SecretSpec(source="command", command=(sys.executable, "-c", code), env=("VAULT_TOKEN_X",)))
    env = dict(os.environ, VAULT_TOKEN_X="from-env", OTHER="not-passed")
    assert SecretResolver(env).resolve(r).reveal() == f"from-env - {os.environ['HOME']}"


# --- 1password (through a stand-in `op`) ---------------------------------------------------------

@pytest.fixture
def fake_op(tmp_path: Path) -> Path:
    """An `op` that records argv and answers like op 2.x: the value, or an error on stderr."""
    log = tmp_path / "op-argv"
    (tmp_path / "bin").mkdir()
    return script(tmp_path / "bin" / "op", f'''
printf '%s\\n' "$@" >> "{log}"
echo --- >> "{log}"
case "$OP_FAKE_MODE" in
  signed-out) echo "[ERROR] 2024/05/01 10:00:00 You are not currently signed in." \\
      "Please run \\`op signin --help\\` for instructions" >&2; exit 1;;
  no-item) echo "[ERROR] 2024/05/01 10:00:00 \\"Stripe\\" isn't an item in the \\"Eng\\" vault." >&2; exit 1;;
  hang) exec sleep 30;;
esac
printf '%s' "{SECRET}"
''')


def op_route(**kw: object) -> Route:
    spec = SecretSpec(source="1password", vault="Eng", item="Stripe Key", field="secret_key", **kw)  # type: ignore[arg-type]
    return route(spec, name="stripe")


def test_op_read_argv_and_value(fake_op: Path) -> None:
    res = SecretResolver({"PATH": os.defpath}, op_path=str(fake_op))
    assert res.resolve(op_route(account="my-team")).reveal() == SECRET
    argv = (fake_op.parent.parent / "op-argv").read_text().split("---\n")[0].splitlines()
    assert argv == ["read", "--no-newline", "op://Eng/Stripe Key/secret_key", "--account", "my-team"]


def test_op_found_on_path_and_cached_until_invalidated(fake_op: Path) -> None:
    res = SecretCache(SecretResolver({"PATH": f"{fake_op.parent}:{os.defpath}"}))
    r = op_route()
    res.resolve(r)
    res.resolve(r)
    log = fake_op.parent.parent / "op-argv"
    assert log.read_text().count("---") == 1
    res.invalidate("stripe")
    res.resolve(r)
    assert log.read_text().count("---") == 2


def test_op_missing(tmp_path: Path) -> None:
    with pytest.raises(SecretError) as e:
        SecretResolver({"PATH": str(tmp_path)}).resolve(op_route())
    assert "1Password CLI" in e.value.message and "not found" in e.value.message
    assert "[[secrets.providers]]" in (e.value.hint or "")
    with pytest.raises(SecretError, match="/opt/nowhere/op was not found"):
        SecretResolver({"PATH": str(tmp_path)}, op_path="/opt/nowhere/op").resolve(op_route())


def test_op_not_signed_in(fake_op: Path) -> None:
    res = SecretResolver({"PATH": os.defpath, "OP_FAKE_MODE": "signed-out"}, op_path=str(fake_op))
    with pytest.raises(SecretError) as e:
        res.resolve(op_route())
    assert "not signed in" in e.value.message and "stripe" in e.value.message
    assert "op signin" in (e.value.hint or "")


def test_op_other_error_is_shown(fake_op: Path) -> None:
    res = SecretResolver({"PATH": os.defpath, "OP_FAKE_MODE": "no-item"}, op_path=str(fake_op))
    with pytest.raises(SecretError, match="isn't an item") as e:
        res.resolve(op_route())
    assert "vault, item and field" in (e.value.hint or "")


def test_op_timeout(fake_op: Path) -> None:
    res = SecretResolver({"PATH": os.defpath, "OP_FAKE_MODE": "hang"}, op_path=str(fake_op))
    with pytest.raises(SecretError, match=r"timed out after 0\.3s"):
        res.resolve(op_route(timeout=0.3))


# --- keyring (the real Secret Service) ------------------------------------------------------------------

def test_tests_use_the_secret_service_when_it_can_run(keyring_session: KeyringSession) -> None:
    if shutil.which("gnome-keyring-daemon") and shutil.which("dbus-run-session") and \
            os.environ.get("CORDON_TEST_KEYRING") != "file":
        assert keyring_session.backend == SECRET_SERVICE_BACKEND
        assert keyring_session.bus_address



def _daemon_pids(root: int) -> list[int]:
    """gnome-keyring-daemon processes among the descendants of `root`."""
    children: dict[int, list[int]] = {}
    comm: dict[int, str] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat_line = (d / "stat").read_text()
        except OSError:
            continue
        name = stat_line[stat_line.index("(") + 1:stat_line.rindex(")")]
        ppid = int(stat_line[stat_line.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d.name))
        comm[int(d.name)] = name
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            todo.append(child)
            if comm[child].startswith("gnome-keyring"):
                found.append(child)
    return found


@pytest.mark.secret_service
def test_a_secret_service_that_dies_is_restarted_before_the_next_test(tmp_path: Path) -> None:
    """The fixture's own guard: a lost daemon is replaced, not left to fail every later test."""
    started = _start_secret_service(tmp_path)
    if started is None:
        pytest.skip("gnome-keyring's Secret Service cannot run here")
    ks = KeyringSession(SECRET_SERVICE_BACKEND, started[1], started[0], tmp_path)
    try:
        assert ks.proc is not None
        pids = _daemon_pids(ks.proc.pid)
        assert len(pids) == 1, "the daemon stays inside the session's process tree"
        old_address = ks.bus_address
        os.kill(pids[0], signal.SIGKILL)
        deadline = time.monotonic() + 5
        while old_address and _secret_service_answers(old_address) and time.monotonic() < deadline:
            time.sleep(0.05)
        ks.clear()   # a test's teardown with the daemon gone: nothing to clear, no error
        ks.ensure()
        assert len(ks.restarts) == 1 and ks.bus_address != old_address
        assert ks.bus_address and _secret_service_works(ks.bus_address)
    finally:
        ks.stop()

@pytest.mark.secret_service
def test_keyring_round_trip(home: Path) -> None:
    spec = SecretSpec(source="keyring", account="openai")
    r = route(spec, name="openai")
    res = SecretCache(SecretResolver(os.environ))
    with pytest.raises(SecretError) as e:
        res.resolve(r)
    assert "no secret stored in keyring cordon/openai" in e.value.message
    assert e.value.hint == "run `cordon secret set openai`" == fix_hint(r)
    set_keyring_secret(spec, SECRET + "\n", os.environ)
    assert get_keyring_secret(spec, os.environ) == SECRET
    assert res.resolve(r).reveal() == SECRET
    set_keyring_secret(spec, "rotated", os.environ)
    assert res.resolve(r).reveal() == SECRET  # cached ...
    res.invalidate("openai")
    assert res.resolve(r).reveal() == "rotated"  # ... until invalidated
    delete_keyring_secret(spec, os.environ)
    assert get_keyring_secret(spec, os.environ) is None
    with pytest.raises(SecretError, match="nothing stored"):
        delete_keyring_secret(spec, os.environ)


@pytest.mark.secret_service
def test_keyring_custom_service(home: Path) -> None:
    spec = SecretSpec(source="keyring", account="github.com", service="gh:github.com")
    set_keyring_secret(spec, SECRET, os.environ)
    assert get_keyring_secret(SecretSpec(source="keyring", account="github.com"), os.environ) is None
    assert SecretResolver(os.environ).resolve(route(spec)).reveal() == SECRET


@pytest.mark.secret_service
def test_keyring_go_keyring_decode(home: Path) -> None:
    import base64

    import keyring

    keyring.set_password("cordon", "gk", "go-keyring-base64:" + base64.b64encode(SECRET.encode()).decode())
    keyring.set_password("cordon", "gh", "go-keyring-encoded:" + SECRET.encode().hex())
    res = SecretResolver(os.environ)
    assert res.resolve(route(SecretSpec(source="keyring", account="gk", decode="go-keyring"))).reveal() == SECRET
    assert res.resolve(route(SecretSpec(source="keyring", account="gh", decode="go-keyring"))).reveal() == SECRET
    raw = res.resolve(route(SecretSpec(source="keyring", account="gk"), name="raw")).reveal()
    assert raw.startswith("go-keyring-base64:")


@pytest.mark.secret_service
def test_set_refuses_other_sources_and_bad_values(home: Path) -> None:
    with pytest.raises(SecretError, match="not the keyring"):
        set_keyring_secret(SecretSpec(source="env", var="X"), SECRET, os.environ)
    spec = SecretSpec(source="keyring", account="x")
    with pytest.raises(SecretError, match="empty"):
        set_keyring_secret(spec, "  \n", os.environ)
    with pytest.raises(SecretError, match="line break"):
        set_keyring_secret(spec, "a\nb", os.environ)


def test_unknown_keyring_backend_is_a_clear_error() -> None:
    spec = SecretSpec(source="keyring", account="x")
    with pytest.raises(SecretError, match=r"PYTHON_KEYRING_BACKEND=no\.such\.Backend"):
        SecretResolver({"PYTHON_KEYRING_BACKEND": "no.such.Backend"}).resolve(route(spec))


def test_check_reports_every_route(home: Path, tmp_path: Path) -> None:
    ok = route(SecretSpec(source="env", var="A"), name="a")
    missing_env = route(SecretSpec(source="env", var="B"), name="b")
    missing_kr = route(SecretSpec(source="keyring", account="c"), name="c")
    results = SecretResolver({**os.environ, "A": "x"}).check([ok, missing_env, missing_kr])
    assert [(r.name, e is None) for r, e in results] == [("a", True), ("b", False), ("c", False)]
    assert "cordon secret set c" in (results[2][1].hint or "")  # type: ignore[union-attr]


def test_secret_file_mode_check_uses_the_open_file(tmp_path: Path) -> None:
    # a 0600 file behind a symlink is fine; the mode checked is the target's
    f = tmp_path / "real"
    f.write_text(SECRET)
    f.chmod(0o600)
    link = tmp_path / "link"
    link.symlink_to(f)
    assert SecretResolver({}).resolve(route(SecretSpec(source="file", path=link))).reveal() == SECRET
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
