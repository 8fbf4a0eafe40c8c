"""The child of `cordon.app.leafsign`: a JSON request on stdin, the leaves as JSON on stdout.

Imports as little as it can (its start-up runs beside `cordon start`'s own): no
store module; the pair was checked by the parent (`castore.check_ca`), and the
parent refuses an answer whose CA certificate is not the one it checked.
"""

from __future__ import annotations

import json
import os
import sys

NICE = 10   # background work: where no core is free, the proxy's own start-up goes first


def main() -> None:
    from cordon.app.hardening import set_non_dumpable
    set_non_dumpable()   # it holds the CA key and the leaf keys for a moment
    try:
        os.nice(NICE)
    except OSError:
        pass
    import datetime as dt

    from cordon.core.certs import LEAF_VALIDITY, issue_leaf, load_ca

    request = json.loads(sys.stdin.read())
    try:
        with open(request["cert"], "rb") as c, open(request["key"], "rb") as k:
            ca = load_ca(c.read(), k.read())
    except (OSError, ValueError, TypeError) as e:
        sys.exit(f"cannot load the CA: {e}")
    from cryptography.hazmat.primitives import serialization
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if ca.cert.public_key().public_bytes(*spki) != ca.key.public_key().public_bytes(*spki):
        sys.exit("cannot load the CA: the key does not belong to the certificate")
    leaves = {}
    for host in request["hosts"]:
        now = dt.datetime.now(dt.UTC)
        leaf = issue_leaf(ca, host, now=now)
        until = min(ca.not_after, now + LEAF_VALIDITY).timestamp()
        leaves[host] = (leaf.cert_pem.decode(), leaf.key_pem.decode(), until)
    json.dump({"ca": ca.cert_pem.decode(), "leaves": leaves}, sys.stdout)
