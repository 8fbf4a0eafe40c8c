"""`cordon trust` / `cordon untrust`: a scope's CA in the operating system's trust store.

Debian/Ubuntu: `/usr/local/share/ca-certificates/cordon-<ns>.crt` plus
`update-ca-certificates`; Fedora/RHEL: `/etc/pki/ca-trust/source/anchors` plus
`update-ca-trust`; macOS: the login keychain via `security`. Only on request:
nothing else in cordon touches a trust store. Without the privileges needed,
the error names the exact commands to run instead. Subprocesses go through an
injected runner; nothing here prints.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from cordon.core.errors import CordonError
from cordon.store.atomic import atomic_write
from cordon.store.scope import Scope

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]
Action = Literal["added", "already", "removed", "absent"]


def run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=120)


@dataclass(frozen=True)
class TrustResult:
    action: Action
    store: str          # which store, for the user
    location: str       # where the certificate is (file or keychain)


class Store(Protocol):
    name: str

    def add(self, label: str, cert_pem: bytes, cert_path: Path) -> TrustResult: ...

    def remove(self, label: str, cert_pem: bytes, cert_path: Path) -> TrustResult: ...

    def contains(self, label: str, cert_pem: bytes) -> bool: ...


def _fail(what: str, proc: subprocess.CompletedProcess[str], hint: str) -> CordonError:
    detail = (proc.stderr or proc.stdout or "").strip().splitlines()
    tail = f": {detail[-1]}" if detail else ""
    return CordonError(f"{what} failed (exit status {proc.returncode}){tail}", hint)


@dataclass
class AnchorDirStore:
    """A directory of anchor files plus a command that rebuilds the system bundle."""

    name: str
    anchors: Path
    rebuild: tuple[str, ...]
    rebuild_after_remove: tuple[str, ...] = ()   # default: `rebuild`
    runner: Runner = run

    def path_for(self, label: str) -> Path:
        return self.anchors / f"cordon-{label}.crt"

    def contains(self, label: str, cert_pem: bytes) -> bool:
        try:
            return self.path_for(label).read_bytes() == cert_pem
        except OSError:
            return False

    def _command(self, removing: bool) -> tuple[str, ...]:
        return (self.rebuild_after_remove or self.rebuild) if removing else self.rebuild

    def _manual(self, cert_path: Path | None, dest: Path) -> str:
        if cert_path is None:
            return f"run as root: `rm {dest} && {' '.join(self._command(True))}`"
        return f"run as root: `install -m 644 {cert_path} {dest} && {' '.join(self._command(False))}`"

    def _rebuild(self, dest: Path, cert_path: Path | None) -> None:
        argv = self._command(cert_path is None)
        try:
            proc = self.runner(argv)
        except FileNotFoundError:
            raise CordonError(f"`{argv[0]}` is not installed",
                              "install the ca-certificates package and run the command again") from None
        if proc.returncode != 0:
            raise _fail(f"`{' '.join(argv)}`", proc, self._manual(cert_path, dest))

    def add(self, label: str, cert_pem: bytes, cert_path: Path) -> TrustResult:
        dest = self.path_for(label)
        if self.contains(label, cert_pem):
            return TrustResult("already", self.name, str(dest))
        if not os.access(self.anchors if self.anchors.exists() else self.anchors.parent, os.W_OK):
            raise CordonError(f"adding a CA to the system trust store needs root ({self.anchors} is "
                              "not writable)", self._manual(cert_path, dest))
        try:
            self.anchors.mkdir(mode=0o755, parents=True, exist_ok=True)
            atomic_write(dest, cert_pem, mode=0o644)
        except PermissionError:
            raise CordonError(f"cannot write {dest}: permission denied", self._manual(cert_path, dest)) from None
        try:
            self._rebuild(dest, cert_path)
        except CordonError:
            with contextlib.suppress(OSError):
                dest.unlink()     # no half-trusted state: the anchor goes if the bundle was not rebuilt
            raise
        return TrustResult("added", self.name, str(dest))

    def remove(self, label: str, cert_pem: bytes, cert_path: Path) -> TrustResult:
        dest = self.path_for(label)
        if not dest.exists():
            return TrustResult("absent", self.name, str(dest))
        try:
            dest.unlink()
        except PermissionError:
            raise CordonError(f"removing a CA from the system trust store needs root ({dest})",
                              self._manual(None, dest)) from None
        self._rebuild(dest, None)
        return TrustResult("removed", self.name, str(dest))


def _sha1(cert_pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303  (how `security -Z` names a cert)


@dataclass
class MacKeychainStore:
    """The user's login keychain, with trust settings for this certificate as a root."""

    home: Path
    runner: Runner = run
    name: str = "macOS login keychain"

    @property
    def keychain(self) -> Path:
        return self.home / "Library" / "Keychains" / "login.keychain-db"

    def contains(self, label: str, cert_pem: bytes) -> bool:
        if not cert_pem:
            return False
        proc = self.runner(["security", "find-certificate", "-a", "-Z", str(self.keychain)])
        return proc.returncode == 0 and _sha1(cert_pem) in proc.stdout

    def add(self, label: str, cert_pem: bytes, cert_path: Path) -> TrustResult:
        if self.contains(label, cert_pem):
            return TrustResult("already", self.name, str(self.keychain))
        argv = ["security", "add-trusted-cert", "-r", "trustRoot", "-k", str(self.keychain), str(cert_path)]
        proc = self.runner(argv)
        if proc.returncode != 0:
            raise _fail("`security add-trusted-cert`", proc,
                        "approve the prompt macOS shows (it asks for your login password), or run: "
                        + " ".join(argv))
        return TrustResult("added", self.name, str(self.keychain))

    def remove(self, label: str, cert_pem: bytes, cert_path: Path) -> TrustResult:
        if not self.contains(label, cert_pem):
            return TrustResult("absent", self.name, str(self.keychain))
        self.runner(["security", "remove-trusted-cert", str(cert_path)])   # its trust settings
        argv = ["security", "delete-certificate", "-Z", _sha1(cert_pem), str(self.keychain)]
        proc = self.runner(argv)
        if proc.returncode != 0:
            raise _fail("`security delete-certificate`", proc, "run: " + " ".join(argv))
        return TrustResult("removed", self.name, str(self.keychain))


def detect_store(home: Path, *, system: str | None = None, root: Path = Path("/"),
                 which: Callable[[str], str | None] = shutil.which, runner: Runner = run) -> Store:
    """The trust store of this machine, or a CordonError saying how to trust the CA by hand."""
    system = system or platform.system()
    if system == "Darwin":
        return MacKeychainStore(home=home, runner=runner)
    if system == "Linux":
        if which("update-ca-certificates") or (root / "usr/local/share/ca-certificates").is_dir():
            # a plain run keeps the removed certificate's links in /etc/ssl/certs; --fresh
            # rebuilds them (Debian's documented way to take a local CA out)
            return AnchorDirStore("system trust store (update-ca-certificates)",
                                  root / "usr/local/share/ca-certificates", ("update-ca-certificates",),
                                  ("update-ca-certificates", "--fresh"), runner)
        if which("update-ca-trust") or (root / "etc/pki/ca-trust/source/anchors").is_dir():
            return AnchorDirStore("system trust store (update-ca-trust)",
                                  root / "etc/pki/ca-trust/source/anchors", ("update-ca-trust", "extract"),
                                  runner=runner)
    raise CordonError(f"cordon does not know how to change the trust store on {system}",
                      "trust the CA by hand, or use the SSL_CERT_FILE/NODE_EXTRA_CA_CERTS variables "
                      "from `cordon env` instead")


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the certificate, as `openssl x509 -fingerprint -sha256` shows it."""
    digest = x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA256()).hex().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


@dataclass(frozen=True)
class ScopeCA:
    label: str              # `user` or the project namespace: names the anchor file
    cert_path: Path
    cert_pem: bytes
    created: bool


def scope_ca(scope: Scope, *, create: bool) -> ScopeCA | None:
    """The scope's CA (the one `cordon start` uses), created if asked and missing."""
    from cordon.app.integrations.scaffold import ca_files
    from cordon.store import castore
    from cordon.store.config import load_config
    if scope.config_file.is_file():
        cert, key = ca_files(load_config(scope.config_file, scope.kind), scope.state_dir)
    else:
        cert, key = castore.ca_paths(scope.state_dir)
    existed = cert.exists() and key.exists()
    if not existed and not create:
        return None
    ca = castore.load_or_create_ca(cert, key)
    return ScopeCA(label=scope.state_dir.name, cert_path=cert, cert_pem=ca.cert_pem, created=not existed)


def trust(scope: Scope, store: Store) -> tuple[TrustResult, ScopeCA]:
    ca = scope_ca(scope, create=True)
    assert ca is not None
    return store.add(ca.label, ca.cert_pem, ca.cert_path), ca


def untrust(scope: Scope, store: Store) -> TrustResult:
    ca = scope_ca(scope, create=False)
    if ca is None:
        # no CA any more: an anchor file of this scope can still be removed by its name
        return store.remove(scope.state_dir.name, b"", scope.state_dir / "certs" / "ca-cert.pem")
    return store.remove(ca.label, ca.cert_pem, ca.cert_path)
