"""pathscope.in_scope: in scope only when every server's reading of the path agrees."""

from __future__ import annotations

import pytest

from cordon.core.pathscope import in_scope


@pytest.mark.parametrize("path", ["/v1/models", "/v1/", "/v1/a;b", "/v1/caf%C3%A9", "/v1/x?q=/../y#",
                                  "/v1/%7Euser"])
def test_plain_paths_under_a_prefix_are_in_scope(path: str) -> None:
    assert in_scope(("/v1/",), path.rstrip("#"))


@pytest.mark.parametrize("path", ["/v2/x", "/v1/../x", "/v1/..;/x", "/v1/%2E%2E%3B/x", "/v1/%252e/x",
                                  "/v1/%c0%ae/x", "/v1/\uff0e\uff0e/x", "/v1/%5c..", "/v1/#x", "/v1%2F",
                                  "/v1/%zz", "/v1/%0a"])
def test_ambiguous_or_outside_paths_are_not(path: str) -> None:
    assert not in_scope(("/v1/",), path)


def test_no_prefixes_is_the_whole_host() -> None:
    assert in_scope((), "/anything/../at/all")
