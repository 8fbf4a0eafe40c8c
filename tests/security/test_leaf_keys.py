"""The private keys of the leaf certificates cordon signs for intercepted hosts never touch a file
system: they go from memory into the TLS context through an anonymous in-memory file, so there is
no `$TMPDIR/cordon-leaf-*/leaf.pem` for an agent to read, however briefly."""

from __future__ import annotations

import builtins
import os
import socket
import ssl
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from cordon.core import certs
from cordon.proxy import tls


def test_leaf_keys_are_loaded_without_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    created: list[str] = []
    real_open, real_builtin_open, real_mkdtemp = os.open, builtins.open, tempfile.mkdtemp

    def spy_open(path: Any, flags: int, *a: Any, **kw: Any) -> int:
        if flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR):
            created.append(str(path))
        return real_open(path, flags, *a, **kw)

    def spy_builtin_open(file: Any, mode: str = "r", *a: Any, **kw: Any) -> Any:
        if any(c in mode for c in "wax+"):
            created.append(str(file))
        return real_builtin_open(file, mode, *a, **kw)

    def spy_mkdtemp(*a: Any, **kw: Any) -> str:
        d = str(real_mkdtemp(*a, **kw))
        created.append(d)
        return d

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(os, "open", spy_open)
    monkeypatch.setattr(builtins, "open", spy_builtin_open)
    monkeypatch.setattr(tempfile, "mkdtemp", spy_mkdtemp)
    ca = certs.create_ca("cordon test CA")
    ctx = tls.LeafIssuer(ca).server_context("api.openai.com")
    monkeypatch.undo()
    assert created == [], "nothing was created on a file system while loading the leaf"
    assert list(tmp_path.iterdir()) == []

    # and the context serves that leaf: a client trusting the CA completes a handshake
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    a, b = socket.socketpair()
    client = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    with a, b, ThreadPoolExecutor(1) as pool:
        server = pool.submit(lambda: ctx.wrap_socket(b, server_side=True).close())
        with client.wrap_socket(a, server_hostname="api.openai.com") as s:
            peer = s.getpeercert()
            assert peer is not None and peer["subject"]
        server.result(timeout=10)
