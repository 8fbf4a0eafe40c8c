"""The layers of docs/architecture.md are folders; imports point down them, and core/ does no I/O.

    cli -> app -> (proxy, store) -> core

A module may import its own package and the packages below it. proxy/ and
store/ sit side by side and never import each other: the proxy is handed
routes, a secret resolver and an issuer. cli/ never imports proxy/.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "cordon"

# package -> the cordon packages it may import (its own is always allowed)
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "store": {"core"},
    "proxy": {"core"},
    "app": {"core", "store", "proxy"},
    "cli": {"core", "store", "app"},
}
TOP_LEVEL = {"__init__", "__main__"}   # cordon/__init__ (the version) and `python -m cordon`

# what core/ must not import: anything that touches files, processes, sockets or the clock's side effects
IO_MODULES = {"os", "io", "socket", "ssl", "select", "selectors", "signal", "subprocess", "shutil", "tempfile",
              "fcntl", "pty", "termios", "asyncio", "anyio", "keyring", "secretstorage", "http", "urllib.request",
              "pathlib.Path", "logging", "sys", "time"}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_of(module: str) -> str | None:
    """`cordon.store.config` -> "store"; None for modules outside cordon."""
    parts = module.split(".")
    if parts[0] != "cordon":
        return None
    if len(parts) == 1 or parts[1].startswith("__"):
        return "__init__"   # cordon/__init__: the version only
    return parts[1]


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Line numbers of imports under `if TYPE_CHECKING:` (annotations only, nothing runs)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            lines |= {n.lineno for b in node.body for n in ast.walk(b) if isinstance(n, ast.Import | ast.ImportFrom)}
    return lines


def imports_of(path: Path, pkg: list[str] | None = None, *, runtime_only: bool = False) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_only(tree) if runtime_only else set()
    out: list[tuple[int, str]] = []
    if pkg is None:
        pkg = module_name(path).split(".")
        if path.name != "__init__.py":
            pkg = pkg[:-1]
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            for a in node.names:  # `from cordon import proxy`, `from pathlib import Path`
                out.append((node.lineno, f"{mod}.{a.name}"))
    return out


def upward_imports(path: Path, module: str | None = None) -> list[str]:
    """Imports in `path` (the module `module`, by default the one at that path) that break the rules."""
    module = module or module_name(path)
    me = package_of(module)
    if me in TOP_LEVEL or me is None:
        return []
    bad = []
    pkg = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for lineno, mod in imports_of(path, pkg):
        theirs = package_of(mod)
        if theirs is None or theirs == me or theirs == "__init__":
            continue
        if theirs not in ALLOWED.get(me, set()):
            bad.append(f"{module}:{lineno} imports {mod}")
    return bad


def io_imports(path: Path) -> list[str]:
    bad = []
    for lineno, mod in imports_of(path, ["cordon", "core"], runtime_only=True):
        if mod in IO_MODULES or mod.split(".")[0] in IO_MODULES - {"pathlib.Path", "urllib.request"}:
            bad.append(f"{path.name}:{lineno} imports {mod}")
    return bad


def test_every_module_lives_in_a_layer() -> None:
    loose = [p.name for p in PKG.glob("*.py") if p.stem not in TOP_LEVEL]
    assert not loose, f"modules outside the layer folders: {loose}"
    folders = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(ALLOWED), f"layer folders {sorted(folders)} differ from {sorted(ALLOWED)}"


def test_imports_point_down() -> None:
    bad = [b for path in PKG.rglob("*.py") for b in upward_imports(path)]
    assert not bad, "imports that point up or across the layers:\n" + "\n".join(bad)


def test_core_does_no_io() -> None:
    bad = [b for path in (PKG / "core").rglob("*.py") for b in io_imports(path)]
    assert not bad, "I/O imports in core/:\n" + "\n".join(bad)


def test_every_package_says_what_lives_there_and_what_it_may_import() -> None:
    for init in PKG.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert len(doc.splitlines()) >= 2, f"{init.relative_to(PKG.parent)} needs a docstring"
    for name in ALLOWED:
        doc = ast.get_docstring(ast.parse((PKG / name / "__init__.py").read_text())) or ""
        assert "May import" in doc, f"cordon/{name}/__init__.py must say what it may import"


@pytest.mark.parametrize(("where", "source", "expect"), [
    ("cli/x.py", "from cordon.proxy.server import serve\n", "imports cordon.proxy.server"),
    ("proxy/x.py", "import cordon.store.config\n", "imports cordon.store.config"),
    ("store/x.py", "from cordon import app\n", "imports cordon.app"),
    ("core/x.py", "from cordon.store import paths\n", "imports cordon.store"),
])
def test_the_checker_catches_an_upward_import(tmp_path: Path, where: str, source: str, expect: str) -> None:
    f = tmp_path / "x.py"
    f.write_text(source)
    assert any(expect in b for b in upward_imports(f, "cordon." + where.removesuffix(".py").replace("/", ".")))


def test_the_checker_catches_io_in_core(tmp_path: Path) -> None:
    f = tmp_path / "x.py"
    f.write_text("from typing import TYPE_CHECKING\nimport socket\nfrom pathlib import Path\n"
                 "from pathlib import PurePath\nif TYPE_CHECKING:\n    import os\n")
    found = io_imports(f)
    assert any("socket" in b for b in found) and any("pathlib.Path" in b for b in found)
    assert not any("PurePath" in b or "os" in b.split()[-1] for b in found)
