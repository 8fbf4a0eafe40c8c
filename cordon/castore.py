"""The persistent per-scope CA on disk and the merged trust bundle.

Local files only: CA under the scope's state dir (`certs/ca-cert.pem`,
`certs/ca-key.pem` 0600 from creation, dirs 0700); bundle = inherited
SSL_CERT_FILE certs, then system roots, then the cordon CA, de-duplicated.

INTERFACE (owned by the foundation issue):
    load_or_create_ca(cert_path, key_path) -> certs.CA
    ca_paths(state_dir) -> tuple[Path, Path]          (cert, key)
    system_roots() -> list[bytes]                      PEM blocks
    build_bundle(extra_pems, env) -> bytes             raises CordonError if no system roots
    write_bundle(path, ca_pem, env) -> Path
"""

from __future__ import annotations

from pathlib import Path


def ca_paths(state_dir: Path) -> tuple[Path, Path]:
    return state_dir / "certs" / "ca-cert.pem", state_dir / "certs" / "ca-key.pem"
