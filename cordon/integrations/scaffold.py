"""The scope material every integration needs: cordon.toml with a route, CA, bundle, token.

Local files only. The CA and bundle come from `castore`, tokens from `tokens`,
route writing from `configedit` (comments and order of the user's file kept).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cordon.atomic import atomic_write
from cordon.errors import CordonError
from cordon.model import DEFAULT_LISTEN, Config, Route, SecretSpec
from cordon.routes import Preset, normalize_host

CONFIG_HEADER = (
    "# cordon: which hosts get a real credential injected, and where it comes from.\n"
    "# Manage routes with `cordon route add|edit|remove`; see the README.\n"
)


def ensure_config(path: Path, preset: Preset, *, add_route: bool) -> tuple[bool, str | None]:
    """Create `path` if missing; add the preset's route if asked and no route has its host.

    Returns (config created, name of the route added or None).
    """
    from cordon.config import parse_config
    created = not path.exists()
    text = "" if created else path.read_text(encoding="utf-8")
    cfg = parse_config(text, path) if text else None
    if cfg is not None and any(normalize_host(r.host) == preset.host for r in cfg.routes):
        add_route = False
    if not created and not add_route:
        return False, None
    if created:
        text = CONFIG_HEADER + f"listen = {DEFAULT_LISTEN}\n"
    name = None
    if add_route:
        taken = {r.name for r in cfg.routes} if cfg else set()
        name = preset.name if preset.name not in taken else preset.host
        route = preset.route(SecretSpec(source="keyring", account=name), name=name)
        text = _add_route(text, route, path)
    parse_config(text, path)   # never write a file cordon itself cannot load
    atomic_write(path, text, mode=None if not created else 0o644)
    return created, name


def _add_route(text: str, route: Route, path: Path) -> str:
    return _append_route(text, route)


def _append_route(text: str, route: Route) -> str:
    # the smallest tomlkit edit: one [[routes]] entry appended, the rest of the file untouched
    import tomlkit
    doc = tomlkit.parse(text)
    a = route.auth
    auth = tomlkit.table()
    auth["type"] = a.type
    auth["header_name"] = a.header_name
    if a.scheme:
        auth["scheme"] = a.scheme
    if a.placeholder_env:
        auth["placeholder_env"] = list(a.placeholder_env)
    secret = tomlkit.table()
    secret["source"] = a.secret.source
    secret["account"] = a.secret.account or route.name
    auth["secret"] = secret
    match = tomlkit.table()
    match["host"] = route.host
    entry = tomlkit.table()
    entry["name"] = route.name
    entry["match"] = match
    entry["auth"] = auth
    secret.add(tomlkit.nl())
    routes = doc.get("routes")
    if routes is None:
        aot = tomlkit.aot()
        aot.append(entry)
        doc["routes"] = aot
    else:
        routes.append(entry)
    return doc.as_string()


@dataclass(frozen=True)
class CaMaterial:
    ca_path: Path          # CA certificate only (NODE_EXTRA_CA_CERTS)
    bundle_path: Path      # system roots + CA (SSL_CERT_FILE and friends)
    ca_created: bool


def ca_files(cfg: Config, state_dir: Path) -> tuple[Path, Path]:
    from cordon import castore
    if cfg.tls.ca_cert_path is not None and cfg.tls.ca_key_path is not None:
        return cfg.tls.ca_cert_path, cfg.tls.ca_key_path
    return castore.ca_paths(state_dir)


def bundle_file(state_dir: Path) -> Path:
    from cordon import castore
    return castore.bundle_path(state_dir)


def ensure_ca_and_bundle(cfg: Config, state_dir: Path, env: Mapping[str, str]) -> CaMaterial:
    from cordon import castore
    cert, key = ca_files(cfg, state_dir)
    existed = cert.exists() and key.exists()
    ca = castore.load_or_create_ca(cert, key)
    bundle = bundle_file(state_dir)
    # a bundle that already holds the inherited SSL_CERT_FILE would only copy itself
    benv = {k: v for k, v in env.items() if k != "SSL_CERT_FILE" or Path(v) != bundle}
    castore.write_bundle(bundle, ca.cert_pem, benv)
    return CaMaterial(ca_path=cert, bundle_path=bundle, ca_created=not existed)


def client_token(state_dir: Path, name: str) -> str:
    from cordon.tokens import TokenStore
    return str(TokenStore(state_dir / "tokens.toml").ensure(name))


def revoke_token(state_dir: Path, name: str) -> bool:
    from cordon.tokens import TokenStore
    store = TokenStore(state_dir / "tokens.toml")
    if store.path.exists() and name in store.load():
        store.revoke(name)
        return True
    return False


def secret_steps(cfg: Config, env: Mapping[str, str], route: Route | None) -> list[str]:
    """A step naming the fix when the route's secret is not stored yet.

    Only sources that answer without asking anyone are checked (keyring, env,
    file); 1Password or a command could prompt, so setup does not run them.
    """
    from cordon.secrets import SecretResolver, fix_hint
    if route is None or route.auth.secret.source not in ("keyring", "env", "file"):
        return []
    try:
        problems = SecretResolver(env, op_path=cfg.op_path).check([route])
    except CordonError:
        return [f"store the real key: {fix_hint(route)}"]
    return [f"store the real key: {fix_hint(r)}" for r, err in problems if err is not None]
