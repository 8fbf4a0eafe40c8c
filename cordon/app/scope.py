"""What `start`, `wait` and `env` share: a scope's live port and its CA files.

The scope itself (config, state dir) is `cordon.store.scope`; the running proxy
is found through its run record (cordon.store.runrecord).
Heavy modules (cryptography) are imported only by the functions that need them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from cordon.store.runrecord import live_run_record
from cordon.store.scope import Scope

if TYPE_CHECKING:
    from cordon.core.certs import CA

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
    from cordon.store.castore import load_or_create_ca
    ca = load_or_create_ca(scope.ca_cert, scope.ca_key)
    _refresh_bundle(scope, env, ca.cert_pem)
    return ca


def open_ca(scope: Scope, env: Mapping[str, str]) -> tuple[bytes, Callable[[], CA]]:
    """`prepare_ca` for `cordon start`, which needs the CA itself only to sign leaves: the
    pair is checked (or created) and the bundle made current now, with the same errors.
    Returns the certificate's PEM and a function that loads the CA (the cryptography
    import) when called."""
    from cordon.store.castore import open_ca as open_files
    cert_pem, load = open_files(scope.ca_cert, scope.ca_key)
    _refresh_bundle(scope, env, cert_pem)
    return cert_pem, load


def _refresh_bundle(scope: Scope, env: Mapping[str, str], cert_pem: bytes) -> None:
    from cordon.store.castore import build_bundle, write_bundle
    want = build_bundle([cert_pem], _bundle_env(scope, env))
    try:
        current = scope.bundle.read_bytes()
    except OSError:
        current = None
    if current != want:
        write_bundle(scope.bundle, cert_pem, _bundle_env(scope, env))


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
