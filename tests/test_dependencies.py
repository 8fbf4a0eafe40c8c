"""pyproject.toml is honest: every runtime dependency is imported by cordon/, and cordon/ imports
nothing else from outside the standard library; test-only packages sit in the test extra."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions

from tests.conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _name(req: str) -> str:
    m = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req)
    assert m, req
    return re.sub(r"[-._]+", "-", m.group(0)).lower()


def imported_distributions() -> dict[str, set[str]]:
    """Distribution -> the cordon/ files that import one of its modules."""
    dists = packages_distributions()
    out: dict[str, set[str]] = {}
    for f in sorted((REPO / "cordon").rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            else:
                continue
            for mod in mods:
                top = mod.split(".")[0]
                if top == "cordon" or top in sys.stdlib_module_names:
                    continue
                for d in dists.get(top, [f"<no distribution provides {top}>"]):
                    out.setdefault(_name(d), set()).add(str(f.relative_to(REPO)))
    return out


def test_runtime_dependencies_are_exactly_what_cordon_imports() -> None:
    declared = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    imported = imported_distributions()
    assert {d: sorted(fs) for d, fs in imported.items() if d not in declared} == {}, "imported, not declared"
    assert declared - set(imported) == set(), "declared, never imported by cordon/: move it to the test extra"


def test_the_test_extra_does_not_repeat_a_runtime_dependency() -> None:
    runtime = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    test = {_name(r) for r in PYPROJECT["project"]["optional-dependencies"]["test"]}
    assert runtime & test == set()
