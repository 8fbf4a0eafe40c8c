"""One meaning per class name: no two modules of cordon/ define a class of the same name."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "cordon"


def test_no_class_name_is_defined_twice() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for f in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"), str(f))):
            if isinstance(node, ast.ClassDef):
                where[node.name].append(f"{f.relative_to(PACKAGE.parent)}:{node.lineno}")
    twice = {name: places for name, places in where.items() if len(places) > 1}
    assert twice == {}, "rename or merge: " + "; ".join(f"{n} in {', '.join(p)}" for n, p in sorted(twice.items()))
