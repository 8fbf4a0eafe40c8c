"""The SSRF guard's decisions (pure)."""

from __future__ import annotations

import pytest

from cordon.core.ssrf import Exemptions, check, embedded_v4, forbidden_reason


@pytest.mark.parametrize("addr,why", [
    ("127.0.0.1", "loopback"), ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"), ("100.64.0.1", "CGNAT"), ("224.0.0.1", "multicast"),
    ("0.0.0.0", "unspecified"), ("255.255.255.255", "reserved"), ("240.0.0.1", "reserved"),
    ("198.18.0.1", "reserved"), ("::1", "loopback"), ("::", "unspecified"), ("fe80::1", "link-local"),
    ("fd00::1", "private"), ("ff02::1", "multicast"), ("2001:db8::1", "reserved"),
])
def test_forbidden(addr: str, why: str) -> None:
    reason = forbidden_reason(addr)
    assert reason is not None and reason.startswith(why)


@pytest.mark.parametrize("addr", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8",
                                  "2002:0808:0808::1", "64:ff9b::808:808"])
def test_public(addr: str) -> None:
    assert forbidden_reason(addr) is None


@pytest.mark.parametrize("addr,v4", [
    ("::ffff:127.0.0.1", "127.0.0.1"),            # v4-mapped
    ("::127.0.0.1", "127.0.0.1"),                 # v4-compatible
    ("2002:a9fe:a9fe::1", "169.254.169.254"),     # 6to4
    ("64:ff9b::10.0.0.1", "10.0.0.1"),            # NAT64
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "192.0.2.45"),  # Teredo (RFC 4380 example)
])
def test_transition_forms_are_unwrapped(addr: str, v4: str) -> None:
    import ipaddress

    assert str(embedded_v4(ipaddress.IPv6Address(addr))) == v4
    assert forbidden_reason(addr) is not None


def test_any_forbidden_address_refuses_the_name() -> None:
    why = check("rebind.example", ["93.184.216.34", "127.0.0.1"])
    assert why is not None and "127.0.0.1" in why and "allow_private" in why
    assert check("example.org", ["93.184.216.34"]) is None
    assert check("nothing.example", []) is not None


def test_exemptions_by_cidr_and_host() -> None:
    ex = Exemptions.parse(["127.0.0.1/32", "10.0.0.0/8", "Intranet.Example."])
    assert check("x", ["127.0.0.1", "::ffff:10.9.9.9"], ex) is None
    assert check("x", ["127.0.0.2"], ex) is not None
    assert check("intranet.example", ["192.168.1.1", "::1"], ex) is None
