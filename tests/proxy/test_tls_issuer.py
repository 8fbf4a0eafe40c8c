"""`LeafIssuer` handed a function that loads the CA: called once, on first use or `warm`."""

from __future__ import annotations

import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from cordon.core import certs
from cordon.core.errors import ConfigError
from cordon.proxy.tls import LeafIssuer


class Loader:
    """Counts its calls; each call waits for `release` (a slow load, as a cold cryptography import)."""

    def __init__(self, ca: certs.CA, fail: int = 0) -> None:
        self.ca, self.fail, self.calls = ca, fail, 0
        self.release = threading.Event()
        self.release.set()

    def __call__(self) -> certs.CA:
        self.calls += 1
        self.release.wait(10)
        if self.calls <= self.fail:
            raise ConfigError("the CA certificate changed after cordon started", "restart cordon")
        return self.ca


def test_the_loader_runs_on_first_use_only() -> None:
    ca = certs.create_ca()
    load = Loader(ca)
    issuer = LeafIssuer(load)
    assert load.calls == 0
    ctx = issuer.server_context("api.openai.com")
    assert isinstance(ctx, ssl.SSLContext) and load.calls == 1
    assert issuer.server_context("api.openai.com") is ctx and issuer.ca is ca and load.calls == 1


def test_callers_during_the_load_wait_for_it_and_share_it() -> None:
    load = Loader(certs.create_ca())
    load.release.clear()
    issuer = LeafIssuer(load)
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(issuer.server_context, f"h{i % 2}.example") for i in range(8)]
        load.release.set()
        contexts = [f.result(timeout=30) for f in futures]
    assert load.calls == 1
    assert len({id(c) for c in contexts}) == 2   # one context per host


def test_warm_signs_the_hosts_ahead() -> None:
    load = Loader(certs.create_ca())
    issuer = LeafIssuer(load)
    issuer.warm(["api.openai.com", "api.anthropic.com"])
    assert load.calls == 1
    ctx = issuer.server_context("api.openai.com")
    issuer.warm(["api.openai.com"])
    assert issuer.server_context("api.openai.com") is ctx and load.calls == 1


def test_a_failed_load_is_raised_to_the_caller_and_tried_again() -> None:
    load = Loader(certs.create_ca(), fail=1)
    issuer = LeafIssuer(load)
    with pytest.raises(ConfigError, match="changed after cordon started"):
        issuer.warm(["api.openai.com"])
    assert isinstance(issuer.server_context("api.openai.com"), ssl.SSLContext)
    assert load.calls == 2


def test_a_ca_handed_directly_is_used_as_before() -> None:
    ca = certs.create_ca()
    issuer = LeafIssuer(ca)
    assert issuer.ca is ca
    assert isinstance(issuer.server_context("localhost"), ssl.SSLContext)


def signer_for(ca: certs.CA, calls: list[list[str]], fail: bool = False):  # type: ignore[no-untyped-def]
    def sign(hosts):  # type: ignore[no-untyped-def]
        calls.append(list(hosts))
        if fail:
            raise RuntimeError("no child process here")
        return {h: (certs.issue_leaf(ca, h), time.time() + 86400 * 100) for h in hosts}
    return sign


def test_leaves_signed_ahead_need_no_ca_here() -> None:
    ca = certs.create_ca()
    load, calls = Loader(ca), list[list[str]]()
    issuer = LeafIssuer(load, signer=signer_for(ca, calls))
    issuer.warm(["api.openai.com"])
    ctx = issuer.server_context("api.openai.com")
    assert calls == [["api.openai.com"]] and load.calls == 0
    assert issuer.server_context("api.openai.com") is ctx
    issuer.server_context("other.example")   # not signed ahead: the CA is loaded here for it
    assert load.calls == 1


def test_a_failing_signer_falls_back_to_signing_here() -> None:
    ca = certs.create_ca()
    load, calls = Loader(ca), list[list[str]]()
    issuer = LeafIssuer(load, signer=signer_for(ca, calls, fail=True))
    issuer.warm(["api.openai.com"])
    assert calls == [["api.openai.com"]] and load.calls == 1
    assert isinstance(issuer.server_context("api.openai.com"), ssl.SSLContext)


def test_a_leaf_signed_ahead_is_replaced_near_its_expiry() -> None:
    ca = certs.create_ca()
    load = Loader(ca)
    issuer = LeafIssuer(load, signer=lambda hosts: {h: (certs.issue_leaf(ca, h), time.time() + 3600) for h in hosts})
    issuer.warm(["api.openai.com"])
    assert load.calls == 0
    issuer.server_context("api.openai.com")   # valid one more hour: less than a day, so signed anew here
    assert load.calls == 1


def test_a_connection_for_a_host_being_signed_ahead_waits_for_the_signer() -> None:
    ca = certs.create_ca()
    load, release = Loader(ca), threading.Event()

    def slow(hosts):  # type: ignore[no-untyped-def]
        release.wait(10)
        return {h: (certs.issue_leaf(ca, h), time.time() + 86400 * 100) for h in hosts}

    issuer = LeafIssuer(load, signer=slow)
    with ThreadPoolExecutor(2) as pool:
        warming = pool.submit(issuer.warm, ["api.openai.com"])
        while not issuer._signing:   # the signer has started
            time.sleep(0.001)
        pending = pool.submit(issuer.server_context, "api.openai.com")
        time.sleep(0.05)
        assert not pending.done()
        release.set()
        assert isinstance(pending.result(timeout=10), ssl.SSLContext)
        warming.result(timeout=10)
    assert load.calls == 0


def test_a_connection_that_comes_before_warm_starts_waits_for_the_hosts_announced_ahead() -> None:
    ca = certs.create_ca()
    load = Loader(ca)
    issuer = LeafIssuer(load, signer=lambda hosts: {h: (certs.issue_leaf(ca, h), time.time() + 86400 * 100)
                                                    for h in hosts}, ahead=["api.openai.com"])
    with ThreadPoolExecutor(2) as pool:
        pending = pool.submit(issuer.server_context, "api.openai.com")
        time.sleep(0.05)
        assert not pending.done()
        pool.submit(issuer.warm, ["api.openai.com"]).result(timeout=10)
        assert isinstance(pending.result(timeout=10), ssl.SSLContext)
    assert load.calls == 0


def test_waits_says_when_a_context_is_not_at_hand() -> None:
    ca = certs.create_ca()
    issuer = LeafIssuer(Loader(ca), signer=lambda hosts: {h: (certs.issue_leaf(ca, h), time.time() + 86400 * 100)
                                                          for h in hosts}, ahead=["api.openai.com"])
    assert issuer.waits("api.openai.com") and issuer.waits("other.example")
    issuer.warm(["api.openai.com"])
    assert not issuer.waits("api.openai.com") and issuer.waits("other.example")   # the CA is not loaded yet
    issuer.server_context("other.example")
    assert not issuer.waits("other.example") and not LeafIssuer(ca).waits("any.example")
