"""`cordon exec`: one process runs the proxy and supervises the child (docs/exec.md).

Order: preflight every secret -> ephemeral name-constrained CA (key only in
memory) -> session directory -> proxy task and the child's supervision in one
anyio task group -> `.codex/.env` (and the proxy entries `cordon setup codex` put
in Codex's `config.toml`) -> child with the env contract -> teardown that
restores every file -> the child's exit status. Never prints (the CLI
does, through `say`); never puts a real secret in the child's env or a file.
Heavy modules (cryptography, anyio, the proxy) are imported only when needed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cordon.app import reaper
from cordon.app.hardening import set_non_dumpable
from cordon.core.errors import ConfigError, CordonError, SecretError, UsageError
from cordon.core.model import DEFAULT_PLACEHOLDER, Config, Resolver, Route, SecretSpec
from cordon.core.wording import plural
from cordon.store.paths import Paths

if TYPE_CHECKING:
    from cordon.app.logins import Subscription
    from cordon.app.sandbox import Probe
    from cordon.core.certs import CA
    from cordon.store.edits import Key
    from cordon.store.session import Session

FORWARDED = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
KILL_GRACE = 5.0          # seconds a child gets after SIGTERM in teardown before SIGKILL

Say = Callable[[str], None]


class CommandNotFound(CordonError):
    """The command cannot be found (exit 127, as a shell would)."""

    exit_status = 127


class CommandNotExecutable(CordonError):
    """The command exists but cannot be run (exit 126, as a shell would)."""

    exit_status = 126


@dataclass(frozen=True)
class ExecRequest:
    argv: tuple[str, ...]
    env: Mapping[str, str]
    paths: Paths
    config: str | None = None
    scope: str | None = None
    sensitive: Callable[[str], None] | None = None   # told every secret and token (log redaction)
    sandbox: str | None = None         # auto|required|off; None: [exec] sandbox
    egress: str | None = None          # open|proxy; None: [exec] egress
    egress_ports: tuple[int, ...] = ()


def exit_status(returncode: int) -> int:
    """A child's status as a shell reports it: its code, or 128+N for death by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def session_ca(hosts: Sequence[str]) -> CA:
    """The session's CA: EC P-256, its key only in this process's memory, and X.509 name
    constraints (RFC 5280 §4.2.1.10) permitting only the route hosts, so even a copy of
    its certificate in a trust store vouches for nothing else."""
    from cordon.core.certs import create_ca
    from cordon.core.routes import constraint_names
    return create_ca("cordon session CA", permitted_hosts=constraint_names(hosts))


def _new_token() -> str:
    """256 random bits, URL-safe (it goes into the proxy URL's password)."""
    import base64
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


def find_command(name: str, env: Mapping[str, str]) -> str:
    """The executable `name` resolves to with the child's PATH, or CommandNotFound."""
    import shutil
    if "/" in name:
        if not os.path.exists(name):
            raise CommandNotFound(f"command not found: {name}")
        if os.path.isdir(name):
            raise CommandNotExecutable(f"is a directory: {name}")     # as bash says it (exit 126)
        if not os.access(name, os.X_OK):
            raise CommandNotExecutable(f"permission denied: {name}")
        return name
    found = shutil.which(name, path=env.get("PATH", os.defpath))
    if found is None:
        raise CommandNotFound(f"command not found: {name}")
    return found


# --- configuration ------------------------------------------------------------------------------

def zero_config_routes(env: Mapping[str, str]) -> list[Route]:
    """A route per built-in preset whose variable holds a real-looking value in our own env."""
    from cordon.core.routes import PRESETS
    out: list[Route] = []
    for preset in PRESETS.values():
        for var in preset.placeholder_env:
            value = env.get(var, "")
            if value and value != DEFAULT_PLACEHOLDER:
                out.append(preset.route(SecretSpec(source="env", var=var)))
                break
    return out


def load_exec_config(req: ExecRequest) -> Config:
    if not req.config and not req.scope and req.paths.find_project_config() is None \
            and not req.paths.user_config.exists():
        # zero-config: what resolve_scope would conclude, without importing the parser
        return Config(routes=tuple(zero_config_routes(req.env)), scope="none")
    from cordon.store.scope import resolve_scope
    scope = resolve_scope(req.paths, req.config, req.scope)
    if scope.config_path is None:
        return Config(routes=tuple(zero_config_routes(req.env)), scope="none")
    return scope.config


def project_dir(config: Config, cwd: Path) -> Path | None:
    """The project a session belongs to: the project config's directory (None otherwise)."""
    if config.path is None or config.scope not in ("project", "explicit"):
        return None
    d = config.path.resolve().parent
    if config.scope == "explicit":
        here = cwd.resolve()
        if d != here and d not in here.parents:
            return None
    return d


def env_secret_vars(routes: Sequence[Route]) -> list[str]:
    return [r.auth.secret.var for r in routes if r.auth.secret.source == "env" and r.auth.secret.var]


def preflight(routes: Sequence[Route], resolver: Resolver, scope_args: str = "") -> list[str]:
    """Resolve every secret now; all failures in one error naming each route and its fix.

    Returns the values (for log redaction and the leak scan: each secret is read
    once per session). `scope_args` (e.g. ` --config x.toml`) is added to the
    `cordon secret set NAME` commands in the hints, so the command shown is
    exactly the one that fixes it.
    """
    values: list[str] = []
    failures: list[SecretError] = []
    for r in routes:
        try:
            values.append(resolver.resolve(r).reveal())
        except SecretError as e:
            failures.append(e)
    if not failures:
        return values

    def hint(e: SecretError) -> str | None:
        if e.hint and scope_args:
            return re.sub(r"`cordon secret set ([^`]+)`", lambda m: f"`cordon secret set {m.group(1)}{scope_args}`",
                          e.hint)
        return e.hint
    if len(failures) == 1:
        raise SecretError(failures[0].message, hint(failures[0]))
    hints = list(dict.fromkeys(h for h in map(hint, failures) if h))
    raise SecretError("; ".join(e.message for e in failures), "; ".join(hints) or None)


def _scope_args(req: ExecRequest) -> str:
    import shlex
    if req.config:
        return f" --config {shlex.quote(req.config)}"
    if req.scope:
        return f" --scope {req.scope}"
    return ""


def _port_open(port: int | None) -> bool:
    import socket
    if not port:
        return False
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


# --- the run --------------------------------------------------------------------------------------

def run_exec(req: ExecRequest, say: Say) -> int:
    """Run `req.argv` under a cordon session; returns the exit status for cordon.

    From the first line, TERM/HUP/QUIT unwind through every `finally` (so a
    half-built session is cleaned up) and give 128+N; once the event loop runs
    they are forwarded to the child instead.
    """
    try:
        with _terminating_signals():
            return _run_exec(req, say)
    except _Terminated as t:
        return 128 + t.signum


def _run_exec(req: ExecRequest, say: Say) -> int:
    from cordon.store.session import live_session  # (stale sessions: the CLI repairs them first)
    if not req.argv:
        raise UsageError("no command given", "write `cordon exec -- CMD [ARGS...]`")
    set_non_dumpable()
    config = load_exec_config(req)
    routes = list(config.routes)
    if req.paths.logins_index.is_file():   # subscription logins held (`cordon login`)
        from cordon.app.logins import with_login_routes
        routes = with_login_routes(routes, req.paths, zero_config=config.scope == "none")
    if config.scope != "none":
        routes = _protect_provider_keys(req.env, routes, say)
    remove = env_secret_vars(routes)

    outer_id = req.env.get("CORDON_SESSION", "")
    outer = live_session(req.paths, outer_id) if outer_id else None
    if outer is not None and _port_open(outer.port):
        # nesting: the outer proxy already covers this process tree; no second MITM
        missing = sorted({h for r in routes for h in r.hosts} - set(outer.route_hosts))
        if missing:
            say(f"cordon: note: reusing the outer session's proxy, which has no route for: {', '.join(missing)}")
        env = {k: v for k, v in req.env.items() if k not in remove}
        exe = find_command(req.argv[0], env)
        return _run_loop(req.argv, exe, env, proxy=None)

    # a project file only as the user approved it (nesting above uses none of its routes)
    from cordon.store.approvals import require_approved
    require_approved(req.paths.cordon_home, config)
    base = {k: v for k, v in req.env.items() if k not in remove}
    exe = find_command(req.argv[0], base)
    if config.scope == "none" and any(r.auth.secret.source == "env" for r in routes):
        what = ", ".join(f"{r.auth.secret.var} ({r.host})" for r in routes if r.auth.secret.source == "env")
        say(f"cordon: no cordon.toml; protecting {what}: the command gets a placeholder")
    if not routes:
        say("cordon: no routes: tunnel only (nothing is injected; add one with `cordon route add`)")

    if routes and not config.tls.enabled:
        raise ConfigError(f"{config.path}: [tls] enabled = false, so cordon cannot intercept "
                          f"its {plural(len(routes), 'route')}",
                          "remove `enabled = false` from [tls] (or remove the routes)")
    from cordon.proxy.secretcache import SecretCache
    from cordon.store.generation import generation_file
    from cordon.store.secrets import SecretResolver
    # the session's one cache: preflight fills it, the proxy serves from it
    resolver = SecretCache(SecretResolver(req.env, op_path=config.op_path), generation_file(req.paths.cordon_home))
    values = preflight(routes, resolver, _scope_args(req))
    from cordon.store.upstreamca import check_ca_files
    check_ca_files(routes, config.path)
    token = _new_token()
    if req.sensitive is not None:
        for v in values:
            req.sensitive(v)
        req.sensitive(token)

    sub = _subscription(routes, req, config, base, say) if any(r.auth.type == "login" for r in routes) else None
    if sub is not None:
        routes += sub.extra_routes
    _agent_auth(req, routes, base, say)
    leaked = _vars_holding_secrets(base, values)
    if leaked:
        say(f"cordon: note: not passing {', '.join(leaked)} to the command (they hold a route's secret)")
        for k in leaked:
            del base[k]

    hosts = [h for r in routes for h in r.hosts]
    from cordon.proxy.refuse import answered_hosts
    # denied hosts answered inside TLS (Codex's model discovery) need a leaf from this CA too
    answered = answered_hosts(config.policy.unmatched, frozenset(config.policy.allow_hosts))
    ca = session_ca([*hosts, *sorted(answered)])
    bundle = _build_bundle(ca.cert_pem, req.env)

    from cordon.store.session import create_session
    session = create_session(req.paths, ca_pem=ca.cert_pem, bundle_pem=bundle, route_hosts=hosts)
    box = None
    try:
        from cordon.app.sandbox import choose
        box = choose(req.sandbox, req.egress, req.egress_ports, config, routes, req.env, req.paths, say)
        proj = project_dir(config, req.paths.cwd)
        codex_home = _codex_home(proj if proj is not None or config.scope != "none" else req.paths.cwd,
                                 routes, req)
        env_file = _dotenv_target(codex_home, req.env, req.paths)
        codex_config = _codex_config_target(codex_home, req.env, req.paths)
        # recorded before either file changes, so a SIGKILL at any point can be repaired
        files = [str(env_file)] if env_file is not None else []
        if codex_config is not None:
            files.append(str(codex_config[0]))
        if files:
            session.update(files=tuple(files))
        plan = _ProxyPlan(config=config, routes=routes, resolver=resolver, ca=ca,
                          token=token, session=session, base_env=base,
                          codex_home=codex_home, env_file=env_file, codex_config=codex_config, sandbox=box,
                          agent_env=sub.env if sub else {}, agent_drop=sub.drop if sub else [],
                          sensitive=req.sensitive)
        return _run_loop(req.argv, exe, None, proxy=plan)
    finally:
        if box is not None:
            box.close()
        _teardown(session, req.paths, say)


def _subscription(routes: Sequence[Route], req: ExecRequest, config: Config, base: dict[str, str],
                  say: Say) -> Subscription:
    """Subscription mode: the agent gets placeholder tokens in its client's own format, and no
    API-key variable that would override the login (reference/subscription-logins.md §3.2)."""
    from cordon.app.logins import subscription
    proj = project_dir(config, req.paths.cwd)
    sub = subscription(routes, req.env, req.paths, proj / ".codex" if proj is not None else None)
    dropped = sorted(k for k in sub.drop if k in base)
    if dropped:
        say(f"cordon: note: not passing {', '.join(dropped)} to the command (it would override the "
            f"{'/'.join(sub.logins)} subscription login)")
    for k in dropped:
        del base[k]
    if req.sensitive is not None:
        for login in sub.logins.values():
            for value in (login.refresh_token, login.id_token):
                if value:
                    req.sensitive(value)
    if sub.codex_auth is not None:   # before the session: it refuses to replace a newer real login
        from cordon.app.logins import prepare_codex_auth
        prepare_codex_auth(*sub.codex_auth)
    return sub


def _protect_provider_keys(env: Mapping[str, str], routes: list[Route], say: Say) -> list[Route]:
    """A provider key in our environment that the config does not route still never reaches
    the child in clear: it gets a route for this session, as with no cordon.toml."""
    from cordon.core.providerkeys import protect
    p = protect(env, routes)
    for preset, r in p.added:
        say(f"cordon: {r.auth.secret.var} is set but no route in the config covers {r.host}; "
            f"protecting it for this session (to keep it: `cordon route add --preset {preset}` "
            f"and `cordon secret set {preset}`)")
    for var, name in p.covered:
        say(f"cordon: note: {var} gets route '{name}''s placeholder")
    return list(p.routes)


SHELLS = ("sh", "bash", "zsh", "fish", "dash", "ksh")


def _agent_auth(req: ExecRequest, routes: Sequence[Route], base: dict[str, str], say: Say) -> None:
    """Keys an agent keeps in its own files (opencode's auth.json) give way to the placeholders."""
    from cordon.app.agentauth import describe, for_session
    found = for_session(req.env, req.paths.home, routes)
    base.update(found.env)
    # said where opencode may run: opencode itself or a shell (not before every `exec -- codex`;
    # `cordon doctor` reports these keys too)
    if not req.argv or os.path.basename(req.argv[0]) not in ("opencode", *SHELLS):
        return
    for k in found.replaced:
        say(f"cordon: note: {describe(k)}; it gets the placeholder instead for this session "
            f"(remove it with `opencode auth logout`: see docs/agents.md)")
    for k in found.unrouted:
        say(f"cordon: warning: {describe(k)}, which no route covers: it goes out in clear; move it into "
            f"cordon: `cordon route add --preset {k.preset}`, `cordon secret set {k.preset}`, `opencode auth logout`")


def _vars_holding_secrets(env: Mapping[str, str], secrets: Sequence[str]) -> list[str]:
    from cordon.core.leaks import vars_holding  # short secrets: whole values and tokens only
    return vars_holding(env, secrets)


def _build_bundle(ca_pem: bytes, env: Mapping[str, str]) -> bytes:
    """Inherited SSL_CERT_FILE certs, system roots, then the session CA (castore refuses no roots)."""
    from cordon.store.castore import build_bundle
    return build_bundle([ca_pem], env)


def _codex_home(proj: Path | None, routes: Sequence[Route], req: ExecRequest) -> Path | None:
    """The session's CODEX_HOME (cordon.app.codexhome), ready; None outside a project."""
    if proj is None:
        return None
    from cordon.app import codexhome
    from cordon.app.integrations.codex import API_HOST, auth_json
    placeholder = next((r.auth.placeholder for r in routes if r.host == API_HOST), DEFAULT_PLACEHOLDER)
    home = codexhome.choose(proj, req.env, req.paths)
    codexhome.prepare(home, req.env, req.paths, auth_json(placeholder))
    return home.path


def _dotenv_target(codex_home: Path | None, env: Mapping[str, str], paths: Paths) -> Path | None:
    """Which Codex .env this session manages.

    Project scope: `<project>/.codex/.env`, and CODEX_HOME points there. Otherwise the
    user's own Codex home is left as it is, unless its .env exists (it may hold proxy
    settings from `cordon setup codex` that would override the session's).
    """
    if codex_home is not None:
        return codex_home / ".env"
    user_home = Path(env["CODEX_HOME"]) if env.get("CODEX_HOME") else paths.home / ".codex"
    candidate = user_home / ".env"
    return candidate if candidate.is_file() else None


def _codex_config_target(codex_home: Path | None, env: Mapping[str, str],
                         paths: Paths) -> tuple[Path, dict[Key, str]] | None:
    """Codex's `config.toml` for this session and the entries `cordon setup codex` wrote in it.

    Codex gives the commands it runs and its MCP servers the variables of
    `[shell_environment_policy.set]` and `[mcp_servers.<name>.env]`, where setup put
    the long-lived proxy's port, token and bundle; the session points them at itself
    (only those entries: the integration's record says which they are). None when
    there is no such file or no setup record for it: exec never creates one.
    """
    if codex_home is not None:
        home = codex_home
    elif env.get("CODEX_HOME"):
        home = Path(env["CODEX_HOME"]).expanduser()
        home = home if home.is_absolute() else paths.cwd / home
    else:
        home = paths.home / ".codex"
    cfg = home / "config.toml"
    if not cfg.is_file():
        return None
    # the scopes whose setup could have written it: the user's, or the project `home` is in
    state_dirs = [paths.state_dir("project", home.parent), paths.state_dir("user")]
    # importing the integrations costs ~20 ms: only where a setup record exists
    if not any((d / "integrations" / "codex.json").is_file() for d in state_dirs):
        return None
    from cordon.store.userfiles import load_record
    want = os.path.realpath(cfg)
    for d in state_dirs:
        try:
            record = load_record(d, "codex")
        except CordonError:
            continue                 # unreadable: `integration disable` reports it, exec carries on
        for f in () if record is None else record.files.values():
            if f.kind == "toml" and os.path.realpath(f.path) == want and f.entries:
                return cfg, {k: r.value for k, r in f.entries.items()}
    return None


def codex_config_entries(setup_entries: Mapping[Key, str], contract: Mapping[str, str],
                         routes: Sequence[Route]) -> dict[Key, tuple[str, str]]:
    """(what setup wrote, the session's value) for setup's proxy and CA entries.

    An entry is swapped when its variable is one of the session's proxy/CA
    variables; placeholders (the same for both) and every other key stay.
    """
    from cordon.core.envvars import SESSION_VAR, placeholder_vars
    skip = {*placeholder_vars(routes), SESSION_VAR, "CODEX_HOME"}
    session = {k: v for k, v in contract.items() if k not in skip}
    return {key: (value, session[key[-1]]) for key, value in setup_entries.items() if key[-1] in session}


def _teardown(session: Session, paths: Paths, say: Say) -> None:
    """Restore every file the session changed, then remove the session.

    A file that cannot be restored now keeps the session's record, so the next
    cordon command retries it as it would after a crash; cordon still exits
    with the command's status.
    """
    from cordon.store.userfiles import release
    failed = False
    try:
        for p in reversed(session.record.files):
            try:
                release(paths, session.id, Path(p))
            except OSError as e:
                failed = True
                say(f"cordon: warning: could not restore {p}: {e.strerror or e}; "
                    "the next cordon command will retry")
    finally:
        session.close(keep_record=failed)


@dataclass
class _ProxyPlan:
    config: Config
    routes: list[Route]
    resolver: Resolver
    ca: CA
    token: str
    session: Session
    base_env: dict[str, str]
    codex_home: Path | None
    env_file: Path | None
    codex_config: tuple[Path, dict[Key, str]] | None
    sandbox: Probe | None = None
    agent_env: dict[str, str] = dataclasses.field(default_factory=dict)   # subscription logins: the
    agent_drop: list[str] = dataclasses.field(default_factory=list)       # client's placeholders; API-key vars to drop
    sensitive: Callable[[str], None] | None = None   # told the tokens of refreshed logins (log redaction)


@contextlib.contextmanager
def _terminating_signals() -> Iterator[None]:
    """Outside the event loop, TERM/HUP/QUIT end cordon through `finally` (cleanup runs)."""
    def handler(signum: int, frame: Any) -> None:
        raise _Terminated(signum)
    old = {s: signal.signal(s, handler) for s in FORWARDED}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class _Terminated(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        e = stack.pop()
        if isinstance(e, BaseExceptionGroup):
            stack.extend(e.exceptions)
        else:
            leaves.append(e)
    return leaves[0] if len(leaves) == 1 else None


def _run_loop(argv: Sequence[str], exe: str, env: dict[str, str] | None, proxy: _ProxyPlan | None) -> int:
    import anyio
    try:
        from cordon.proxy.eventloop import backend_options
        status: int = anyio.run(_main, argv, exe, env, proxy, backend_options=backend_options())
    except BaseExceptionGroup as group:
        # a task group wraps what its tasks raise; a lone error (command not found,
        # a proxy that cannot bind) is reported as itself
        only = _single(group)
        if only is None:
            raise
        raise only from None
    finally:
        # the loop left SIG_DFL behind; the child is gone and teardown is short: let it finish
        for s in FORWARDED:
            signal.signal(s, signal.SIG_IGN)
        reaper.end_descendants()    # daemons the child left behind (cordon is their subreaper)
    return status


def _terminal_foreground() -> bool:
    """True when our process group is the foreground of a controlling terminal."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


class _Forwarder:
    """Owns the signal receiver from the loop's start.

    Before the child exists, INT/TERM/HUP/QUIT stop the start-up (128+N, cleaned up).
    Afterwards TERM/HUP/QUIT are forwarded; INT, and QUIT while we are a terminal's
    foreground job, already reached the child from the terminal and are not repeated.
    """

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.early: int = 0              # a signal that came before the child existed
        self.scope: Any = None

    async def run(self, signals: Any) -> None:
        async for signum in signals:
            if self.proc is None:
                self.early = self.early or int(signum)
                if self.scope is not None:
                    self.scope.cancel()
                continue
            if signum == signal.SIGINT or (signum == signal.SIGQUIT and _terminal_foreground()):
                continue                 # a terminal's Ctrl-C / Ctrl-\ reached the child's group already
            if self.proc.poll() is None:
                self.proc.send_signal(signum)


async def _main(argv: Sequence[str], exe: str, env: dict[str, str] | None, plan: _ProxyPlan | None) -> int:
    import anyio

    from cordon.core.envvars import contract_vars
    fwd = _Forwarder()
    status = 0
    spawn = None
    # handlers first (STYLE habit 9): from here on TERM/HUP/QUIT are caught, never fatal
    with anyio.open_signal_receiver(signal.SIGINT, *FORWARDED) as signals:
        async with anyio.create_task_group() as tg:
            tg.start_soon(fwd.run, signals)
            with anyio.CancelScope() as setup:
                fwd.scope = setup
                if plan is not None:
                    port = await _start_proxy(tg, plan)
                    plan.session.update(port=port)
                    contract = contract_vars(plan.base_env, port=port, token=plan.token,
                                             bundle_path=plan.session.bundle_path, ca_path=plan.session.ca_path,
                                             routes=plan.routes, session_id=plan.session.id,
                                             codex_home=plan.codex_home)
                    env = {**plan.base_env, **contract, **plan.agent_env}
                    for k in plan.agent_drop:
                        env.pop(k, None)
                    if plan.env_file is not None:
                        from cordon.store.userfiles import dotenv_acquire
                        # Codex ignores CODEX_* in its .env; the rest overrides stale proxy settings there
                        block = {k: v for k, v in contract.items() if not k.upper().startswith("CODEX_")}
                        dotenv_acquire(plan.session.paths, plan.session.id, plan.env_file, block)
                    if plan.codex_config is not None:
                        from cordon.store.userfiles import toml_acquire
                        cfg, setup_entries = plan.codex_config
                        swap = codex_config_entries(setup_entries, contract, plan.routes)
                        if swap:
                            toml_acquire(plan.session.paths, plan.session.id, cfg, swap)
                    if plan.sandbox is not None:
                        from cordon.app.sandbox import start
                        spawn = await start(tg, plan.sandbox, plan.session.shared_files(), port)
                fwd.scope = None
            if fwd.early:
                status = 128 + fwd.early
            else:
                assert env is not None
                status = await _supervise(argv, exe, env, fwd, spawn)
            tg.cancel_scope.cancel()
    return status


async def _start_proxy(tg: Any, plan: _ProxyPlan) -> int:
    from cordon.proxy import server
    from cordon.proxy.auth import ProxyAuth
    from cordon.proxy.tls import LeafIssuer
    from cordon.store.generation import generation_file
    settings = server.ProxySettings(routes=tuple(plan.routes), policy=plan.config.policy, port=0,
                                    issuer=LeafIssuer(plan.ca), resolver=plan.resolver,
                                    auth=ProxyAuth.single(plan.token, "session"),
                                    secrets_gen_file=generation_file(plan.session.paths.cordon_home),
                                    logins=_login_store(plan))
    return int(await tg.start(server.serve, settings))


def _login_store(plan: _ProxyPlan) -> Any:
    if not any(r.auth.type == "login" for r in plan.routes):
        return None
    from cordon.app.logins import proxy_login_store
    return proxy_login_store(plan.session.paths, plan.base_env, plan.sensitive)


async def _supervise(argv: Sequence[str], exe: str, env: Mapping[str, str], fwd: _Forwarder,
                     spawn: Callable[..., subprocess.Popen[bytes]] | None = None) -> int:
    """Start the child with our stdin/stdout/stderr/TTY and wait for it.

    The child shares our process group, so a terminal's Ctrl-C reaches it
    directly; cordon receives the same SIGINT and only keeps waiting. TERM,
    HUP and QUIT sent to cordon are forwarded by `fwd`.
    """
    reaper.become_subreaper()
    try:
        proc = spawn(argv, exe, env) if spawn else subprocess.Popen(list(argv), executable=exe, env=dict(env))
    except FileNotFoundError:
        raise CommandNotFound(f"command not found: {argv[0]}") from None
    except PermissionError:
        raise CommandNotExecutable(f"permission denied: {argv[0]}") from None
    except OSError as e:
        raise CommandNotExecutable(f"cannot run {argv[0]}: {e.strerror}") from None
    fwd.proc = proc
    try:
        await _wait(proc)
    finally:
        if proc.poll() is None:      # cordon is failing or being cancelled: stop the child too
            await _stop(proc)
    return exit_status(proc.returncode)


async def _wait(proc: subprocess.Popen[bytes]) -> None:
    import anyio
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is not None:
        try:
            fd = pidfd_open(proc.pid)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                await anyio.wait_readable(fd)
            finally:
                os.close(fd)
            proc.wait()
            return
    await anyio.to_thread.run_sync(proc.wait, abandon_on_cancel=True)


async def _stop(proc: subprocess.Popen[bytes]) -> None:
    import anyio
    with anyio.CancelScope(shield=True):
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        with anyio.move_on_after(KILL_GRACE):
            await _wait(proc)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
