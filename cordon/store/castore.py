"""The persistent per-scope CA on disk and the merged trust bundle.

Local files only: CA under the scope's state dir (`certs/ca-cert.pem`,
`certs/ca-key.pem` 0600 from creation, dirs 0700); bundle = inherited
SSL_CERT_FILE certs, then system roots, then the cordon CA, de-duplicated.
Never touches the OS trust store (that is `cordon trust`).

Interface:
    load_or_create_ca(cert_path, key_path) -> certs.CA
    open_ca(cert_path, key_path) -> (cert PEM, loader)  the pair checked now, loaded when needed
    check_ca(cert_path, key_path) -> bytes             the pair's checks without cryptography
    ca_paths(state_dir) -> tuple[Path, Path]          (cert, key)
    system_roots() -> list[bytes]                      PEM blocks
    build_bundle(extra_pems, env) -> bytes             raises CordonError if no system roots
    write_bundle(path, ca_pem, env) -> Path
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import ssl
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cordon.core.errors import ConfigError, CordonError
from cordon.core.pem import split_pem_certs
from cordon.store.atomic import atomic_write

if TYPE_CHECKING:
    from cordon.core.certs import CA

BUNDLE_NAME = "combined-ca.pem"

# Well-known system bundles, after OpenSSL's compiled-in default (checked first).
SYSTEM_BUNDLES: tuple[str, ...] = (
    "/etc/ssl/certs/ca-certificates.crt",                   # Debian, Ubuntu, Arch, Gentoo, NixOS
    "/etc/pki/tls/certs/ca-bundle.crt",                     # Fedora, RHEL
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",    # RHEL 7+
    "/etc/ssl/ca-bundle.pem",                               # openSUSE
    "/etc/ssl/cert.pem",                                    # macOS, Alpine, BSDs
)


def ca_paths(state_dir: Path) -> tuple[Path, Path]:
    return state_dir / "certs" / "ca-cert.pem", state_dir / "certs" / "ca-key.pem"


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    # as mitmproxy's umask_secret: files and dirs are private from their first byte
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mkdirs(path: Path) -> None:
    """Create missing directories 0700; existing ones (maybe the user's) are left alone."""
    with _umask(0o077):
        path.mkdir(parents=True, exist_ok=True, mode=0o700)


@contextlib.contextmanager
def _creation_lock(directory: Path) -> Iterator[None]:
    """Two cordon processes creating the same CA at once must not mix one's cert with the other's key."""
    with _umask(0o077):
        fd = os.open(directory / ".ca.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _check_key_mode(key_path: Path) -> None:
    try:
        st = key_path.stat()
    except OSError as e:
        raise ConfigError(f"cannot read CA key {key_path}: {e.strerror}", "check the path in [tls]") from None
    if st.st_mode & 0o077:
        raise ConfigError(f"CA key {key_path} is readable by group or others (mode {st.st_mode & 0o777:04o})",
                          f"run `chmod 600 {key_path}`")


def _unreadable(cert_path: Path, e: OSError) -> ConfigError:
    return ConfigError(f"cannot read the CA in {cert_path.parent}: {e.strerror}",
                       "check the [tls] paths and their permissions")


def _invalid(cert_path: Path, key_path: Path, detail: object) -> ConfigError:
    return ConfigError(f"the CA certificate {cert_path} or key {key_path} is not valid PEM ({detail})",
                       "point [tls] at a PEM certificate and unencrypted PEM key, "
                       "or delete both files to let cordon create a new CA")


def _mismatch(cert_path: Path, key_path: Path) -> ConfigError:
    return ConfigError(f"CA key {key_path} does not belong to certificate {cert_path}",
                       "restore the matching pair, or delete both files to create a new CA")


def _no_password() -> bytes:
    raise ValueError("the key is encrypted")


def check_ca(cert_path: Path, key_path: Path) -> bytes:
    """The checks `load_or_create_ca` makes of a pair on disk, through OpenSSL (already loaded
    for TLS) instead of cryptography: the key is private, both files are readable PEM, the key
    belongs to the certificate. Returns the certificate's PEM block, normalised."""
    _check_key_mode(key_path)
    try:
        pems = split_pem_certs(cert_path.read_bytes())
        if not pems:
            raise _invalid(cert_path, key_path, "no certificate in the certificate file")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_path, key_path, password=_no_password)
    except ssl.SSLError as e:
        if e.reason == "KEY_VALUES_MISMATCH":
            raise _mismatch(cert_path, key_path) from None
        raise _invalid(cert_path, key_path, _which_invalid(pems[0])) from None
    except OSError as e:
        raise _unreadable(cert_path, e) from None
    except ValueError as e:
        raise _invalid(cert_path, key_path, e) from None
    return pems[0]


def _which_invalid(cert_pem: bytes) -> str:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=cert_pem.decode("ascii"))
    except (ssl.SSLError, ValueError):
        return "the certificate does not parse"
    return "the key does not parse"


def load_ca_files(cert_path: Path, key_path: Path) -> CA:
    """The CA pair on disk, loaded (cryptography); the errors of `load_or_create_ca`."""
    from cryptography.hazmat.primitives import serialization

    from cordon.core.certs import load_ca

    _check_key_mode(key_path)
    try:
        ca = load_ca(cert_path.read_bytes(), key_path.read_bytes())
    except OSError as e:
        raise _unreadable(cert_path, e) from None
    except (ValueError, TypeError) as e:
        raise _invalid(cert_path, key_path, e) from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if ca.cert.public_key().public_bytes(*spki) != ca.key.public_key().public_bytes(*spki):
        raise _mismatch(cert_path, key_path)
    return ca


def load_or_create_ca(cert_path: Path, key_path: Path, *, common_name: str = "cordon CA") -> CA:
    """Load the CA at these paths, or create an EC P-256 CA there (key 0600, new dirs 0700)."""
    cert_path, key_path = Path(cert_path), Path(key_path)
    if cert_path.exists() and key_path.exists():
        return load_ca_files(cert_path, key_path)
    if cert_path.exists() and not key_path.exists():
        raise ConfigError(f"CA certificate {cert_path} exists but its key {key_path} does not",
                          "restore the key, or delete the certificate to let cordon create a new CA "
                          "(clients that trusted the old one must then trust the new one)")
    _mkdirs(cert_path.parent)
    _mkdirs(key_path.parent)
    with _creation_lock(cert_path.parent):
        if cert_path.exists() and key_path.exists():  # another process won the race
            return load_ca_files(cert_path, key_path)
        from cordon.core.certs import create_ca
        ca = create_ca(common_name)
        # the key first: a certificate on disk means the pair is complete
        with _umask(0o077):
            atomic_write(key_path, ca.key_pem(), mode=0o600)
            atomic_write(cert_path, ca.cert_pem, mode=0o644)
    return ca


def open_ca(cert_path: Path, key_path: Path) -> tuple[bytes, Callable[[], CA]]:
    """The CA's certificate PEM now, and a function that returns the CA itself when called.

    A pair on disk is checked now by `check_ca` (the errors `load_or_create_ca`
    reports, without importing cryptography) and loaded by the function; a
    missing pair is created now. The function raises ConfigError if the files
    changed in between (another certificate than the one checked).
    """
    cert_path, key_path = Path(cert_path), Path(key_path)
    if not (cert_path.exists() and key_path.exists()):
        ca = load_or_create_ca(cert_path, key_path)
        return ca.cert_pem, lambda: ca
    pem = check_ca(cert_path, key_path)

    def load() -> CA:
        ca = load_ca_files(cert_path, key_path)
        if split_pem_certs(ca.cert_pem) != [pem]:
            raise ConfigError(f"the CA certificate {cert_path} changed after cordon started",
                              "restart cordon so that the bundle and the CA agree")
        return ca
    return pem, load


def _read_certs(path: str | os.PathLike[str]) -> list[bytes]:
    try:
        with open(path, "rb") as f:
            return split_pem_certs(f.read())
    except OSError:
        return []


def system_roots(candidates: Sequence[str] | None = None) -> list[bytes]:
    """The system's trusted roots as PEM blocks (the first bundle file that has any).

    Uses OpenSSL's compiled-in default file (not SSL_CERT_FILE, which may point
    at a previous cordon bundle), then the well-known locations, then the
    hashed certificate directory.
    """
    if candidates is None:
        vp = ssl.get_default_verify_paths()
        files = [vp.openssl_cafile, *SYSTEM_BUNDLES]
        dirs = [vp.openssl_capath, "/etc/ssl/certs"]
    else:
        files, dirs = list(candidates), []
    for f in files:
        if f and os.path.isfile(f):
            found = _read_certs(f)
            if found:
                return found
    for d in dirs:
        if not d or not os.path.isdir(d):
            continue
        out: list[bytes] = []
        for name in sorted(os.listdir(d)):
            if name.endswith(".pem") or name.rsplit(".", 1)[-1].isdigit():
                out += _read_certs(os.path.join(d, name))
        if out:
            return _dedup(out)
    return []


def _dedup(blocks: Iterable[bytes]) -> list[bytes]:
    seen: set[bytes] = set()
    out: list[bytes] = []
    for b in blocks:
        if b not in seen:  # blocks are normalised by split_pem_certs, so equal DER => equal bytes
            seen.add(b)
            out.append(b)
    return out


def build_bundle(extra_pems: Iterable[bytes], env: Mapping[str, str], *,
                 system: Sequence[bytes] | None = None) -> bytes:
    """Inherited SSL_CERT_FILE certs, then the system roots, then `extra_pems`; de-duplicated.

    Raises CordonError when there are no system roots: a bundle holding only
    cordon's CA would break every tunnelled (unmatched) TLS connection.
    """
    roots = system_roots() if system is None else [c for s in system for c in split_pem_certs(s)]
    if not roots:
        raise CordonError("no system root certificates found, so cordon cannot build a CA bundle",
                          "install the system CA bundle (Debian/Ubuntu: `apt-get install ca-certificates`)")
    inherited: list[bytes] = []
    if env.get("SSL_CERT_FILE"):
        inherited = _read_certs(env["SSL_CERT_FILE"])
    extra = [c for pem in extra_pems for c in split_pem_certs(pem)]
    return b"".join(_dedup([*inherited, *roots, *extra]))


def write_bundle(path: Path, ca_pem: bytes, env: Mapping[str, str], *,
                 system: Sequence[bytes] | None = None) -> Path:
    """Write the merged bundle atomically (0644: it holds only public certificates)."""
    data = build_bundle([ca_pem], env, system=system)
    _mkdirs(Path(path).parent)
    atomic_write(Path(path), data, mode=0o644)
    return Path(path)


def bundle_path(state_dir: Path) -> Path:
    """Where a scope's merged bundle lives (`cordon start`, `env`, `setup` agree on it)."""
    return state_dir / "certs" / BUNDLE_NAME
