"""The proxy's logic is written against `transport.stream.Stream`, never the concrete streams.

Outside `cordon/proxy/transport/`, `FastStream` is never named (no isinstance
checks, no attribute pokes) and `TLSConn` only ever as `TLSConn.wrap(...)`,
where a TLS session is created. No module imports anyio's private modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import cordon

PKG = Path(cordon.__file__).parent
TRANSPORT = PKG / "proxy" / "transport"


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text(), str(p))) for p in sorted(PKG.rglob("*.py"))]


def test_no_import_from_anyios_private_modules() -> None:
    bad = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            bad += [f"{path.relative_to(PKG)}: {n}" for n in names
                    if n.split(".")[0] == "anyio" and any(part.startswith("_") for part in n.split(".")[1:])]
    assert bad == []


def test_proxy_logic_never_requires_a_concrete_stream() -> None:
    bad = []
    for path, tree in _modules():
        if path.is_relative_to(TRANSPORT):
            continue
        wraps = {id(n.value) for n in ast.walk(tree)
                 if isinstance(n, ast.Attribute) and n.attr == "wrap" and isinstance(n.value, ast.Name)}
        for node in ast.walk(tree):
            if isinstance(node, ast.alias) and node.name == "FastStream":
                bad.append(f"{path.relative_to(PKG)}: imports FastStream")
            if isinstance(node, ast.Name) and node.id == "FastStream":
                bad.append(f"{path.relative_to(PKG)}:{node.lineno}: FastStream")
            if isinstance(node, ast.Name) and node.id == "TLSConn" and id(node) not in wraps:
                bad.append(f"{path.relative_to(PKG)}:{node.lineno}: TLSConn other than TLSConn.wrap")
    assert bad == []


def test_the_concrete_streams_implement_the_protocol() -> None:
    """What mypy checks statically (pool.open_connection assigns both to a `Stream`), at run time."""
    from cordon.proxy.transport.fastio import FastStream
    from cordon.proxy.transport.fasttls import TLSConn
    from cordon.proxy.transport.stream import Stream
    from tests.proxy.memstream import MemoryStream

    methods = [m for m, v in vars(Stream).items() if callable(v) and not m.startswith("_")]
    assert "receive_nowait" in methods and "looks_dead" in methods
    for cls in (FastStream, TLSConn, MemoryStream):
        missing = [m for m in methods if not callable(getattr(cls, m, None))]
        assert missing == [], (cls.__name__, missing)
    assert isinstance(vars(TLSConn)["deadline"], property)   # TLS reads wait on the carrier's deadline


def test_mitm_does_not_import_server() -> None:
    """`server` dispatches to `mitm`; `mitm` declares what it needs (`mitm.ProxyCore`) instead
    of importing `server` back, not even for type checking."""
    tree = ast.parse((PKG / "proxy" / "mitm.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "cordon.proxy.server" not in imported
