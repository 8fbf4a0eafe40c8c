"""Leaves signed in a short-lived child process, so that `cordon start` need not load cryptography.

Signing needs cryptography, whose compiled module alone keeps about 9 MiB
resident in the process that imports it, for the process's whole life. Right
after ready, `cordon start` asks a child instead: the child reads the CA pair
from its files, signs one leaf per route host, writes the PEMs back over a
pipe (the leaf keys never touch a disk) and exits (`cordon.app.leafsign_child`). `cordon start` starts it
during its preflight, so that it runs beside the rest of the start-up. A host that was not signed
ahead (a `*.suffix` route's names, a refused host) is signed in the proxy on
first use, as before, and only then does the proxy load cryptography.

    Signing(cert_path, key_path, hosts, ca_pem)   the child, started now
        .result() -> {host: (Leaf, valid until)}   raises LeafSignError; .close() stops it
    sign_in_child(...) -> the same at once
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from cordon.core.pem import Leaf, split_pem_certs

TIMEOUT = 30.0
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])   # the folder that holds `cordon/`
_KEEP_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "VIRTUAL_ENV", "LD_LIBRARY_PATH")


class LeafSignError(Exception):
    """The child could not sign (the caller signs in-process instead)."""


def child_argv() -> list[str]:
    """The child's command: -I -S (no site processing: the interpreter's start-up halved),
    with this process's import path instead."""
    path = [_PACKAGE_ROOT, *(p for p in sys.path if p and os.path.isdir(p))]
    code = f"import sys; sys.path[:0] = {path!r}; from cordon.app.leafsign_child import main; main()"
    return [sys.executable, "-I", "-S", "-c", code]


def child_env() -> dict[str, str]:
    """A minimal environment: the proxy's may hold `env`-sourced secrets."""
    return {k: v for k, v in os.environ.items() if k in _KEEP_ENV}


class Signing:
    """A child signing leaves, started at once (it runs beside the caller's own start-up, on
    another core where there is one); `result()` waits for its answer. `ca_pem`: the
    certificate the caller checked (may be set after the start); a CA that differs is refused."""

    def __init__(self, cert_path: Path, key_path: Path, hosts: Sequence[str], ca_pem: bytes | None = None) -> None:
        self.cert_path, self.hosts, self.ca_pem = cert_path, list(hosts), ca_pem
        request = json.dumps({"cert": str(cert_path), "key": str(key_path), "hosts": self.hosts})
        self._error: str | None = None
        self._proc: subprocess.Popen[str] | None = None
        try:
            self._proc = subprocess.Popen(child_argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True, env=child_env())
            assert self._proc.stdin is not None
            self._proc.stdin.write(request)   # a few hundred bytes: the pipe takes them at once
            self._proc.stdin.close()
            self._proc.stdin = None           # so that communicate() only reads
        except OSError as e:
            self.close()
            self._proc, self._error = None, f"cannot run the signing process: {e}"

    def result(self, hosts: Sequence[str] | None = None) -> dict[str, tuple[Leaf, float]]:
        """A leaf per host with the time (epoch seconds) it stops being valid; raises
        LeafSignError. `hosts`, if given, must be those the child was started for."""
        if hosts is not None and list(hosts) != self.hosts:
            raise LeafSignError("the signing process was started for other hosts")
        proc = self._proc
        if proc is None:
            raise LeafSignError(self._error or "the signing process was stopped")
        try:
            out, err = proc.communicate(timeout=TIMEOUT)
        except (OSError, subprocess.SubprocessError) as e:
            self.close()
            raise LeafSignError(f"the signing process failed: {e}") from None
        finally:
            self._proc = None
        if proc.returncode != 0:
            raise LeafSignError(err.strip().splitlines()[-1] if err.strip() else f"exit {proc.returncode}")
        if self.ca_pem is None:
            raise LeafSignError("the CA certificate was not checked")
        return _parse(out, self.cert_path, self.ca_pem)

    def close(self) -> None:
        """Stop the child if it still runs (the caller did not get to ask for the result)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            proc.communicate()


def sign_in_child(cert_path: Path, key_path: Path, hosts: Sequence[str], ca_pem: bytes,
                  ) -> dict[str, tuple[Leaf, float]]:
    """A leaf per host, signed by the CA at these paths in a child process, with the time
    (epoch seconds) it stops being valid. `ca_pem`: the certificate the caller checked; a CA
    that changed since is refused."""
    return Signing(cert_path, key_path, hosts, ca_pem).result()


def _parse(out: str, cert_path: Path, ca_pem: bytes) -> dict[str, tuple[Leaf, float]]:
    try:
        answer = json.loads(out)
        leaves = {h: (Leaf(cert_pem=c.encode(), key_pem=k.encode(), chain_pem=(c + answer["ca"]).encode()),
                      float(until)) for h, (c, k, until) in answer["leaves"].items()}
        ca = answer["ca"].encode()
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise LeafSignError(f"unreadable answer from the signing process ({e})") from None
    if split_pem_certs(ca) != split_pem_certs(ca_pem):
        raise LeafSignError(f"the CA certificate {cert_path} changed after cordon started")
    return leaves
