"""The SSRF guard's decision (pure): may cordon connect to this address?

Unmatched traffic must not reach private, loopback, link-local (cloud
metadata), CGNAT, multicast, unspecified or reserved addresses, nor their IPv6
forms; IPv4 embedded in IPv6 (v4-mapped, v4-compatible, 6to4, NAT64, Teredo)
is unwrapped and checked too. `[policy] allow_private` exempts CIDRs or host
names. No DNS here: the proxy resolves, then asks `check`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from cordon.core.routes import normalize_host

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_V4: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "unspecified"),              # "this network" (RFC 791)
    ("10.0.0.0/8", "private"),                 # RFC 1918
    ("100.64.0.0/10", "CGNAT"),                # RFC 6598
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),          # includes 169.254.169.254 (cloud metadata)
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),              # IETF protocol assignments (RFC 6890)
    ("192.0.2.0/24", "reserved"),              # TEST-NET-1
    ("192.88.99.0/24", "reserved"),            # 6to4 relay anycast (RFC 7526)
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "reserved"),             # benchmarking (RFC 2544)
    ("198.51.100.0/24", "reserved"),           # TEST-NET-2
    ("203.0.113.0/24", "reserved"),            # TEST-NET-3
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),               # includes 255.255.255.255 broadcast
)
_V6: tuple[tuple[str, str], ...] = (
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("100::/64", "reserved"),                  # discard-only (RFC 6666)
    ("64:ff9b:1::/48", "private"),             # local-use NAT64 (RFC 8215)
    ("2001:2::/48", "reserved"),               # benchmarking
    ("2001:10::/28", "reserved"),              # ORCHID
    ("2001:20::/28", "reserved"),              # ORCHIDv2
    ("2001:db8::/32", "reserved"),             # documentation
    ("fc00::/7", "private"),                   # unique local (ULA)
    ("fe80::/10", "link-local"),
    ("fec0::/10", "private"),                  # deprecated site-local
    ("ff00::/8", "multicast"),
)
_V4_NETS = tuple((ipaddress.IPv4Network(n), why) for n, why in _V4)
_V6_NETS = tuple((ipaddress.IPv6Network(n), why) for n, why in _V6)

_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_COMPAT = ipaddress.IPv6Network("::/96")
_SIXTOFOUR = ipaddress.IPv6Network("2002::/16")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_TEREDO = ipaddress.IPv6Network("2001::/32")


def embedded_v4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 transition form carries, if any."""
    n = int(addr)
    if addr in _MAPPED or (addr in _COMPAT and n > 1):
        return ipaddress.IPv4Address(n & 0xFFFFFFFF)
    if addr in _NAT64:
        return ipaddress.IPv4Address(n & 0xFFFFFFFF)
    if addr in _SIXTOFOUR:
        return ipaddress.IPv4Address((n >> 80) & 0xFFFFFFFF)
    if addr in _TEREDO:
        # RFC 4380 §4: the client's address is the last 32 bits, inverted
        return ipaddress.IPv4Address((n & 0xFFFFFFFF) ^ 0xFFFFFFFF)
    return None


def _classify(addr: IPAddress) -> str | None:
    if isinstance(addr, ipaddress.IPv4Address):
        for net, why in _V4_NETS:
            if addr in net:
                return why
        return None
    for net6, why in _V6_NETS:
        if addr in net6:
            return why
    return None


def forbidden_reason(addr: IPAddress | str) -> str | None:
    """Why `addr` is off limits ("loopback", "private", ...), or None if it is public."""
    a = ipaddress.ip_address(addr) if isinstance(addr, str) else addr
    if isinstance(a, ipaddress.IPv6Address):
        if a.scope_id:
            return "link-local"
        v4 = embedded_v4(a)
        if v4 is not None:
            why = _classify(v4)
            return f"{why} (embedded {v4})" if why else None
    return _classify(a)


@dataclass(frozen=True)
class Exemptions:
    """`[policy] allow_private`: networks and host names the guard lets through."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Exemptions:
        nets: list[IPNetwork] = []
        hosts: set[str] = set()
        for e in entries:
            e = e.strip()
            try:
                nets.append(ipaddress.ip_network(e, strict=False))
            except ValueError:
                hosts.add(normalize_host(e))
        return cls(tuple(nets), frozenset(hosts))

    def covers(self, addr: IPAddress) -> bool:
        cands: list[IPAddress] = [addr]
        if isinstance(addr, ipaddress.IPv6Address):
            v4 = embedded_v4(addr)
            if v4 is not None:
                cands.append(v4)
        return any(c in n for c in cands for n in self.networks if c.version == n.version)


def check(host: str, addresses: Iterable[IPAddress | str], exemptions: Exemptions = Exemptions()) -> str | None:
    """None if every address may be used; else a one-line reason naming the first bad one.

    One forbidden address refuses the whole name (DNS rebinding answers often
    mix a public and a private address).
    """
    if normalize_host(host) in exemptions.hosts:
        return None
    addrs = [ipaddress.ip_address(a) if isinstance(a, str) else a for a in addresses]
    if not addrs:
        return f"{host} did not resolve to any address"
    for a in addrs:
        why = forbidden_reason(a)
        if why and not exemptions.covers(a):
            return f"{host} resolves to {a}, a {why} address (allow it with [policy] allow_private)"
    return None
