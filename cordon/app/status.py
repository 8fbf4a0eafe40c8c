"""What is running, per scope and per installed service: the data behind `cordon status`.

Reads the run record `cordon start` leaves in the scope's state directory
(`proxy.json`), checks the pid and `/health`, asks the proxy's token-protected
`/status` for per-route counts, reads the CA's expiry and checks that each
route's secret resolves. Never holds on to, returns or prints a secret value.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from cordon.app.localclient import get_json
from cordon.app.service import Manager, NoServiceManager, ServiceState, default_name, names_for_config
from cordon.core.errors import CordonError
from cordon.core.model import Config
from cordon.store.castore import ca_paths
from cordon.store.config import load_config
from cordon.store.paths import Paths
from cordon.store.runrecord import pid_alive, read_run_record
from cordon.store.scope import resolve_scope
from cordon.store.secrets import SecretResolver
from cordon.store.tokens import DEFAULT_TOKEN, TokenStore


@dataclass(frozen=True)
class RouteStatus:
    name: str
    host: str
    secret_source: str               # where it comes from ("keyring cordon/openai"), never the value
    secret_ok: bool
    secret_error: str | None = None
    secret_fix: str | None = None
    requests: int | None = None      # since the proxy started; None when it is not running
    errors: int | None = None


@dataclass(frozen=True)
class CAStatus:
    cert_path: Path
    exists: bool
    not_after: dt.datetime | None = None
    days_left: int | None = None
    problem: str | None = None


@dataclass(frozen=True)
class ScopeStatus:
    scope: str                       # project | user | explicit | service
    config_path: Path | None
    state_dir: Path
    config_error: str | None = None
    running: bool = False
    pid: int | None = None
    port: int | None = None          # the port it runs on (or `listen` when stopped)
    started_at: dt.datetime | None = None
    uptime_s: float | None = None
    version: str | None = None
    notes: tuple[str, ...] = ()      # stale record, /health silent, counts unavailable...
    routes: tuple[RouteStatus, ...] = ()
    ca: CAStatus | None = None
    service_name: str | None = None
    service: ServiceState | None = None
    service_note: str | None = None  # e.g. no service manager here


# ---------------------------------------------------------------- pieces

def live_config_notes(live: Any) -> list[str]:
    """What /health says about the running proxy's configuration (`cordon start` re-reads it)."""
    if not isinstance(live, dict) or not isinstance(live.get("loaded_at"), str):
        return []
    since = f"the configuration loaded at {live['loaded_at']}"
    if live.get("error"):
        return [f"cordon.toml changed but failed to load: {live['error']}; the proxy keeps running {since}"]
    return [f"running {since} (sha256 {live.get('live', '?')}; edits apply on the next connection)"]


def ca_status(cert_path: Path, now: dt.datetime) -> CAStatus:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except FileNotFoundError:
        return CAStatus(cert_path, exists=False)
    except (OSError, ValueError) as e:
        return CAStatus(cert_path, exists=True, problem=f"cannot read the CA certificate: {e}")
    na = cert.not_valid_after_utc
    return CAStatus(cert_path, exists=True, not_after=na, days_left=(na - now).days)


def ca_cert_path(config: Config | None, state_dir: Path) -> Path | None:
    if config is not None and not config.tls.enabled:
        return None
    if config is not None and config.tls.ca_cert_path is not None:
        return config.tls.ca_cert_path
    return ca_paths(state_dir)[0]


def _route_counts(body: Mapping[str, Any]) -> dict[str, tuple[int | None, int | None]]:
    """Per-route (requests, errors) from /status: a mapping by name or a list of objects."""
    routes = body.get("routes")
    out: dict[str, tuple[int | None, int | None]] = {}
    items: list[tuple[str, Any]] = []
    if isinstance(routes, dict):
        items = [(str(k), v) for k, v in routes.items()]
    elif isinstance(routes, list):
        items = [(str(v.get("name")), v) for v in routes if isinstance(v, dict)]
    for name, v in items:
        if isinstance(v, dict):
            req, err = v.get("requests"), v.get("errors")
            out[name] = (req if isinstance(req, int) else None, err if isinstance(err, int) else None)
    return out


def route_statuses(config: Config, env: Mapping[str, str], check_secrets: bool,
                   counts: Mapping[str, tuple[int | None, int | None]] | None) -> tuple[RouteStatus, ...]:
    checked = SecretResolver(env, op_path=config.op_path).check(config.routes) if check_secrets \
        else [(r, None) for r in config.routes]
    out = []
    for route, err in checked:
        msg = err.message if err else None
        if msg and msg.startswith(f"route '{route.name}': "):
            msg = msg[len(f"route '{route.name}': "):]
        req, errs = (counts or {}).get(route.name, (None, None)) if counts is not None else (None, None)
        if counts is not None and route.name not in counts:
            req, errs = 0, 0   # the proxy has seen no request for it yet
        out.append(RouteStatus(name=route.name, host=route.host, secret_source=route.auth.secret.describe(),
                               secret_ok=err is None, secret_error=msg,
                               secret_fix=err.hint if err else None, requests=req, errors=errs))
    return tuple(out)


# ---------------------------------------------------------------- one scope

def scope_status(paths: Paths, env: Mapping[str, str], config_path: Path | None, scope: str, *,
                 manager: Manager | None, service_name: str | None = None, check_secrets: bool = True,
                 now: dt.datetime | None = None) -> ScopeStatus:
    now = now or dt.datetime.now(dt.UTC)
    state_dir = paths.state_dir_for_config(config_path, scope)
    config: Config | None = None
    config_error = None
    if config_path is None or not config_path.exists():
        config_error = f"{config_path or paths.cwd / 'cordon.toml'}: no such file"
    else:
        try:
            config = load_config(config_path, scope)
        except CordonError as e:
            config_error = e.message
    notes: list[str] = []
    running, pid, port, started, uptime, version = False, None, None, None, None, None
    counts: dict[str, tuple[int | None, int | None]] | None = None
    record = read_run_record(state_dir)
    if record is not None:
        pid, port, started, version = record.pid, record.port, record.started_at, record.version
        if not pid_alive(record.pid):
            notes.append(f"stale run record: process {record.pid} is gone (the proxy stopped without cleaning up)")
            pid = None
        else:
            health = get_json(record.port, "/health")
            if health.status == 200:
                running = True
                up = (health.body or {}).get("uptime_s", (health.body or {}).get("uptime"))
                uptime = float(up) if isinstance(up, int | float) and not isinstance(up, bool) else None
                v = (health.body or {}).get("version")
                version = v if isinstance(v, str) else version
                notes += live_config_notes((health.body or {}).get("config"))
                notes += live_config_notes((health.body or {}).get("config"))
                token = _default_token(state_dir)
                st = get_json(record.port, "/status", token=token)
                if st.status == 200 and st.body is not None:
                    counts = _route_counts(st.body)
                else:
                    notes.append("per-route counts unavailable: /status answered "
                                 + (str(st.status) if st.status else (st.error or "nothing")))
            else:
                notes.append(f"process {record.pid} is alive but /health on port {record.port} "
                             f"does not answer ({health.error or health.status})")
    elif config is not None:
        port = config.listen
        h = get_json(config.listen, "/health", timeout=1.0)
        if h.status == 200:
            notes.append(f"a proxy answers on port {config.listen}, but this scope has no run record "
                         "(another scope's proxy, or one started by an older cordon)")
    if uptime is None and running and started is not None:
        uptime = max(0.0, (now - started).total_seconds())
    if port is None and config is not None:
        port = config.listen

    routes = route_statuses(config, env, check_secrets, counts if running else None) if config else ()
    cert = ca_cert_path(config, state_dir)
    ca = ca_status(cert, now) if cert is not None else None

    service, service_note = None, None
    name = service_name
    if name is None and config_path is not None:
        named = names_for_config(manager, config_path) if manager is not None else []
        name = named[0] if named else default_name(paths, config_path)
    if manager is not None and name is not None:
        try:
            manager.ensure_available(config_path)
            service = manager.state(name)
        except NoServiceManager:
            service_note = "no user service manager is running here"
    return ScopeStatus(scope=scope, config_path=config_path, state_dir=state_dir, config_error=config_error,
                       running=running, pid=pid if running else None, port=port,
                       started_at=started if running else None, uptime_s=uptime,
                       version=version if running else None, notes=tuple(notes), routes=routes, ca=ca,
                       service_name=name, service=service, service_note=service_note)


def _default_token(state_dir: Path) -> str | None:
    try:
        return TokenStore.for_state_dir(state_dir).get(DEFAULT_TOKEN)
    except CordonError:      # unreadable or malformed: /status then answers 407, which is reported
        return None


# ---------------------------------------------------------------- every scope

def gather(paths: Paths, env: Mapping[str, str], *, config: str | None, scope: str | None,
           manager: Manager | None, check_secrets: bool = True,
           now: dt.datetime | None = None) -> list[ScopeStatus]:
    """The selected scope first (what `--quiet` answers for), then the others worth showing.

    With --config/--scope only that one. Without: the selected scope, the user
    scope if it has a config, and the config of every installed cordon service.
    """
    selected = resolve_scope(paths, config, scope)
    targets: list[tuple[Path, str, str | None]] = [
        (selected.config_file, selected.name if selected.config_path is not None else "project", None)]
    if config is None and scope is None:
        if paths.user_config.exists():
            targets.append((paths.user_config, "user", None))
        targets += _service_targets(paths, manager)
    out: list[ScopeStatus] = []
    seen: set[tuple[Path, str | None]] = set()
    for path, sc, svc in targets:
        key = (path.resolve(), svc)
        if key in seen:
            continue
        seen.add(key)
        if svc is None and manager is not None:
            named = names_for_config(manager, path)
            seen.update((path.resolve(), n) for n in named[:1])   # shown with this scope already
        out.append(scope_status(paths, env, path, sc, manager=manager, service_name=svc,
                                check_secrets=check_secrets, now=now))
    return out


def _service_targets(paths: Paths, manager: Manager | None) -> Sequence[tuple[Path, str, str | None]]:
    if manager is None:
        return []
    found = []
    for name in manager.installed_names():
        cfg = manager.config_of(manager.path_for(name))
        if cfg is not None:
            sc = "user" if cfg.resolve() == paths.user_config.resolve() else "service"
            found.append((cfg, sc, name))
    return found


def to_json(st: ScopeStatus) -> dict[str, Any]:
    def iso(t: dt.datetime | None) -> str | None:
        return t.isoformat() if t else None

    svc = st.service
    return {
        "scope": st.scope,
        "config": str(st.config_path) if st.config_path else None,
        "config_error": st.config_error,
        "state_dir": str(st.state_dir),
        "running": st.running,
        "pid": st.pid,
        "port": st.port,
        "started_at": iso(st.started_at),
        "uptime_s": round(st.uptime_s, 1) if st.uptime_s is not None else None,
        "version": st.version,
        "notes": list(st.notes),
        "routes": [{"name": r.name, "host": r.host, "secret_source": r.secret_source,
                    "secret_ok": r.secret_ok, "secret_error": r.secret_error, "secret_fix": r.secret_fix,
                    "requests": r.requests, "errors": r.errors} for r in st.routes],
        "ca": None if st.ca is None else {
            "cert_path": str(st.ca.cert_path), "exists": st.ca.exists, "not_after": iso(st.ca.not_after),
            "days_left": st.ca.days_left, "problem": st.ca.problem},
        "service": {
            "name": st.service_name,
            "manager": svc.manager if svc else None,
            "installed": svc.installed if svc else False,
            "active": svc.active if svc else False,
            "state": svc.state if svc else None,
            "pid": svc.pid if svc else None,
            "note": st.service_note,
        },
    }
