"""PEM certificate blocks and leaves as bytes (pure, and light: no cryptography import).

What the trust bundle, `cordon start`'s CA check and a proxy serving leaves
signed elsewhere need; parsing and signing certificates is `cordon.core.certs`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Leaf:
    cert_pem: bytes
    key_pem: bytes
    chain_pem: bytes   # leaf then CA


BEGIN, END = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"


def split_pem_certs(data: bytes) -> list[bytes]:
    """Every CERTIFICATE block in a PEM bundle, normalised (for de-duplication)."""
    out: list[bytes] = []
    pos = 0
    while True:
        s = data.find(BEGIN, pos)
        if s < 0:
            break
        e = data.find(END, s)
        if e < 0:
            break
        block = data[s:e + len(END)]
        body = b"".join(block[len(BEGIN):-len(END)].split())
        out.append(BEGIN + b"\n" + b"\n".join(body[i:i + 64] for i in range(0, len(body), 64))
                   + b"\n" + END + b"\n")
        pos = e + len(END)
    return out
