"""The scope material every integration needs: cordon.toml with a route, CA, bundle, token.

Local files only. The CA and bundle come from `castore`, tokens from `tokens`,
route writing from `configedit` (comments and order of the user's file kept).
Never resolves a secret that could prompt someone (1Password, commands).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cordon.core.errors import CordonError
from cordon.core.model import Config, Route, SecretSpec
from cordon.core.routes import Preset, normalize_host
from cordon.store import castore, configedit
from cordon.store.atomic import atomic_write
from cordon.store.config import load_config
from cordon.store.secrets import SecretResolver, fix_hint
from cordon.store.tokens import TokenStore


def ensure_config(path: Path, preset: Preset, *, add_route: bool) -> tuple[bool, str | None]:
    """Create `path` if missing; add the preset's route if asked and no route has its host.

    Returns (config created, name of the route added or None).
    """
    created = not path.exists()
    cfg = None if created else load_config(path)
    if cfg is not None and any(normalize_host(r.host) == preset.host for r in cfg.routes):
        add_route = False
    if add_route:
        taken = {r.name for r in cfg.routes} if cfg else set()
        name = preset.name if preset.name not in taken else preset.host
        configedit.add_route(path, preset.route(SecretSpec(source="keyring", account=name), name=name))
        return created, name
    if created:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, configedit.NEW_FILE_HEADER, mode=0o644)
    return created, None


@dataclass(frozen=True)
class CaMaterial:
    ca_path: Path          # CA certificate only (NODE_EXTRA_CA_CERTS)
    bundle_path: Path      # system roots + CA (SSL_CERT_FILE and friends)
    ca_created: bool


def ca_files(cfg: Config, state_dir: Path) -> tuple[Path, Path]:
    if cfg.tls.ca_cert_path is not None and cfg.tls.ca_key_path is not None:
        return cfg.tls.ca_cert_path, cfg.tls.ca_key_path
    return castore.ca_paths(state_dir)


def bundle_file(state_dir: Path) -> Path:
    return castore.bundle_path(state_dir)


def ensure_ca_and_bundle(cfg: Config, state_dir: Path, env: Mapping[str, str]) -> CaMaterial:
    """Load or create the scope's CA; rewrite the merged bundle only when its content changes."""
    cert, key = ca_files(cfg, state_dir)
    existed = cert.exists() and key.exists()
    ca = castore.load_or_create_ca(cert, key)
    bundle = bundle_file(state_dir)
    # a bundle that already holds the inherited SSL_CERT_FILE would only copy itself
    benv = {k: v for k, v in env.items()
            if k != "SSL_CERT_FILE" or Path(v).resolve() != bundle.resolve()}
    want = castore.build_bundle([ca.cert_pem], benv)
    try:
        current: bytes | None = bundle.read_bytes()
    except OSError:
        current = None
    if current != want:
        castore.write_bundle(bundle, ca.cert_pem, benv)
    return CaMaterial(ca_path=cert, bundle_path=bundle, ca_created=not existed)


def client_token(state_dir: Path, name: str) -> str:
    return str(TokenStore(state_dir / "tokens.toml").ensure(name))


def revoke_token(state_dir: Path, name: str) -> bool:
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
    if route is None or route.auth.secret.source not in ("keyring", "env", "file"):
        return []
    try:
        problems = SecretResolver(env, op_path=cfg.op_path).check([route])
    except CordonError:
        return [f"store the real key: {fix_hint(route)}"]
    return [f"store the real key: {fix_hint(r)}" for r, err in problems if err is not None]


def exposed_to_git(project_dir: Path, path: Path) -> bool:
    """True when `path` lies in a git work tree and git would not ignore it (it holds the token)."""
    if shutil.which("git") is None:
        return False
    try:
        top = subprocess.run(["git", "-C", str(project_dir), "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, timeout=10, check=False)
        if top.returncode != 0:
            return False
        ignored = subprocess.run(["git", "-C", str(project_dir), "check-ignore", "-q", "--no-index", str(path)],
                                 capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return ignored.returncode == 1
