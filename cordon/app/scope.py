"""What `start`, `wait` and `env` share: the scope's config, state dir, CA files and live port.

The running proxy is found through its run record (cordon.store.runrecord).
Heavy modules (cryptography) are imported only by the functions that need them.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cordon.core.errors import ConfigError
from cordon.core.model import Config
from cordon.store.config import load_config, select_config_path
from cordon.store.paths import Paths
from cordon.store.runrecord import live_run_record, run_record_path

if TYPE_CHECKING:
    from cordon.core.certs import CA

@dataclass(frozen=True)
class Scope:
    config: Config
    config_path: Path
    scope: str
    state_dir: Path
    cordon_home: Path

    @property
    def run_record(self) -> Path:
        return run_record_path(self.state_dir)

    @property
    def ca_cert(self) -> Path:
        from cordon.store.castore import ca_paths
        return self.config.tls.ca_cert_path or ca_paths(self.state_dir)[0]

    @property
    def ca_key(self) -> Path:
        from cordon.store.castore import ca_paths
        return self.config.tls.ca_key_path or ca_paths(self.state_dir)[1]

    @property
    def bundle(self) -> Path:
        from cordon.store.castore import bundle_path
        return bundle_path(self.state_dir)

    @property
    def secrets_gen_file(self) -> Path:
        """Bumped by `cordon secret set|delete` (one file for every scope: keyring entries are
        shared); a running proxy re-resolves its secrets when it changes."""
        from cordon.store.generation import generation_file
        return generation_file(self.cordon_home)


def load_scope(args: argparse.Namespace, paths: Paths) -> Scope:
    """The cordon.toml chosen by --config/--scope (or discovery), parsed; errors name the fix."""
    path, scope = select_config_path(paths, getattr(args, "config", None), getattr(args, "scope", None))
    if path is None:
        raise ConfigError("no cordon.toml here, in a parent directory, or in the user scope",
                          "create one with `cordon setup` or `cordon route add`, or pass --config PATH")
    config = load_config(path, scope)
    return Scope(config=config, config_path=path.resolve(), scope=scope,
                 state_dir=paths.state_dir_for_config(path, scope), cordon_home=paths.cordon_home)


# -- the run record -------------------------------------------------------------------------

def running_port(scope: Scope) -> int | None:
    """The port of the scope's running `cordon start`, if its record is live."""
    rec = live_run_record(scope.state_dir)
    return rec.port if rec is not None else None


def target_port(scope: Scope) -> tuple[int | None, bool]:
    """(port, running): the live record's port, else the configured `listen` (None if 0)."""
    live = running_port(scope)
    if live is not None:
        return live, True
    return (scope.config.listen or None), False


# -- CA and bundle --------------------------------------------------------------------------

def prepare_ca(scope: Scope, env: Mapping[str, str]) -> CA:
    """Load (or create) the scope's CA and make sure the merged bundle is current.

    The bundle is rewritten only when its content would change (new CA, new
    system roots, a different inherited SSL_CERT_FILE), so concurrent readers
    never see a needless replace.
    """
    from cordon.store.castore import build_bundle, load_or_create_ca, write_bundle
    ca = load_or_create_ca(scope.ca_cert, scope.ca_key)
    want = build_bundle([ca.cert_pem], _bundle_env(scope, env))
    try:
        current = scope.bundle.read_bytes()
    except OSError:
        current = None
    if current != want:
        write_bundle(scope.bundle, ca.cert_pem, _bundle_env(scope, env))
    return ca


def ensure_ca_files(scope: Scope, env: Mapping[str, str]) -> None:
    """For `cordon env`: the CA and bundle files exist (created if not). Cheap when they do:
    no cryptography import; `cordon start` refreshes a stale bundle."""
    if scope.ca_cert.is_file() and scope.ca_key.is_file() and scope.bundle.is_file():
        return
    prepare_ca(scope, env)


def _bundle_env(scope: Scope, env: Mapping[str, str]) -> dict[str, str]:
    # an SSL_CERT_FILE that already is this bundle (a shell that ran `cordon env`) adds nothing
    e = dict(env)
    inherited = e.get("SSL_CERT_FILE")
    if inherited and Path(inherited).resolve() == scope.bundle.resolve():
        e.pop("SSL_CERT_FILE")
    return e
