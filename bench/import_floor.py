"""The floor under `cordon start`'s start-up: processes that only import what it cannot do without.

    bench/.startup-venv/bin/python bench/import_floor.py [-n 15]

Run with the interpreter of bench/.startup-venv (made by bench/startup.py: a
non-editable, byte-compiled install), each command `-n` times after a warm-up;
median wall and CPU (user+system) in ms. Up to "+ anyio, keyring", each step
does strictly less than `cordon start` with keyring routes does before it is
ready (the event loop and TLS for the proxy, anyio, the keyring that holds the
routes' secrets, which are resolved before ready); the last two rows add cryptography's x509 and EC and
one signature, which `cordon start` needed before ready until its CA moved
after it (now only its signing child loads them). Not a test.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

LOOP = "import asyncio, ssl, uvloop"
X509 = LOOP + ", anyio, cryptography.x509; from cryptography.hazmat.primitives.asymmetric import ec"
CA = (X509 + "; import datetime; from cryptography.hazmat.primitives import hashes; "
      "k = ec.generate_private_key(ec.SECP256R1()); n = cryptography.x509.Name([]); "
      "t = datetime.datetime.now(datetime.timezone.utc); "
      "cryptography.x509.CertificateBuilder().subject_name(n).issuer_name(n).public_key(k.public_key())"
      ".serial_number(1).not_valid_before(t).not_valid_after(t + datetime.timedelta(days=1))"
      ".sign(k, hashes.SHA256())")
# what a keyring route needs before ready: the keyring package and its backend (the one
# bench/startup.py uses: keyrings.alt's file backend, named by PYTHON_KEYRING_BACKEND)
KEYRING = LOOP + ", anyio, keyring; keyring.get_keyring()"
CASES = [
    ("the interpreter (`pass`)", "pass"),
    ("+ asyncio, ssl, uvloop", LOOP),
    ("+ anyio", LOOP + ", anyio"),
    ("+ anyio, keyring and its backend", KEYRING),
    ("+ cryptography.x509 and EC", X509),
    ("+ an EC P-256 key and a certificate signed", CA),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=15)
    args = ap.parse_args()
    print("| process | wall ms | cpu ms |")
    print("|---|---|---|")
    for label, code in CASES:
        walls, cpus = [], []
        for i in range(args.n + 1):
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True,
                           env={**os.environ, "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring"})
            t1 = time.perf_counter()
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            if i:   # the first is a warm-up
                walls.append(t1 - t0)
                cpus.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        print(f"| {label} | {statistics.median(walls) * 1000:.0f} | {statistics.median(cpus) * 1000:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
