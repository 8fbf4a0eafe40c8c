"""SECURITY.md names, for every promise, the test that proves it: each name must exist, so the
threat model cannot silently point at a test that was renamed or deleted."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import REPO

REF = re.compile(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`")


def references() -> list[tuple[str, str | None]]:
    text = (REPO / "SECURITY.md").read_text()
    out: list[tuple[str, str | None]] = []
    current = ""
    for m in REF.finditer(text):
        path, name = m.group(1), m.group(2)
        if path:
            current = path
        elif not name:
            continue
        out.append((current, name))
    return out


def test_every_test_named_in_security_md_exists() -> None:
    refs = references()
    assert len(refs) > 30
    missing = []
    for path, name in refs:
        p = REPO / path
        if not p.is_file():
            missing.append(path)
            continue
        if name:
            tree = ast.parse(p.read_text())
            names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
            if name not in names:
                missing.append(f"{path}::{name}")
    assert missing == []


def test_the_reference_parser_follows_continuations() -> None:
    assert REF.findall("`tests/a.py::one`, `::two`") == [("tests/a.py", "one"), ("", "two")]
    assert Path("SECURITY.md").name == "SECURITY.md"
