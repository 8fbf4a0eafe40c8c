"""The static checks of `cordon doctor`: files, permissions, ports, secrets, `op`, integrations.

Each function looks at one thing and returns `Check` values (ok / warn / fail /
skip) whose `fix` says what to run. Nothing here prints; no secret, token or
credential value ever goes into a message (only where it comes from).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from cryptography.hazmat.primitives import serialization

from cordon.app.localclient import get_json, port_is_free
from cordon.app.service import Manager, NoServiceManager
from cordon.core.certs import load_ca, split_pem_certs
from cordon.core.envvars import BUNDLE_VARS, CA_VARS
from cordon.core.errors import CordonError
from cordon.core.model import Config
from cordon.core.wording import plural
from cordon.store import castore, dotenvfile
from cordon.store.config import load_config
from cordon.store.paths import Paths
from cordon.store.runrecord import pid_alive, read_run_record
from cordon.store.secrets import SecretResolver
from cordon.store.tokens import TokenStore

Status = Literal["ok", "warn", "fail", "skip"]
CA_WARN_DAYS = 30


@dataclass(frozen=True)
class Check:
    id: str                      # stable name for --json: config, port, ca.files, secret.<route>, probe.curl ...
    status: Status
    message: str
    fix: str | None = None       # what to run or change; set for every warn and fail
    details: Mapping[str, Any] = field(default_factory=dict)


def ok(id: str, message: str, **details: Any) -> Check:
    return Check(id, "ok", message, None, details)


def warn(id: str, message: str, fix: str, **details: Any) -> Check:
    return Check(id, "warn", message, fix, details)


def fail(id: str, message: str, fix: str, **details: Any) -> Check:
    return Check(id, "fail", message, fix, details)


def skip(id: str, message: str, **details: Any) -> Check:
    return Check(id, "skip", message, None, details)


# ---------------------------------------------------------------- config

def check_config(config_path: Path | None, scope: str) -> tuple[list[Check], Config | None]:
    if config_path is None or not config_path.exists():
        where = config_path or "the project or user scope"
        return [warn("config", f"no cordon.toml in {where}",
                     "create one with `cordon setup codex` (or claude-code) or `cordon route add --preset openai`; "
                     "`cordon exec` also works without one for keys in your environment")], None
    try:
        config = load_config(config_path, scope)
    except CordonError as e:
        return [fail("config", e.message, e.hint or "fix the file")], None
    n = len(config.routes)
    if n == 0:
        return [warn("config", f"{config_path} parses but has no routes: cordon injects nothing",
                     "add one with `cordon route add --preset openai` (or --host ...)")], config
    return [ok("config", f"{config_path} parses: {n} route{'s' if n != 1 else ''}")], config


def check_approved(config: Config, cordon_home: Path) -> Check | None:
    """A project cordon.toml is used only as approved (`cordon allow`); None when that does not apply."""
    from cordon.store import approvals
    if not approvals.needs_approval(cordon_home, config):
        return None
    what = approvals.unapproved(cordon_home, config)
    if not what:
        return ok("config.approved", f"{config.path} is used as you approved it")
    return fail("config.approved", f"`cordon exec` and `cordon start` refuse {config.path}: " + "; ".join(what),
                "review it, then run `cordon allow`")


# ---------------------------------------------------------------- port

def _free_port_suggestion() -> int | None:
    for port in range(6790, 6890):
        if port_is_free(port):
            return port
    return None


def check_port(config: Config, state_dir: Path) -> Check:
    port = config.listen
    if port == 0:
        return ok("port", "listen = 0: `cordon start` picks a free port each time")
    if port_is_free(port):
        return ok("port", f"port {port} is free for `cordon start`")
    record = read_run_record(state_dir)
    health = get_json(port, "/health", timeout=1.0)
    if record is not None and record.port == port and pid_alive(record.pid) and health.status == 200:
        return ok("port", f"port {port} is in use by this scope's proxy (pid {record.pid})")
    other = _free_port_suggestion()
    change = f"set listen = {other} in {config.path}" if other else f"change listen in {config.path}"
    if health.status == 200:
        return fail("port", f"port {port} is in use by another cordon proxy (not this scope's)",
                    f"stop the other proxy, or {change}")
    return fail("port", f"port {port} is in use by another program",
                f"stop it (`ss -ltnp 'sport = :{port}'` names it), or {change}")


# ---------------------------------------------------------------- CA and bundle

def ca_files(config: Config | None, state_dir: Path) -> tuple[Path, Path]:
    if config is not None and config.tls.ca_cert_path is not None and config.tls.ca_key_path is not None:
        return config.tls.ca_cert_path, config.tls.ca_key_path
    return castore.ca_paths(state_dir)


def bundle_file(state_dir: Path) -> Path:
    """Where `setup`, `start` and `env` put the merged bundle."""
    return castore.bundle_path(state_dir)


_RECREATE = ("delete both CA files and run `cordon setup` again (clients that trusted the old CA "
             "pick up the new one from the rebuilt bundle; re-run `cordon trust` if you used it)")


def check_ca(config: Config | None, state_dir: Path, now: dt.datetime) -> list[Check]:
    if config is not None and not config.tls.enabled:
        return [warn("ca.files", "[tls] enabled = false: cordon cannot intercept HTTPS routes",
                     "remove `enabled = false` from [tls] in cordon.toml")]
    cert, key = ca_files(config, state_dir)
    if not cert.exists() and not key.exists():
        return [warn("ca.files", f"no CA yet in {cert.parent}",
                     "`cordon setup codex` (or `cordon start`) creates it")]
    if not cert.exists() or not key.exists():
        missing = cert if not cert.exists() else key
        return [fail("ca.files", f"CA is incomplete: {missing} is missing", _RECREATE)]
    out: list[Check] = []
    try:
        ca = load_ca(cert.read_bytes(), key.read_bytes())
    except (OSError, ValueError, TypeError) as e:
        return [fail("ca.files", f"cannot load the CA in {cert.parent}: {e}", _RECREATE)]
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if ca.cert.public_key().public_bytes(*spki) != ca.key.public_key().public_bytes(*spki):
        out.append(fail("ca.files", f"CA key {key} does not belong to certificate {cert}", _RECREATE))
    else:
        out.append(ok("ca.files", f"CA certificate and key present in {cert.parent}"))
    mode = key.stat().st_mode & 0o777
    if mode & 0o077:
        out.append(fail("ca.key_mode", f"CA key {key} is readable by group or others (mode {mode:04o})",
                        f"run `chmod 600 {key}`"))
    else:
        out.append(ok("ca.key_mode", f"CA key is private (mode {mode:04o})"))
    days = (ca.not_after - now).days
    when = f"{ca.not_after:%Y-%m-%d}"
    if ca.not_after <= now:
        out.append(fail("ca.expiry", f"the CA expired on {when}", _RECREATE, not_after=ca.not_after.isoformat()))
    elif days < CA_WARN_DAYS:
        out.append(warn("ca.expiry", f"the CA expires in {plural(days, 'day')} ({when})", _RECREATE,
                        not_after=ca.not_after.isoformat()))
    else:
        out.append(ok("ca.expiry", f"the CA is valid until {when} ({plural(days, 'day')})",
                      not_after=ca.not_after.isoformat()))
    return out


def check_bundle(bundle: Path, ca_cert: Path, roots: Sequence[bytes]) -> Check:
    if not bundle.exists():
        return warn("bundle", f"no merged CA bundle yet ({bundle})",
                    "`cordon setup codex` (or claude-code) builds it; `cordon exec` builds its own")
    try:
        blocks = set(split_pem_certs(bundle.read_bytes()))
        ca_blocks = split_pem_certs(ca_cert.read_bytes()) if ca_cert.exists() else []
    except OSError as e:
        return fail("bundle", f"cannot read {bundle}: {e.strerror}", f"check the permissions of {bundle}")
    rebuild = "run `cordon setup codex` (or claude-code) again to rebuild it"
    if not ca_blocks:
        return warn("bundle", f"{bundle} exists but the CA it should hold does not", rebuild)
    if not all(b in blocks for b in ca_blocks):
        return fail("bundle", f"{bundle} does not hold this scope's CA (it was built for another CA)", rebuild)
    system = set(roots)
    if not system:
        return warn("bundle", "no system root certificates found on this machine to compare the bundle with",
                    "install the system CA bundle (Debian/Ubuntu: `apt-get install ca-certificates`)")
    held = len(blocks & system)
    if held == 0:
        return fail("bundle", f"{bundle} holds no system roots: every tunnelled HTTPS connection would fail",
                    rebuild)
    return ok("bundle", f"{bundle.name} holds the CA and {held} system roots", system_roots=held)


# ---------------------------------------------------------------- secrets and 1Password

def check_secrets(config: Config, env: Mapping[str, str]) -> list[Check]:
    out = []
    for route, err in SecretResolver(env, op_path=config.op_path).check(config.routes):
        cid = f"secret.{route.name}"
        if err is None:
            out.append(ok(cid, f"route '{route.name}': secret resolves ({route.auth.secret.describe()})"))
        else:
            out.append(fail(cid, err.message, err.hint or "see `cordon secret --help`"))
    return out


def check_logins(paths: Paths, env: Mapping[str, str]) -> list[Check]:
    """Each subscription login cordon holds: readable, and what it is (plan, expiry, last refresh)."""
    from cordon.app.logins import login_infos
    out = []
    for info in login_infos(paths, env, check=True):
        cid = f"login.{info.name}"
        if info.problem:
            out.append(fail(cid, f"login {info.name}: {info.problem}",
                            f"run `cordon logout {info.name}` (if it fails, log in with the client again) and "
                            f"`cordon login {info.name}`", **info.as_json()))
        else:
            out.append(ok(cid, f"login {info.name}: {info.describe()}", **info.as_json()))
    return out


def check_live_config(state_dir: Path) -> list[Check]:
    """When this scope's `cordon start` runs: which configuration it serves, and whether an edit
    of cordon.toml failed to load (it then keeps the last good one)."""
    from cordon.app.localclient import get_json
    from cordon.store.runrecord import live_run_record
    rec = live_run_record(state_dir)
    if rec is None:
        return []
    h = get_json(rec.port, "/health", timeout=2.0)
    live = (h.body or {}).get("config") if h.status == 200 else None
    if not isinstance(live, dict):
        return []
    if live.get("error"):
        since = live.get("loaded_at")
        return [fail("config.live", f"cordon.toml changed but failed to load: {live['error']}; the running "
                                    f"proxy (pid {rec.pid}) keeps running the configuration loaded at {since}",
                     "fix the file as the error says: the proxy picks it up on its next connection")]
    return [ok("config.live", f"the running proxy (pid {rec.pid}) serves the current cordon.toml "
                              f"(loaded at {live.get('loaded_at')})", live=live.get("live"))]


def check_upstream_ca_files(config: Config) -> list[Check]:
    """One check per route with `[routes.upstream] ca_file`: the file exists and holds PEM certificates."""
    from cordon.store.upstreamca import check_ca_file
    out = []
    for r in config.routes:
        if r.upstream is None or r.upstream.ca_file is None:
            continue
        cid = f"upstream_ca.{r.name}"
        try:
            check_ca_file(r.upstream.ca_file, r.name, config.path)
        except CordonError as e:
            out.append(fail(cid, e.message, e.hint or "fix ca_file"))
        else:
            out.append(ok(cid, f"route '{r.name}': upstream ca_file {r.upstream.ca_file} holds PEM certificates"))
    return out


Run = Callable[[Sequence[str], Mapping[str, str]], "subprocess.CompletedProcess[str]"]


def _run(argv: Sequence[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, env=dict(env), timeout=30,
                          stdin=subprocess.DEVNULL, check=False)


def check_op(config: Config, env: Mapping[str, str], run: Run = _run) -> list[Check]:
    op_routes = [r for r in config.routes if r.auth.secret.source == "1password"]
    if not op_routes:
        return []
    prog = config.op_path or "op"
    op = prog if os.sep in prog and os.access(prog, os.X_OK) else shutil.which(prog, path=env.get("PATH"))
    names = ", ".join(r.name for r in op_routes)
    if op is None:
        return [fail("op", f"the 1Password CLI ({prog}) is not installed or not on PATH (routes: {names})",
                     "install the 1Password CLI, or give its path in cordon.toml: "
                     '[[secrets.providers]] type = "1password", path = "/usr/local/bin/op"')]
    out = []
    for account in sorted({r.auth.secret.account or "" for r in op_routes}):
        argv = [op, "whoami"] + (["--account", account] if account else [])
        label = f" (account {account})" if account else ""
        try:
            p = run(argv, env)
        except subprocess.TimeoutExpired:
            out.append(fail("op", f"`op whoami`{label} did not answer within 30 s",
                            "unlock 1Password, or check `op whoami` yourself"))
            continue
        if p.returncode == 0:
            out.append(ok("op", f"the 1Password CLI is signed in{label}"))
        else:
            last = (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1][:200]
            out.append(fail("op", f"the 1Password CLI is not signed in{label}: {last}",
                            "run `eval $(op signin)` (or enable the 1Password app's CLI integration, "
                            "or set OP_SERVICE_ACCOUNT_TOKEN)"))
    return out


# ---------------------------------------------------------------- tokens

def check_sandbox(config: Config | None, env: Mapping[str, str], paths: Paths) -> Check:
    """Whether `cordon exec` runs commands confined here (docs/confinement.md)."""
    mode = config.exec.sandbox if config is not None else "auto"
    if mode == "off":
        return skip("sandbox", 'confinement is off ([exec] sandbox = "off")')
    from cordon.app.sandbox import availability
    problem = availability(env, paths)
    if problem is None:
        return ok("sandbox", "cordon exec runs commands confined (keyring, secrets and cordon's files hidden)")
    what = "cordon exec refuses to run" if mode == "required" else "cordon exec runs commands unconfined"
    return (fail if mode == "required" else warn)("sandbox", f"{what}: {problem.message}", problem.hint or "")


def check_tokens(state_dir: Path) -> Check:
    store = TokenStore.for_state_dir(state_dir)
    if not store.exists():
        return warn("tokens", f"no tokens.toml in {state_dir}: clients of `cordon start` have no token to use",
                    "`cordon setup codex` (or claude-code) creates it, as does `cordon token rotate`")
    mode = store.path.stat().st_mode & 0o777
    if mode & 0o077:
        return fail("tokens", f"{store.path} is readable by group or others (mode {mode:04o})",
                    f"run `chmod 600 {store.path}`, then `cordon token rotate --all`")
    try:
        names = [t.name for t in store.list()]
    except CordonError as e:
        return fail("tokens", e.message, e.hint or f"fix or remove {store.path}")
    return ok("tokens", f"tokens.toml present (mode {mode:04o}): {', '.join(names) or 'no tokens'}")


# ---------------------------------------------------------------- integrations

@dataclass(frozen=True)
class IntegrationFile:
    name: str          # check id suffix: codex, codex-config, codex-mcp.<server>, claude-code
    path: Path
    vars: dict[str, str]
    setup: str = ""    # the `cordon setup` argument that rewrites it (default: name)


def _ours(vars_: Mapping[str, Any]) -> bool:
    """A variable table cordon wrote: its HTTPS proxy is a loopback http:// URL."""
    url = str(vars_.get("HTTPS_PROXY") or vars_.get("https_proxy") or "")
    return url.startswith("http://") and "@127.0.0.1:" in url


def _codex_config(path: Path) -> list[IntegrationFile]:
    """Codex's config.toml: the shell tools' environment and every MCP server's."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return []
    out = []
    sep = data.get("shell_environment_policy", {})
    shell = sep.get("set") if isinstance(sep, dict) else None
    if isinstance(shell, dict) and _ours(shell):
        out.append(IntegrationFile("codex-config", path, {str(k): str(v) for k, v in shell.items()}, "codex"))
    servers = data.get("mcp_servers", {})
    for name, server in (servers.items() if isinstance(servers, dict) else []):
        env = server.get("env") if isinstance(server, dict) else None
        if isinstance(env, dict) and _ours(env):
            out.append(IntegrationFile(f"codex-mcp.{name}", path, {str(k): str(v) for k, v in env.items()},
                                       "codex"))
    return out


def integration_files(config_path: Path, scope: str, home: Path, env: Mapping[str, str]) -> list[IntegrationFile]:
    """The files `cordon setup` writes (docs/integrations.md) that hold cordon's variables."""
    if scope == "user":
        codex_home = Path(env["CODEX_HOME"]) if env.get("CODEX_HOME") else home / ".codex"
        codex_env, claude = codex_home / ".env", home / ".claude" / "settings.json"
    else:
        codex_home = config_path.parent / ".codex"
        codex_env, claude = codex_home / ".env", config_path.parent / ".claude" / "settings.local.json"
    out = []
    try:
        text = codex_env.read_text(encoding="utf-8")
        if dotenvfile.has_block(text):
            out.append(IntegrationFile("codex", codex_env, dotenvfile.read_block(text)))
    except (OSError, UnicodeDecodeError):
        pass
    out += _codex_config(codex_home / "config.toml")
    try:
        block = json.loads(claude.read_text(encoding="utf-8")).get("env")
        if isinstance(block, dict) and _ours(block):
            out.append(IntegrationFile("claude-code", claude, {str(k): str(v) for k, v in block.items()}))
    except (OSError, ValueError, AttributeError):
        pass
    return out


def check_integration(f: IntegrationFile, listen: int, tokens: Iterable[str], bundle: Path, ca_cert: Path) -> Check:
    cid = f"integration.{f.name}"
    again = f"run `cordon setup {f.setup or f.name}` again"
    problems: list[str] = []
    url = f.vars.get("HTTPS_PROXY") or f.vars.get("https_proxy")
    if not url:
        problems.append("sets no HTTPS_PROXY")
    else:
        u = urlsplit(url)
        try:
            port = u.port
        except ValueError:
            port = None
        if u.hostname != "127.0.0.1" or port != listen:
            problems.append(f"its proxy is {u.hostname}:{port}, but cordon.toml listens on 127.0.0.1:{listen}")
        if u.password is None or unquote(u.password) not in set(tokens):
            problems.append("its proxy token is not in tokens.toml (rotated or revoked)")
    for var in BUNDLE_VARS:
        if var in f.vars and Path(f.vars[var]) != bundle:
            problems.append(f"{var} is {f.vars[var]}, not the bundle {bundle}")
    for var in CA_VARS:
        if var in f.vars and Path(f.vars[var]) != ca_cert:
            problems.append(f"{var} is {f.vars[var]}, not the CA {ca_cert}")
    if "SSL_CERT_FILE" in f.vars and not bundle.exists():
        problems.append(f"the bundle {bundle} does not exist")
    if problems:
        return fail(cid, f"{f.path}: " + "; ".join(problems), again)
    return ok(cid, f"{f.path} points at port {listen}, a valid token and the bundle")


# ---------------------------------------------------------------- service

def check_service(manager: Manager | None, name: str | None) -> Check:
    if manager is None or name is None:
        return skip("service", "no service support on this system")
    try:
        manager.ensure_available()
    except NoServiceManager:
        return skip("service", "no user service manager is running here (use `cordon start`)")
    st = manager.state(name)
    if not st.installed:
        return skip("service", f"no service installed for this scope (`cordon service install` names it {name})")
    if st.active:
        return ok("service", f"service '{name}' ({st.unit}) is {st.state}" + (f", pid {st.pid}" if st.pid else ""))
    hint = (f"see `journalctl --user -u {st.unit}`, then `cordon service start {name}`" if st.manager == "systemd"
            else f"see ~/Library/Logs/cordon/{name}.log, then `cordon service start {name}`")
    if st.state == "failed":
        return fail("service", f"service '{name}' ({st.unit}) has failed", hint)
    return warn("service", f"service '{name}' ({st.unit}) is installed but {st.state}", hint)


def check_agent_keys(config: Config | None, env: Mapping[str, str], home: Path) -> list[Check]:
    """API keys an agent keeps in its own files (opencode's auth.json): they bypass the placeholder."""
    from cordon.app.agentauth import describe, stored_keys
    from cordon.core.routes import PRESETS, RouteTable
    found = stored_keys(env, home)
    if not found:
        return [ok("agent_keys", "no agent keeps an API key of its own (opencode's auth.json)")]
    table = RouteTable(config.routes if config is not None else ())
    out: list[Check] = []
    for k in found:
        cid = f"agent_keys.{k.agent}.{k.provider}"
        if table.match(PRESETS[k.preset].host) is not None:
            out.append(warn(cid, f"{describe(k)}; `cordon exec` hands it the placeholder instead, "
                                 "but the key is still in that file",
                            "cordon holds the key already: remove it with `opencode auth logout`",
                            where=k.where))
        else:
            out.append(warn(cid, f"{describe(k)}, which no route covers: opencode sends it itself",
                            f"move it into cordon: `cordon route add --preset {k.preset}`, "
                            f"`cordon secret set {k.preset}`, then `opencode auth logout`", where=k.where))
    return out
