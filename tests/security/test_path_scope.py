"""Path-scoped injection (`[routes.match] paths`) cannot be stretched with dot-segments: the
upstream resolves `/v1/../api/event_logging` to a path outside `/v1/`, so cordon injects nothing
there (the client's copy is still stripped). Nor with the readings only some servers make (`..;`
path parameters, double encoding, overlong UTF-8), nor a fragment, which is refused outright."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.proxy_harness import PLACEHOLDER, SECRET
from tests.security.wire import HOST, Scene, scene


@pytest.fixture
def scoped(caplog: pytest.LogCaptureFixture) -> Iterator[Scene]:
    with scene(caplog, route_kw={"paths": ("/v1/",)}) as s:
        yield s
        s.healthy()
        s.assert_nothing_leaked()


def get(sc: Scene, path: bytes) -> str | None:
    r = sc.send(sc.tunnel(), b"GET " + path + b" HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\nAuthorization: Bearer "
                + PLACEHOLDER.encode() + b"\r\nConnection: close\r\n\r\n")
    assert r is not None and r.status == 200, r
    return sc.up.requests[-1].header("authorization")


@pytest.mark.parametrize("path", [b"/v1/../api/event_logging", b"/v1/%2e%2e/api/x", b"/v1/%2E%2E/api/x",
                                  b"/v1/.%2e/api/x", b"/v1/..%2fapi/x", b"/v1/..", b"/v1/./../x",
                                  b"/v1\\..\\api", b"/v1/%5c..%5capi", b"/api/v1/"])
def test_dot_segments_leave_the_scope(scoped: Scene, path: bytes) -> None:
    assert get(scoped, path) is None, "no credential outside the route's paths (and the client's is stripped)"


@pytest.mark.parametrize("path", [b"/v1/..;/admin", b"/v1/..;jsessionid=x/admin", b"/v1/.;/../admin",
                                  b"/v1/%2e%2e;/admin", b"/v1/..%3b/admin", b"/v1/%252e%252e/admin",
                                  b"/v1/%c0%ae%c0%ae/admin", b"/v1/%ef%bc%8e%ef%bc%8e/admin", b"/v1%2fx",
                                  b"/v1/100%/x", b"/v1/%00/x"])
def test_servers_own_dot_segment_readings_leave_the_scope(scoped: Scene, path: bytes) -> None:
    """Tomcat, Jetty and Spring read `..;x` as `..`; some servers decode twice, or accept overlong
    UTF-8 or full-width dots: whatever some upstream could resolve elsewhere gets no credential."""
    assert get(scoped, path) is None


@pytest.mark.parametrize("path", [b"/v1/#/../../admin", b"/v1/models#x", b"/v1/%23/../#"])
def test_a_fragment_in_the_target_is_400_and_never_forwarded(scoped: Scene, path: bytes) -> None:
    before = len(scoped.up.requests)
    r = scoped.send(scoped.tunnel(), b"GET " + path + b" HTTP/1.1\r\nHost: " + HOST.encode()
                    + b"\r\nAuthorization: Bearer " + PLACEHOLDER.encode() + b"\r\n\r\n")
    assert r is not None and r.status == 400, r
    assert len(scoped.up.requests) == before


@pytest.mark.parametrize("path", [b"/v1/messages", b"/v1/messages?beta=true", b"/v1/a..b/c", b"/v1/.well/x",
                                  b"/v1/a;b/c", b"/v1/caf%c3%a9", b"/v1/x?next=/../admin"])
def test_paths_inside_the_scope_are_injected(scoped: Scene, path: bytes) -> None:
    assert get(scoped, path) == f"Bearer {SECRET}"
