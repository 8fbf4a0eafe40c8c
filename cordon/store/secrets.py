"""Resolve route secrets from their sources: keyring, 1Password, env, file, command.

Blocking by nature (keyring, subprocesses): callers on an event loop run these
in a worker thread. Never logs or returns a value except as a `Secret`, and no
error message carries one. `keyring` is imported lazily (it costs ~70 ms).

Interface (other code relies on these names):
    SecretResolver(env, op_path=None)
        .resolve(route) -> Secret          raises SecretError (names route + fix)
        .check(routes) -> list[tuple[Route, SecretError | None]]   all failures together
        .invalidate(route_name=None)       drop cached values
    set_keyring_secret(spec, value) / delete_keyring_secret(spec)
    fix_hint(route) -> str                 e.g. "run `cordon secret set openai`"

Caching: keyring and 1Password values are kept until `invalidate()` (a running
proxy calls it when `cordon secret set` tells it to); `command` values for
their `ttl`; `env` is a snapshot; `file` is read on every resolve (cheap, and
a rotated file takes effect at once).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
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

def _run(argv: Sequence[str], env: Mapping[str, str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    """Run with a timeout that also ends the program's own children.

    subprocess.run() kills only the direct child on timeout and then waits for
    its pipes, which a grandchild (`sh -c 'x | y'`) keeps open: so the command
    gets its own process group, and the whole group is killed.
    """
    proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=dict(env), process_group=0)
    try:
        out, err = proc.communicate(timeout=timeout or None)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _which(program: str, env: Mapping[str, str]) -> str | None:
    if os.sep in program:
        return program if os.access(program, os.X_OK) and os.path.isfile(program) else None
    return shutil.which(program, path=env.get("PATH", os.defpath))


class SecretResolver:
    """Resolves secrets per route. Thread-safe; cheap to call repeatedly (cached)."""

    def __init__(self, env: Mapping[str, str], op_path: str | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._env = dict(env)
        self._op_path = op_path
        self._clock = clock
        self._lock = threading.Lock()
        # (route name, spec) -> (value, expiry or None for "until invalidated")
        self._cache: dict[tuple[str, SecretSpec], tuple[Secret, float | None]] = {}
        # one lock per key so two threads needing the same 1Password item run `op` once
        self._key_locks: dict[tuple[str, SecretSpec], threading.Lock] = {}

    # -- public --

    def resolve(self, route: Route) -> Secret:
        spec = route.auth.secret
        if spec.source == "env":
            return self._from_env(route)
        if spec.source == "file":
            return self._from_file(route)
        key = (route.name, spec)
        with self._lock:
            klock = self._key_locks.setdefault(key, threading.Lock())
        with klock:
            with self._lock:
                hit = self._cache.get(key)
            if hit is not None and (hit[1] is None or self._clock() < hit[1]):
                return hit[0]
            if spec.source == "keyring":
                value, ttl = self._from_keyring(route), None
            elif spec.source == "1password":
                value, ttl = self._from_op(route), None
            elif spec.source == "login":
                value, ttl = self._from_login(route), None
            else:
                value, ttl = self._from_command(route), spec.ttl
            if ttl is None or ttl > 0:
                expiry = None if ttl is None else self._clock() + ttl
                with self._lock:
                    self._cache[key] = (value, expiry)
            return value

    def check(self, routes: Sequence[Route]) -> list[tuple[Route, SecretError | None]]:
        out: list[tuple[Route, SecretError | None]] = []
        for r in routes:
            try:
                self.resolve(r)
                out.append((r, None))
            except SecretError as e:
                out.append((r, e))
        return out

    def invalidate(self, route_name: str | None = None) -> None:
        with self._lock:
            if route_name is None:
                self._cache.clear()
            else:
                for k in [k for k in self._cache if k[0] == route_name]:
                    del self._cache[k]

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
        """A login route's current access token (the proxy refreshes it: a running proxy asks its
        login broker, not this resolver)."""
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
            proc = _run(argv, self._env, spec.timeout)
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
            proc = _run(spec.command, self._env, spec.timeout)
        except subprocess.TimeoutExpired:
            raise self._fail(route, f"secret command {prog} timed out after {spec.timeout:g}s",
                             "make the command faster, or raise timeout in [routes.auth.secret]") from None
        except OSError as e:
            raise self._fail(route, f"cannot run secret command {prog}: {e.strerror}") from None
        if proc.returncode != 0:
            # its stderr is not shown: an arbitrary command might echo what it holds
            raise self._fail(route, f"secret command {prog} exited with status {proc.returncode}",
                             "run the command yourself to see its error")
        try:
            text = proc.stdout.decode("utf-8")
        except UnicodeDecodeError:
            raise self._fail(route, f"secret command {prog} printed something that is not UTF-8") from None
        return _clean(text, f"route '{route.name}': output of secret command {prog}", fix_hint(route))
