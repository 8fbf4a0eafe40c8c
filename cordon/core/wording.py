"""Small helpers for the words cordon shows users ("1 route", "2 routes"). Pure."""

from __future__ import annotations


def plural(n: int, noun: str, many: str | None = None) -> str:
    """`n` and `noun`, in the plural unless `n` is 1: plural(1, "route") == "1 route"."""
    return f"{n} {noun if n == 1 else (many or noun + 's')}"
