"""Unmatched hosts: the SSRF guard and connections pinned to the validated address.

`guarded_addresses` resolves the name once and refuses it if ANY address is
forbidden (`cordon.core.ssrf`); `connect_pinned` then connects to those same
addresses (DNS pinning: no second lookup an attacker could answer differently). Used for
opaque CONNECT tunnels and for absolute-form plain HTTP to unmatched hosts.

A CONNECT resolves once per tunnel. Plain HTTP asks per request, so a client
connection keeps its last decision (`GuardMemo`): the next request to the same
host on that connection, within `MEMO_SECONDS`, reuses the addresses that were
checked (and connects to them) instead of resolving and checking again.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable

import anyio
import anyio.abc

from cordon.core import ssrf
from cordon.core.errors import ProtocolError
from cordon.core.routes import normalize_host
from cordon.proxy.pool import os_failure
from cordon.proxy.transport.fastio import connect
from cordon.proxy.transport.stream import Stream


async def resolve(host: str, port: int, timeout: float) -> list[str]:
    """Addresses for `host` (an IP literal resolves to itself), in resolver order."""
    h = normalize_host(host)
    try:
        ipaddress.ip_address(h)
        return [h]
    except ValueError:
        pass
    try:
        with anyio.fail_after(timeout):
            infos = await anyio.getaddrinfo(h, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise ProtocolError(f"resolving {host} timed out", 504)
    except OSError as e:
        raise ProtocolError(f"cannot resolve {host}: {getattr(e, 'strerror', None) or e}", 502)
    out: list[str] = []
    for _fam, _t, _p, _c, addr in infos:
        a = str(addr[0])   # an IPv6 scope (%eth0) is kept: the guard treats it as link-local
        if a not in out:
            out.append(a)
    return out


async def guarded_addresses(host: str, port: int, exemptions: ssrf.Exemptions, timeout: float) -> list[str]:
    """Resolve and vet; ProtocolError(403) when the guard refuses."""
    addrs = await resolve(host, port, timeout)
    why = ssrf.check(host, addrs, exemptions)
    if why:
        raise ProtocolError(f"refused by the SSRF guard: {why}", 403)
    return addrs


MEMO_SECONDS = 1.0   # how long one client connection reuses a decision (the resolver gives no TTL)


class GuardMemo:
    """One client connection's last SSRF decision: (host, checked addresses), for `MEMO_SECONDS`.

    `getaddrinfo` does not say how long its answer may be kept, so the memo
    keeps it for at most one second, whatever the record's TTL; it never
    crosses connections (each CONNECT and each new client resolves afresh), and
    a refusal or a failure is not kept. The addresses handed out are always
    the ones that were checked: the caller connects to them and to nothing else.
    """

    __slots__ = ("_addrs", "_clock", "_exemptions", "_host", "_until", "ttl")

    def __init__(self, ttl: float = MEMO_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._host = ""
        self._addrs: list[str] = []
        self._exemptions: ssrf.Exemptions | None = None
        self._until = 0.0

    async def addresses(self, host: str, port: int, exemptions: ssrf.Exemptions, timeout: float) -> list[str]:
        """`guarded_addresses(host, ...)`, or the memo of the last call for `host` if still fresh
        (and decided under the same exemptions: a reloaded policy decides afresh)."""
        now = self._clock()
        if host == self._host and now < self._until and exemptions is self._exemptions:
            return self._addrs
        self._until = 0.0
        addrs = await guarded_addresses(host, port, exemptions, timeout)
        self._host, self._addrs, self._exemptions = host, addrs, exemptions
        self._until = now + self.ttl   # from before the lookup
        return addrs


async def connect_pinned(host: str, addrs: list[str], port: int, timeout: float) -> Stream:
    """TCP to the first validated address that answers; 502 refused/unreachable, 504 timeout."""
    last: OSError | None = None
    try:
        with anyio.fail_after(timeout):
            for a in addrs:
                try:
                    return await connect(a, port)
                except OSError as e:
                    last = e
    except TimeoutError:
        raise ProtocolError(f"connecting to {host}:{port} timed out after {timeout:g}s", 504)
    if last is None:
        raise ProtocolError(f"{host} did not resolve to any address", 502)
    refused, reason = os_failure(last)
    if refused:
        raise ProtocolError(f"{host}:{port} refused the connection", 502)
    raise ProtocolError(f"cannot reach {host}:{port}: {reason}", 502)
