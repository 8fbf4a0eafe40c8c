"""Leaves signed in a short-lived child process, so that `cordon start` need not load cryptography.

Signing needs cryptography, whose compiled module alone keeps about 9 MiB
resident in the process that imports it, for the process's whole life. Right
after ready, `cordon start` asks a child instead: the child reads the CA pair
from its files, signs one leaf per route host, writes the PEMs back over a
pipe (the leaf keys never touch a disk) and exits. A host that was not signed
ahead (a `*.suffix` route's names, a refused host) is signed in the proxy on
first use, as before, and only then does the proxy load cryptography.

    sign_in_child(cert_path, key_path, hosts, ca_pem) -> dict[str, Leaf]   raises LeafSignError
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


def sign_in_child(cert_path: Path, key_path: Path, hosts: Sequence[str], ca_pem: bytes,
                  ) -> dict[str, tuple[Leaf, float]]:
    """A leaf per host, signed by the CA at these paths in a child process, with the time
    (epoch seconds) it stops being valid. `ca_pem`: the certificate the caller checked; a CA
    that changed since is refused."""
    request = json.dumps({"cert": str(cert_path), "key": str(key_path), "hosts": list(hosts)})
    env = {k: v for k, v in os.environ.items() if k in _KEEP_ENV or k.startswith("PYTHON")}
    code = f"import sys; sys.path.insert(0, {_PACKAGE_ROOT!r}); from cordon.app.leafsign import main; main()"
    try:
        p = subprocess.run([sys.executable, "-c", code], input=request, capture_output=True, text=True,
                           env=env, timeout=TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        raise LeafSignError(f"cannot run the signing process: {e}") from None
    if p.returncode != 0:
        raise LeafSignError(p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}")
    try:
        answer = json.loads(p.stdout)
        leaves = {h: (Leaf(cert_pem=c.encode(), key_pem=k.encode(), chain_pem=(c + answer["ca"]).encode()),
                      float(until)) for h, (c, k, until) in answer["leaves"].items()}
        ca = answer["ca"].encode()
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise LeafSignError(f"unreadable answer from the signing process ({e})") from None
    if split_pem_certs(ca) != split_pem_certs(ca_pem):
        raise LeafSignError(f"the CA certificate {cert_path} changed after cordon started")
    return leaves


def main() -> None:
    """The child: a JSON request on stdin, the leaves as JSON on stdout."""
    from cordon.app.hardening import set_non_dumpable
    set_non_dumpable()   # it holds the CA key and the leaf keys for a moment
    import datetime as dt

    from cordon.core.certs import LEAF_VALIDITY, issue_leaf
    from cordon.core.errors import CordonError
    from cordon.store.castore import load_ca_files

    request = json.loads(sys.stdin.read())
    try:
        ca = load_ca_files(Path(request["cert"]), Path(request["key"]))
    except CordonError as e:
        sys.exit(e.message)
    leaves = {}
    for host in request["hosts"]:
        now = dt.datetime.now(dt.UTC)
        leaf = issue_leaf(ca, host, now=now)
        until = min(ca.not_after, now + LEAF_VALIDITY).timestamp()
        leaves[host] = (leaf.cert_pem.decode(), leaf.key_pem.decode(), until)
    json.dump({"ca": ca.cert_pem.decode(), "leaves": leaves}, sys.stdout)
