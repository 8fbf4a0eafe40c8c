"""Every adversarial test ends the same way: a well-behaved client is still served (with the
secret injected), and neither the secret nor the proxy token appears in any response the test
received or any log line the proxy wrote."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.security.wire import Scene, scene


@pytest.fixture
def sc(caplog: pytest.LogCaptureFixture) -> Iterator[Scene]:
    with scene(caplog) as s:
        yield s
        s.healthy()
        s.assert_nothing_leaked()
