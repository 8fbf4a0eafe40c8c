"""TLS contexts: leaf certificates for intercepted hosts, verified client contexts upstream.

`LeafIssuer` signs one leaf per host with the CA it is handed (or loads
through the function it is handed, on first use or `warm()`) and caches the
server `SSLContext` (ALPN http/1.1 only; the client's SNI is recorded on the
connection for the 421 check). cryptography is imported with the first leaf
signed here; leaves `warm()` gets from a `signer` (signed in another process)
need none of it. `ClientContexts` builds verifying contexts:
system roots (or an override bundle) plus a route's extra `ca_file`.
"""

from __future__ import annotations

import logging
import os
import shutil
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from cordon.core import certs
    from cordon.core.pem import Leaf

    Signer = Callable[[Sequence[str]], Mapping[str, tuple[Leaf, float]]]

log = logging.getLogger("cordon.proxy")
RENEW_BEFORE = 86400.0   # s: a leaf signed ahead is replaced this long before it expires
SIGNER_WAIT = 30.0       # s: at most this long for the signer, then the host's leaf is signed here

ALPN = ["http/1.1"]
SNI_ATTR = "cordon_sni"


class Issuer(Protocol):
    def server_context(self, host: str) -> ssl.SSLContext: ...


def _record_sni(sslobj: Any, name: str | None, ctx: ssl.SSLContext) -> None:
    # the SSLObject is a plain Python object: stash the name the client asked for
    sslobj.cordon_sni = name


def sni_of(ssl_object: Any) -> str | None:
    """The server name a client sent in its ClientHello (None if it sent none)."""
    return getattr(ssl_object, SNI_ATTR, None)


def load_context(chain_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """A TLS server context from PEM bytes, the key never written to a file.

    `SSLContext.load_cert_chain` only reads paths: on Linux the PEM goes into an
    anonymous in-memory file (`memfd_create`), read through `/proc/self/fd/N` and
    closed at once. Only this process (not dumpable, so not ptrace-able by its
    children) can open that path meanwhile. Elsewhere: a 0600 file in a 0700
    temporary directory, removed right after loading.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(ALPN)
    ctx.sni_callback = _record_sni
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None and os.path.isdir("/proc/self/fd"):
        fd = memfd_create("cordon-leaf", os.MFD_CLOEXEC)
        try:
            os.write(fd, chain_pem + key_pem)   # a memfd takes any size in one write
            ctx.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return ctx
    d = tempfile.mkdtemp(prefix="cordon-leaf-")  # 0700: the key is readable by us only
    try:
        p = os.path.join(d, "leaf.pem")
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(chain_pem + key_pem)
        ctx.load_cert_chain(p)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return ctx


class LeafIssuer:
    """A server context per intercepted host, signed by `ca`.

    `ca` is the CA, or a function that returns it: then it is called once, by the
    first leaf signed here (a caller that comes meanwhile waits for it; an error is
    raised to every caller until a call succeeds). `signer`, if given, signs the
    leaves `warm` asks for elsewhere (a child process, so this one never loads
    cryptography for them): (hosts) -> {host: (leaf, valid until, epoch s)}; if it
    fails, they are signed here. `ahead`: the hosts a coming `warm` will sign; a
    connection for one of them waits for it rather than sign its own. Leaves signed here come from `certs.LeafCache`
    (bounded, re-issued near expiry); the context built for a leaf is kept until the
    cache hands out a new leaf.
    """

    def __init__(self, ca: certs.CA | Callable[[], certs.CA], *, signer: Signer | None = None,
                 ahead: Iterable[str] = ()) -> None:
        self._load: Callable[[], certs.CA] | None = ca if callable(ca) else None
        self._leaves: certs.LeafCache | None = None
        if not callable(ca):
            self._leaves = _leaf_cache(ca)
        self._signer = signer
        self._ahead: dict[str, tuple[float, ssl.SSLContext]] = {}   # host -> (valid until, context)
        # the hosts the signer is (or is about to be) busy with
        self._signing: frozenset[str] = frozenset(ahead) if signer is not None else frozenset()
        self._signed = threading.Event()
        if not self._signing:
            self._signed.set()
        self._contexts: dict[str, tuple[certs.Leaf, ssl.SSLContext]] = {}
        self._lock = threading.Lock()
        self._loading = threading.Lock()

    @property
    def ca(self) -> certs.CA:
        return self._cache().ca

    def _cache(self) -> certs.LeafCache:
        leaves = self._leaves
        if leaves is None:
            with self._loading:
                leaves = self._leaves
                if leaves is None:
                    assert self._load is not None
                    leaves = self._leaves = _leaf_cache(self._load())
        return leaves

    def warm(self, hosts: Iterable[str] = ()) -> None:
        """Sign the leaves for `hosts` now (from a worker thread right after the proxy is
        ready), so that the first intercepted connection does not wait for them; without a
        signer, that loads the CA here first. No hosts: nothing (the CA loads on first use)."""
        hosts = list(hosts)
        if not hosts:
            return
        if self._signer is not None and hosts:
            self._signed.clear()
            self._signing = self._signing | frozenset(hosts)   # connections for them wait for the signer
            try:
                signed = self._signer(hosts)
            except Exception as e:
                log.info("signing the route hosts' certificates in a child process failed (%s); "
                         "signing them here", e)
            else:
                for host, (leaf, until) in signed.items():
                    self._ahead[host] = (until, load_context(leaf.chain_pem, leaf.key_pem))
                return
            finally:
                self._signing = frozenset()
                self._signed.set()
        self._cache()
        for host in hosts:
            self.server_context(host)

    def waits(self, host: str) -> bool:
        """Whether `server_context(host)` would wait (for the signer, or for the CA to load):
        the caller then asks from a worker thread, so the event loop keeps serving."""
        if host in self._signing and not self._signed.is_set():
            return True
        return host not in self._ahead and self._leaves is None

    def server_context(self, host: str) -> ssl.SSLContext:
        if host in self._signing:
            self._signed.wait(SIGNER_WAIT)
        ahead = self._ahead.get(host)
        if ahead is not None:
            if time.time() < ahead[0] - RENEW_BEFORE:
                return ahead[1]
            self._ahead.pop(host, None)   # near its expiry: signed here from now on
        leaves = self._cache()
        leaf = leaves.get(host)
        hit = self._contexts.get(host)
        if hit is not None and hit[0] is leaf:
            return hit[1]
        with self._lock:
            hit = self._contexts.get(host)
            if hit is None or hit[0] is not leaf:
                if len(self._contexts) >= leaves.max_size:
                    self._contexts.clear()   # hosts evicted from the leaf cache go too
                hit = self._contexts[host] = (leaf, load_context(leaf.chain_pem, leaf.key_pem))
        return hit[1]


def _leaf_cache(ca: certs.CA) -> certs.LeafCache:
    from cordon.core import certs
    return certs.LeafCache(ca)


class ClientContexts:
    """Verifying client contexts, one per extra CA file (system roots are loaded once each)."""

    def __init__(self, override_ca_file: str | os.PathLike[str] | None = None) -> None:
        self._override = str(override_ca_file) if override_ca_file else None
        self._cache: dict[str | None, ssl.SSLContext] = {}

    def get(self, extra_ca_file: Path | str | None = None) -> ssl.SSLContext:
        key = str(extra_ca_file) if extra_ca_file else None
        ctx = self._cache.get(key)
        if ctx is None:
            ctx = ssl.create_default_context(cafile=self._override)  # None: the system roots
            if key:
                ctx.load_verify_locations(cafile=key)
            ctx.set_alpn_protocols(ALPN)
            self._cache[key] = ctx
        return ctx
