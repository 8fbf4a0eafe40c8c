"""SSRF through the live proxy: every spelling of an internal address is refused (403) and
nothing connects to it.

A canary listener on 127.0.0.1 counts connections: IPv4 literals in decimal,
octal, hex and short forms, IPv6 and its v4-mapped/compatible/NAT64/6to4 forms,
and DNS names that resolve (entirely or partly) to private addresses must all
leave it untouched, for CONNECT and absolute-form alike. DNS answers come from
the system resolver (`localhost`) or from a fake `socket.getaddrinfo` for
`*.rebind.test`, the seam the proxy's resolver really calls. The name is
resolved once and the connection goes to the vetted address (DNS pinning).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

from cordon.core.errors import ProtocolError
from cordon.core.model import Policy
from cordon.core.ssrf import Exemptions
from cordon.proxy.tunnel import GuardMemo
from tests.proxy_harness import read_to_eof, running_proxy
from tests.security.wire import Scene, proxy_auth_line, recv_response, scene


class Canary:
    """A TCP listener that counts (and immediately closes) every connection it accepts."""

    def __init__(self, host: str = "127.0.0.1", family: int = socket.AF_INET) -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)  # noqa: TID251 (test helper)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\ncanary")
            c.close()

    def close(self) -> None:
        self._stop.set()
        self._t.join(5)
        self.sock.close()


@pytest.fixture
def canary() -> Iterator[Canary]:
    c = Canary()
    yield c
    c.close()


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[list[str]]]:
    """answers[name] = [first answer, second answer, ...] (the last one repeats); calls counted."""
    answers: dict[str, list[list[str]]] = {}
    calls: dict[str, int] = {}
    real: Callable[..., Any] = socket.getaddrinfo

    def fake(host: Any, port: Any, *args: Any, **kw: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if not name.endswith(".rebind.test"):
            return real(host, port, *args, **kw)
        n = calls[name] = calls.get(name, 0) + 1
        seq = answers.get(name)
        if not seq:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        addrs = seq[min(n, len(seq)) - 1]
        out = []
        for a in addrs:
            fam = socket.AF_INET6 if ":" in a else socket.AF_INET
            sa = (a, int(port), 0, 0) if fam == socket.AF_INET6 else (a, int(port))
            out.append((fam, socket.SOCK_STREAM, 6, "", sa))
        return out

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    answers["__calls__"] = calls  # type: ignore[assignment]
    return answers


def connect(sc: Scene, target: str) -> int:
    s = sc.raw()
    s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n".encode() + proxy_auth_line() + b"\r\n")
    r = recv_response(s)
    assert r is not None
    sc.seen.append(r.head + r.body)
    return r.status


def absolute(sc: Scene, authority: str) -> int:
    s = sc.raw()
    s.sendall(f"GET http://{authority}/latest/meta-data/ HTTP/1.1\r\nHost: {authority}\r\n".encode()
              + proxy_auth_line() + b"Connection: close\r\n\r\n")
    r = recv_response(s)
    assert r is not None
    sc.seen.append(r.head + r.body)
    return r.status


LOOPBACK_SPELLINGS = [
    "127.0.0.1", "2130706433", "0x7f000001", "0x7f.0.0.1", "0177.0.0.1", "0177.0000.0000.0001", "127.1",
    "127.0.1", "0x7F.1", "017700000001", "127.000.000.001", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]",
    "[0:0:0:0:0:ffff:127.0.0.1]", "[::127.0.0.1]", "[64:ff9b::127.0.0.1]", "[2002:7f00:1::]",
    "localhost", "LOCALHOST", "localhost.",
]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_loopback_spellings_are_refused(sc: Scene, canary: Canary, host: str) -> None:
    assert connect(sc, f"{host}:{canary.port}") == 403
    assert absolute(sc, f"{host}:{canary.port}") == 403
    assert canary.accepted == 0


@pytest.mark.parametrize("host", [
    "169.254.169.254", "[::ffff:169.254.169.254]", "[::ffff:a9fe:a9fe]", "2852039166", "0xa9fea9fe",
    "0251.0376.0251.0376", "[fe80::1]", "[fe80::1%25lo]", "10.0.0.1", "0x0a000001", "[::ffff:10.0.0.1]",
    "172.16.0.1", "192.168.1.1", "100.64.0.1", "0.0.0.0", "0", "[::]", "[::1]", "[fd00::1]", "[fc00::1]",
    "224.0.0.1", "255.255.255.255", "[ff02::1]", "[2001:0:4136:e378:8000:63bf:3fff:fdd2]",
])
def test_internal_addresses_are_refused(sc: Scene, host: str) -> None:
    assert connect(sc, f"{host}:80") == 403
    assert absolute(sc, f"{host}:80") == 403


def test_ipv6_loopback_canary_untouched(sc: Scene) -> None:
    try:
        c6 = Canary("::1", socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        for host in ("[::1]", "[0:0:0:0:0:0:0:1]", "[::0:1]"):
            assert connect(sc, f"{host}:{c6.port}") == 403
            assert absolute(sc, f"{host}:{c6.port}") == 403
        assert c6.accepted == 0
    finally:
        c6.close()


@pytest.mark.parametrize("answer", [
    ["127.0.0.1"], ["10.1.2.3"], ["169.254.169.254"], ["::1"], ["::ffff:127.0.0.1"], ["fd12:3456::1"],
    ["93.184.216.34", "127.0.0.1"],        # one bad address refuses the whole name (rebinding answers mix)
    ["2606:4700::1111", "fe80::1"],
])
def test_names_resolving_to_internal_addresses_are_refused(sc: Scene, canary: Canary,
                                                          fake_dns: dict[str, Any], answer: list[str]) -> None:
    fake_dns["internal.rebind.test"] = [answer]
    assert connect(sc, f"internal.rebind.test:{canary.port}") == 403
    assert absolute(sc, f"internal.rebind.test:{canary.port}") == 403
    assert canary.accepted == 0
    assert any("SSRF" in r.decode() for r in sc.seen)


def test_dns_rebinding_cannot_swap_the_address_after_the_check(caplog: pytest.LogCaptureFixture, canary: Canary,
                                                                 fake_dns: dict[str, Any]) -> None:
    """First answer: an allowed address (127.0.0.1 is exempted here); every later answer: the cloud
    metadata address. The proxy asks once and connects to what it checked."""
    fake_dns["flip.rebind.test"] = [["127.0.0.1"], ["169.254.169.254"]]
    with scene(caplog, policy=Policy(allow_private=("127.0.0.1/32",))) as sc:
        s = sc.raw()
        s.sendall(f"CONNECT flip.rebind.test:{canary.port} HTTP/1.1\r\n".encode() + proxy_auth_line() + b"\r\n")
        got = read_to_eof(s)     # the canary answers as soon as it accepts, then closes
        assert got.startswith(b"HTTP/1.1 200 Connection established") and got.endswith(b"canary")
        assert fake_dns["__calls__"]["flip.rebind.test"] == 1, "the name must be resolved exactly once"
        # a second connection resolves again and now gets the forbidden answer
        assert connect(sc, f"flip.rebind.test:{canary.port}") == 403
        assert canary.accepted == 1


def test_plain_http_keeps_a_checked_answer_on_its_connection_only(caplog: pytest.LogCaptureFixture,
                                                                  canary: Canary, fake_dns: dict[str, Any]) -> None:
    """Plain HTTP: one client connection reuses its checked answer (and connects to that address);
    the next connection resolves again and is refused when the answer turned internal."""
    fake_dns["flip.rebind.test"] = [["127.0.0.1"], ["169.254.169.254"]]
    with scene(caplog, policy=Policy(allow_private=("127.0.0.1/32",))) as sc:
        s = sc.raw()
        for _ in range(3):
            s.sendall(f"GET http://flip.rebind.test:{canary.port}/ HTTP/1.1\r\n"
                      f"Host: flip.rebind.test:{canary.port}\r\n".encode() + proxy_auth_line() + b"\r\n")
            r = recv_response(s)
            assert r is not None and r.status == 200 and r.body == b"canary"
        assert fake_dns["__calls__"]["flip.rebind.test"] == 1, "one answer per connection, checked once"
        assert canary.accepted == 3          # every request went to the checked address
        assert absolute(sc, f"flip.rebind.test:{canary.port}") == 403
        assert fake_dns["__calls__"]["flip.rebind.test"] == 2
        assert canary.accepted == 3


def test_a_kept_answer_expires(fake_dns: dict[str, Any]) -> None:
    """`GuardMemo` hands out the checked addresses for `ttl` seconds from the lookup, then asks again
    (and a refusal is never kept)."""
    fake_dns["ttl.rebind.test"] = [["127.0.0.1"], ["169.254.169.254"], ["127.0.0.1"]]
    now = [100.0]
    memo = GuardMemo(ttl=1.0, clock=lambda: now[0])
    allow = Exemptions.parse(["127.0.0.1/32"])

    async def ask() -> list[str] | int:
        try:
            return await memo.addresses("ttl.rebind.test", 80, allow, 5.0)
        except ProtocolError as e:
            return e.status

    assert anyio.run(ask) == ["127.0.0.1"]
    now[0] += 0.99
    assert anyio.run(ask) == ["127.0.0.1"]
    assert fake_dns["__calls__"]["ttl.rebind.test"] == 1
    now[0] += 0.02                       # 1.01 s after the lookup: expired
    assert anyio.run(ask) == 403
    assert anyio.run(ask) == ["127.0.0.1"]   # the refusal was not kept: asked again
    assert fake_dns["__calls__"]["ttl.rebind.test"] == 3
    allow = Exemptions.parse([])             # a reloaded policy: decided afresh, within the second
    assert anyio.run(ask) == 403
    assert fake_dns["__calls__"]["ttl.rebind.test"] == 4
    assert GuardMemo().ttl <= 1.0        # never more than a second, whatever the record's TTL


def test_allow_private_is_exact(caplog: pytest.LogCaptureFixture, canary: Canary, fake_dns: dict[str, Any]) -> None:
    """An exemption for one address does not open its neighbours or the metadata service."""
    fake_dns["meta.rebind.test"] = [["169.254.169.254"]]
    with scene(caplog, policy=Policy(allow_private=("127.0.0.1/32", "dev.rebind.test"))) as sc:
        assert connect(sc, f"127.0.0.1:{canary.port}") == 200
        assert connect(sc, "169.254.169.254:80") == 403
        assert connect(sc, "meta.rebind.test:80") == 403
        assert connect(sc, "[::ffff:169.254.169.254]:80") == 403


def test_route_hosts_are_not_subject_to_the_guard_but_others_on_the_same_proxy_are(
        caplog: pytest.LogCaptureFixture, canary: Canary) -> None:
    with scene(caplog) as sc:
        r = sc.send(sc.tunnel(), b"GET /v1/models HTTP/1.1\r\nHost: api.openai.com\r\nConnection: close\r\n\r\n")
        assert r is not None and r.status == 200          # the route's upstream is on loopback
        assert connect(sc, f"127.0.0.1:{canary.port}") == 403
        assert canary.accepted == 0


def test_unresolvable_name_is_502_not_a_crash(sc: Scene, fake_dns: dict[str, Any]) -> None:
    assert connect(sc, "nowhere.rebind.test:443") == 502
    assert absolute(sc, "nowhere.rebind.test:80") == 502


def test_refusals_use_no_proxy_resources(caplog: pytest.LogCaptureFixture, canary: Canary) -> None:
    with running_proxy([]) as px:
        sc = Scene(up=None, px=px, caplog=caplog)  # type: ignore[arg-type]
        try:
            for _ in range(50):
                assert connect(sc, f"127.0.0.1:{canary.port}") == 403
            assert px.stats.refused >= 50 and px.stats.tunnels == 0
        finally:
            sc.close()
    assert canary.accepted == 0
