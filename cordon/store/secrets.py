"""Resolve route secrets from their sources: keyring, 1Password, env, file, command.

Blocking by nature (keyring, subprocesses): callers on an event loop run these
in a worker thread. Never logs or returns a value except as a `Secret`, and no
error message carries one. `keyring` is imported lazily (it costs ~70 ms).

Interface (other code relies on these names):
    SecretResolver(env, op_path=None)      a `cordon.core.model.SecretReader`
        .resolve(route) -> Secret          raises SecretError (names route + fix)
        .check(routes) -> list[tuple[Route, SecretError | None]]   all failures together
    set_keyring_secret(spec, value) / delete_keyring_secret(spec)
    fix_hint(route) -> str                 e.g. "run `cordon secret set openai`"

No caching here: every `resolve` reads the source (`env` is a snapshot taken
at construction). The one cache, with what makes a value stale (`ttl` of a
`command`, a changed file, `cordon secret set`), is
`cordon.proxy.secretcache.SecretCache`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import selectors
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from cordon.core.errors import SecretError
from cordon.core.model import Route, Secret, SecretSpec

# phrases of `op` errors that mean "sign in first" (op 2.x)
OP_NOT_SIGNED_IN = ("not currently signed in", "not signed in", "session expired", "signin",
                    "authorization prompt dismissed", "no accounts configured")


def fix_hint(route: Route) -> str:
    s = route.auth.secret
    if s.source == "keyring":
        return f"run `cordon secret set {route.name}`"
    if s.source == "env":
        return f"export {s.var} before starting cordon"
    if s.source == "file":
        return f"write the secret to {s.path} (mode 0600)"
    if s.source == "1password":
        return "sign in with `op signin` and check vault/item/field in cordon.toml"
    if s.source == "login":
        return f"run `cordon login {s.account}`"
    return "check that the command in cordon.toml prints the secret"


def no_keyring_hint(route_name: str) -> str:
    """Three ways to give a route its secret where there is no OS keyring, ready to paste."""
    var = re.sub(r"[^A-Z0-9]+", "_", route_name.upper()).strip("_") + "_REAL_KEY"
    return (f"no OS keyring here; any one of these works for route '{route_name}':\n"
            f"  1. from the environment: `cordon route edit {route_name} --source env --var {var}`, "
            f"then `export {var}=...` in the shell that runs cordon\n"
            f"  2. from a file: `cordon route edit {route_name} --source file "
            f"--path ~/.config/cordon/{route_name}.key`, then write the key alone into that file "
            f"(`chmod 600` it)\n"
            f"  3. a headless keyring: `dbus-run-session -- $SHELL`, in it "
            f"`printf '' | gnome-keyring-daemon --unlock --components=secrets`, then "
            f"`cordon secret set {route_name}`, and run cordon from that shell")


def _clean(value: str, what: str, hint: str) -> Secret:
    """Trim surrounding whitespace; refuse what cannot go into a header (RFC 9110 §5.5)."""
    v = value.strip()
    if not v:
        raise SecretError(f"{what} is empty", hint)
    if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in v):
        raise SecretError(f"{what} contains a line break or control character, which cannot go into a header",
                          "store the secret again without it")
    return Secret(v)


# --- keyring ---------------------------------------------------------------------------------

_backends: dict[str, Any] = {}
_backends_lock = threading.Lock()


def _keyring_backend(env: Mapping[str, str] | None) -> Any:
    """The keyring backend: PYTHON_KEYRING_BACKEND from `env` if set, else keyring's own choice."""
    try:
        import keyring  # lazy: ~70 ms
        import keyring.core
        import keyring.errors
    except ImportError as e:  # pragma: no cover - keyring is a dependency
        raise SecretError(f"the keyring module is not available ({e})", "reinstall cordon with its dependencies")
    name = (env or {}).get("PYTHON_KEYRING_BACKEND")
    if not name:
        return keyring.get_keyring()
    with _backends_lock:
        if name not in _backends:
            try:
                _backends[name] = keyring.core.load_keyring(name)
            except Exception as e:
                raise SecretError(f"PYTHON_KEYRING_BACKEND={name} cannot be loaded ({type(e).__name__})",
                                  "unset it or name an installed backend, e.g. "
                                  "keyring.backends.SecretService.Keyring") from None
        return _backends[name]


class NoKeyring(SecretError):
    """No usable OS keyring on this machine (a headless box, an SSH session, a container)."""


def _keyring_error(e: Exception, spec: SecretSpec) -> SecretError:
    name = type(e).__name__
    if name in ("NoKeyringError", "InitError"):
        return NoKeyring(f"no usable OS keyring for {spec.describe()} ({name})",
                           "start a Secret Service (gnome-keyring, KeePassXC) in a desktop session, "
                           "or use source = \"file\" / \"1password\" / \"command\" for this route")
    if name == "KeyringLocked":
        return SecretError(f"the keyring holding {spec.describe()} is locked", "unlock it and try again")
    # the message of a backend error never holds the value, but keep it short
    return SecretError(f"keyring error reading {spec.describe()}: {name}: {str(e)[:200]}",
                       "check that the OS keyring is running and unlocked")


def _decode_go_keyring(raw: str) -> str:
    # github.com/zalando/go-keyring stores values with these prefixes on macOS
    for prefix, dec in (("go-keyring-base64:", base64.b64decode), ("go-keyring-encoded:", bytes.fromhex)):
        if raw.startswith(prefix):
            try:
                return dec(raw[len(prefix):]).decode("utf-8")
            except (ValueError, binascii.Error, UnicodeDecodeError):
                raise SecretError("keyring value has a go-keyring prefix but does not decode",
                                  "store the secret again") from None
    return raw


def get_keyring_secret(spec: SecretSpec, env: Mapping[str, str] | None = None) -> str | None:
    backend = _keyring_backend(env)
    try:
        value = backend.get_password(spec.service, spec.account or "")
    except Exception as e:
        raise _keyring_error(e, spec) from None
    if value is None:
        return None
    return _decode_go_keyring(value) if spec.decode == "go-keyring" else str(value)


def set_keyring_secret(spec: SecretSpec, value: str, env: Mapping[str, str] | None = None) -> None:
    """Store `value` under (service, account). Refuses an empty value or one with line breaks."""
    if spec.source != "keyring":
        raise SecretError(f"the secret comes from {spec.describe()}, not the keyring",
                          "change it at its source, or set source = \"keyring\" in cordon.toml")
    clean = _clean(value, "the new secret", "enter a non-empty value").reveal()
    backend = _keyring_backend(env)
    try:
        backend.set_password(spec.service, spec.account or "", clean)
    except Exception as e:
        raise _keyring_error(e, spec) from None


def delete_keyring_secret(spec: SecretSpec, env: Mapping[str, str] | None = None) -> None:
    """Remove (service, account) from the keyring; SecretError if nothing is stored."""
    if spec.source != "keyring":
        raise SecretError(f"the secret comes from {spec.describe()}, not the keyring",
                          "remove it at its source")
    backend = _keyring_backend(env)
    try:
        backend.delete_password(spec.service, spec.account or "")
    except Exception as e:
        if type(e).__name__ == "PasswordDeleteError":
            raise SecretError(f"nothing stored in {spec.describe()}", "nothing to delete") from None
        raise _keyring_error(e, spec) from None


# --- subprocess sources ------------------------------------------------------------------------

# what every secret command and `op` gets (plus its spec's `env` names; `op` also its OP_* variables):
# enough to find programs, files, the user's agents and buses, never a route's secret source
BASE_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR",
            "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME",
            "DBUS_SESSION_BUS_ADDRESS", "SSH_AUTH_SOCK", "GNUPGHOME", "PASSWORD_STORE_DIR",
            "DISPLAY", "WAYLAND_DISPLAY", "PYTHON_KEYRING_BACKEND")


def child_env(env: Mapping[str, str], spec: SecretSpec) -> dict[str, str]:
    """The minimal environment of a secret command or `op` (its /proc/<pid>/environ is readable by
    any process of the user while it runs, the agent included)."""
    keep = set(BASE_ENV) | set(spec.env)
    out = {k: v for k, v in env.items() if k in keep or k.startswith("LC_")
           or (spec.source == "1password" and k.startswith("OP_"))}
    return out


def _run(argv: Sequence[str], env: Mapping[str, str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    """Run with a timeout that also ends the program's own children; its output is private.

    subprocess.run() kills only the direct child on timeout and then waits for
    its pipes, which a grandchild (`sh -c 'x | y'`) keeps open: so the command
    gets its own process group, and the whole group is killed.

    stdout and stderr are sockets, not pipes: any process of the user may open
    `/proc/<pid>/fd/1` of a running command and read a pipe (stealing the secret
    as it is printed), while opening a socket that way fails (ENXIO).
    """
    out_r, out_w = socket.socketpair()
    err_r, err_w = socket.socketpair()
    try:
        with out_w, err_w:
            proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out_w.fileno(),
                                    stderr=err_w.fileno(), env=dict(env), process_group=0)
        try:
            out, err = _collect(out_r, err_r, timeout)
            proc.wait(timeout=timeout or None)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise subprocess.TimeoutExpired(list(argv), timeout) from None
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    finally:
        out_r.close()
        err_r.close()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _collect(out_r: socket.socket, err_r: socket.socket, timeout: float) -> tuple[bytes, bytes]:
    """Read both sockets to EOF; TimeoutExpired after `timeout` seconds (0: no limit)."""
    deadline = time.monotonic() + timeout if timeout else None
    bufs: dict[socket.socket, list[bytes]] = {out_r: [], err_r: []}
    open_ = [out_r, err_r]
    with selectors.DefaultSelector() as sel:
        for r in open_:
            sel.register(r, selectors.EVENT_READ, r)
        while open_:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired("", timeout)
            for key, _ in sel.select(left):
                sk: socket.socket = key.data
                data = sk.recv(1 << 16)
                if data:
                    bufs[sk].append(data)
                else:
                    sel.unregister(sk)
                    open_.remove(sk)
    return b"".join(bufs[out_r]), b"".join(bufs[err_r])


def _which(program: str, env: Mapping[str, str]) -> str | None:
    if os.sep in program:
        return program if os.access(program, os.X_OK) and os.path.isfile(program) else None
    return shutil.which(program, path=env.get("PATH", os.defpath))


class SecretResolver:
    """Reads secrets per route from their sources, every call (no cache; thread-safe)."""

    def __init__(self, env: Mapping[str, str], op_path: str | None = None) -> None:
        self._env = dict(env)
        self._op_path = op_path

    # -- public --

    def resolve(self, route: Route) -> Secret:
        source = route.auth.secret.source
        if source == "env":
            return self._from_env(route)
        if source == "file":
            return self._from_file(route)
        if source == "keyring":
            return self._from_keyring(route)
        if source == "1password":
            return self._from_op(route)
        if source == "login":
            return self._from_login(route)
        return self._from_command(route)

    def check(self, routes: Sequence[Route]) -> list[tuple[Route, SecretError | None]]:
        out: list[tuple[Route, SecretError | None]] = []
        for r in routes:
            try:
                self.resolve(r)
                out.append((r, None))
            except SecretError as e:
                out.append((r, e))
        return out

    # -- sources --

    def _fail(self, route: Route, what: str, hint: str | None = None) -> SecretError:
        return SecretError(f"route '{route.name}': {what}", hint or fix_hint(route))

    def _from_env(self, route: Route) -> Secret:
        spec = route.auth.secret
        v = self._env.get(spec.var or "")
        if not v:
            raise self._fail(route, f"environment variable {spec.var} is not set")
        return _clean(v, f"route '{route.name}': environment variable {spec.var}", fix_hint(route))

    def _from_file(self, route: Route) -> Secret:
        spec = route.auth.secret
        path = spec.path
        assert path is not None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise self._fail(route, f"secret file {path} does not exist") from None
        except OSError as e:
            raise self._fail(route, f"cannot open secret file {path}: {e.strerror}") from None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise self._fail(route, f"secret file {path} is not a regular file")
            if st.st_mode & 0o077:
                raise self._fail(route, f"secret file {path} is readable by group or others "
                                        f"(mode {stat.S_IMODE(st.st_mode):04o})", f"run `chmod 600 {path}`")
            data = f.read(1 << 20)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise self._fail(route, f"secret file {path} is not UTF-8 text") from None
        return _clean(text, f"route '{route.name}': secret file {path}", fix_hint(route))

    def _from_login(self, route: Route) -> Secret:
        """A login route's current access token (a running proxy asks its login broker instead,
        which refreshes it)."""
        from cordon.store.logins import LoginStore
        from cordon.store.paths import Paths
        name = route.auth.secret.account or ""
        try:
            login = LoginStore(Paths.from_env(self._env), self._env).load(name)
        except SecretError as e:
            raise self._fail(route, e.message, e.hint) from None
        if login is None:
            raise self._fail(route, f"no {name} login is stored")
        return Secret(login.access_token)

    def _from_keyring(self, route: Route) -> Secret:
        spec = route.auth.secret
        try:
            value = get_keyring_secret(spec, self._env)
        except NoKeyring as e:
            raise self._fail(route, e.message, no_keyring_hint(route.name)) from None
        except SecretError as e:
            raise self._fail(route, e.message, e.hint) from None
        if value is None:
            raise self._fail(route, f"no secret stored in {spec.describe()}")
        return _clean(value, f"route '{route.name}': {spec.describe()}", fix_hint(route))

    def _from_op(self, route: Route) -> Secret:
        spec = route.auth.secret
        op = _which(self._op_path or "op", self._env)
        if op is None:
            where = self._op_path or "op (on PATH)"
            raise self._fail(route, f"the 1Password CLI {where} was not found",
                             "install the 1Password CLI, or give its path in cordon.toml: "
                             '[[secrets.providers]] type = "1password", path = "/usr/local/bin/op"')
        ref = f"op://{spec.vault}/{spec.item}/{spec.field}"
        argv = [op, "read", "--no-newline", ref]
        if spec.account:
            argv += ["--account", spec.account]
        try:
            proc = _run(argv, child_env(self._env, spec), spec.timeout)
        except subprocess.TimeoutExpired:
            raise self._fail(route, f"`op read` timed out after {spec.timeout:g}s",
                             "check that `op` can reach 1Password (and is not waiting for an unlock prompt), "
                             "or raise timeout in [routes.auth.secret]") from None
        except OSError as e:
            raise self._fail(route, f"cannot run {op}: {e.strerror}") from None
        if proc.returncode != 0:
            # op's own error text names the problem and never holds the value
            msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            last = msg[-1][:300] if msg else f"exit status {proc.returncode}"
            if any(p in last.lower() for p in OP_NOT_SIGNED_IN):
                raise self._fail(route, f"the 1Password CLI is not signed in ({last})",
                                 "run `eval $(op signin)` (or set OP_SERVICE_ACCOUNT_TOKEN) before starting cordon")
            raise self._fail(route, f"`op read {ref}` failed: {last}",
                             "check vault, item and field in cordon.toml (`op item get ITEM` lists the fields)")
        try:
            text = proc.stdout.decode("utf-8")
        except UnicodeDecodeError:
            raise self._fail(route, "`op read` printed something that is not UTF-8") from None
        return _clean(text, f"route '{route.name}': 1Password field {ref}", fix_hint(route))

    def _from_command(self, route: Route) -> Secret:
        spec = route.auth.secret
        prog = spec.command[0]
        if _which(prog, self._env) is None:
            raise self._fail(route, f"secret command {prog} was not found",
                             "give the program's absolute path or put it on PATH")
        try:
            proc = _run(spec.command, child_env(self._env, spec), spec.timeout)
        except subprocess.TimeoutExpired:
            raise self._fail(route, f"secret command {prog} timed out after {spec.timeout:g}s",
                             "make the command faster, or raise timeout in [routes.auth.secret]") from None
        except OSError as e:
            raise self._fail(route, f"cannot run secret command {prog}: {e.strerror}") from None
        if proc.returncode != 0:
            # its stderr is not shown: an arbitrary command might echo what it holds
            raise self._fail(route, f"secret command {prog} exited with status {proc.returncode}",
                             "run the command yourself to see its error; it runs with a minimal environment "
                             "(PATH, HOME, XDG_*, ...): name any other variable it needs in env = [...]")
        try:
            text = proc.stdout.decode("utf-8")
        except UnicodeDecodeError:
            raise self._fail(route, f"secret command {prog} printed something that is not UTF-8") from None
        return _clean(text, f"route '{route.name}': output of secret command {prog}", fix_hint(route))
