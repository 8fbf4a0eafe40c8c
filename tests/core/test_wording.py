"""Counts read as English: "1 route", "2 routes", "0 warnings"."""

from __future__ import annotations

from cordon.core.wording import plural


def test_plural() -> None:
    assert plural(1, "route") == "1 route"
    assert plural(0, "route") == "0 routes"
    assert plural(2, "request") == "2 requests"
    assert plural(1, "entry", "entries") == "1 entry"
    assert plural(3, "entry", "entries") == "3 entries"

