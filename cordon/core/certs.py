"""Certificate authority and leaf certificates (pure: values in, values out).

EC P-256 everywhere (RSA generation is ~100x slower). A CA may carry X.509
name constraints (RFC 5280 §4.2.1.10) so a leaked session CA can only vouch
for the route hosts. Leaves follow the checklist of mitmproxy's `certs.py`:
SAN, serverAuth EKU, AKI from the CA's SKI, backdated validity.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cordon.core.pem import Leaf as Leaf  # re-exported
from cordon.core.pem import split_pem_certs as split_pem_certs  # re-exported

CA_VALIDITY = dt.timedelta(days=3650)
LEAF_VALIDITY = dt.timedelta(days=200)
BACKDATE = dt.timedelta(days=2)


@dataclass(frozen=True)
class CA:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    @property
    def not_after(self) -> dt.datetime:
        return self.cert.not_valid_after_utc


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def create_ca(common_name: str = "cordon CA", *, permitted_hosts: Iterable[str] | None = None,
              validity: dt.timedelta = CA_VALIDITY, now: dt.datetime | None = None) -> CA:
    """A new CA. With `permitted_hosts`, a critical NameConstraints extension limits it."""
    now = now or _now()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cordon")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    b = (x509.CertificateBuilder()
         .subject_name(name).issuer_name(name)
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - BACKDATE)
         .not_valid_after(now + validity)
         .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                      content_commitment=False, key_encipherment=False,
                                      data_encipherment=False, key_agreement=False,
                                      encipher_only=False, decipher_only=False), critical=True)
         .add_extension(ski, critical=False))
    if permitted_hosts is not None:
        subtrees: list[x509.GeneralName] = []
        for h in sorted(set(permitted_hosts)):
            try:
                ip = ipaddress.ip_address(h)
                bits = 32 if ip.version == 4 else 128
                subtrees.append(x509.IPAddress(ipaddress.ip_network(f"{ip}/{bits}")))
            except ValueError:
                subtrees.append(x509.DNSName(h))
        if not subtrees:
            # nothing is permitted: an empty DNS subtree list would permit all,
            # so permit only a name that cannot exist (RFC 6761 .invalid)
            subtrees.append(x509.DNSName("no-routes.invalid"))
        b = b.add_extension(x509.NameConstraints(permitted_subtrees=subtrees, excluded_subtrees=None),
                            critical=True)
    cert = b.sign(key, hashes.SHA256())
    return CA(cert=cert, key=key)


def load_ca(cert_pem: bytes, key_pem: bytes) -> CA:
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        # RSA CAs from other tools are accepted too; only generation is EC
        return CA(cert=cert, key=key)  # type: ignore[arg-type]
    return CA(cert=cert, key=key)


def issue_leaf(ca: CA, host: str, *, now: dt.datetime | None = None,
               validity: dt.timedelta = LEAF_VALIDITY) -> Leaf:
    """A server certificate for `host` signed by `ca`."""
    now = now or _now()
    key = ec.generate_private_key(ec.SECP256R1())
    not_after = min(now + validity, ca.cert.not_valid_after_utc)
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.cert.public_key())  # type: ignore[arg-type]
    cn = host if len(host) <= 64 else host[:64]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([_general_name(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                         content_commitment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(aki, critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(ca.key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return Leaf(cert_pem=cert_pem, key_pem=key_pem, chain_pem=cert_pem + ca.cert_pem)


class LeafCache:
    """Leaves per host, issued once and kept in memory (mitmproxy's CertStore, minus disk).

    Thread-safe; bounded (least recently used goes first); a leaf within a day of
    expiry is re-issued. The keys never leave memory.
    """

    def __init__(self, ca: CA, *, max_size: int = 256, clock: Callable[[], dt.datetime] = _now) -> None:
        self.ca = ca
        self.max_size = max_size
        self._clock = clock
        self._lock = threading.Lock()
        self._leaves: OrderedDict[str, tuple[Leaf, dt.datetime]] = OrderedDict()

    def get(self, host: str) -> Leaf:
        host = host.lower().rstrip(".")
        now = self._clock()
        with self._lock:
            hit = self._leaves.get(host)
            if hit is not None and hit[1] - now > dt.timedelta(days=1):
                self._leaves.move_to_end(host)
                return hit[0]
            leaf = issue_leaf(self.ca, host, now=now)
            not_after = min(now + LEAF_VALIDITY, self.ca.cert.not_valid_after_utc)
            self._leaves[host] = (leaf, not_after)
            self._leaves.move_to_end(host)
            while len(self._leaves) > self.max_size:
                self._leaves.popitem(last=False)
            return leaf

    def __len__(self) -> int:
        return len(self._leaves)
