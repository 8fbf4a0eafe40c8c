"""Imports point down the layers of DESIGN.md §5; this test fails on one that points up."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "cordon"

# higher number = higher layer; a module may import its own layer or lower ones
LAYERS: dict[str, int] = {
    "errors": 0,
    "model": 1, "routes": 1, "inject": 1, "http1": 1, "certs": 1, "envvars": 1, "ssrf": 1,
    "config": 2, "configedit": 2, "secrets": 2, "castore": 2, "session": 2, "paths": 2,
    "tokens": 2, "dotenvfile": 2, "atomic": 2, "runrecord": 2, "tomlentries": 2,
    "proxy": 3,
    "runner": 4, "integrations": 4, "service": 4, "doctor": 4, "status": 4, "shellhooks": 4,
    "activation": 4,
    "trust": 4,
    "cli": 5,
}


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "cordon":
        return None
    if len(parts) == 1:
        return 0  # cordon/__init__ holds only the version
    return LAYERS.get(parts[1])


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, pkg: list[str] | None = None) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    out: list[tuple[int, str]] = []
    if pkg is None:
        pkg = module_name(path).split(".")
        if path.name != "__init__.py":
            pkg = pkg[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            for a in node.names:  # `from cordon import proxy`
                out.append((node.lineno, f"{mod}.{a.name}"))
    return out


def test_every_module_has_a_layer() -> None:
    unknown = [module_name(p) for p in PKG.rglob("*.py")
               if layer_of(module_name(p)) is None and module_name(p) != "cordon.__main__"]
    assert not unknown, f"add these modules to LAYERS (and DESIGN.md §5): {unknown}"


def test_imports_point_down() -> None:
    bad = []
    for path in PKG.rglob("*.py"):
        me = module_name(path)
        if me == "cordon.__main__":
            continue
        mine = layer_of(me)
        assert mine is not None
        for lineno, mod in imports_of(path):
            theirs = layer_of(mod)
            if theirs is not None and theirs > mine:
                bad.append(f"{path.relative_to(PKG.parent)}:{lineno} imports {mod}")
    assert not bad, "imports that point up the layers:\n" + "\n".join(bad)


def test_the_checker_catches_an_upward_import(tmp_path: Path) -> None:
    f = tmp_path / "x.py"
    f.write_text("from cordon.cli.main import main\nimport cordon.proxy\n")
    found = [m for _, m in imports_of(f, pkg=["cordon"])]
    assert "cordon.cli.main" in found and "cordon.proxy" in found
    assert layer_of("cordon.cli.main") == 5 > layer_of("cordon.config")  # type: ignore[operator]
