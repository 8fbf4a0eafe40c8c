"""`open_ca`: the CA pair checked through OpenSSL before `cordon start` is ready, loaded later.

Every pair `load_or_create_ca` refuses, `check_ca` refuses with the same message; the
loader it hands back returns the very CA that was checked.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from cordon.core.certs import create_ca
from cordon.core.errors import ConfigError
from cordon.store.castore import ca_paths, check_ca, load_or_create_ca, open_ca
from tests.conftest import REPO


def pair(root: Path) -> tuple[Path, Path]:
    cert, key = ca_paths(root)
    load_or_create_ca(cert, key)
    return cert, key


def garbage(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "c.pem", tmp / "k.pem"
    cert.write_text("not a cert")
    key.write_text("not a key")
    key.chmod(0o600)
    return cert, key


def mismatched(tmp: Path) -> tuple[Path, Path]:
    return pair(tmp / "a")[0], pair(tmp / "b")[1]


def readable_key(tmp: Path) -> tuple[Path, Path]:
    cert, key = pair(tmp)
    key.chmod(0o644)
    return cert, key


def encrypted_key(tmp: Path) -> tuple[Path, Path]:
    cert, key = ca_paths(tmp)
    ca = load_or_create_ca(cert, key)
    key.write_bytes(ca.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.BestAvailableEncryption(b"pass")))
    return cert, key


def bad_key(tmp: Path) -> tuple[Path, Path]:
    cert, key = pair(tmp)
    key.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    return cert, key


def bad_cert(tmp: Path) -> tuple[Path, Path]:
    cert, key = pair(tmp)
    cert.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    return cert, key


def unreadable_cert(tmp: Path) -> tuple[Path, Path]:
    cert, key = pair(tmp)
    cert.unlink()
    cert.mkdir()   # exists, but reading it fails (a directory: as root, modes would not stop the read)
    return cert, key


@pytest.mark.parametrize("make", [garbage, mismatched, readable_key, encrypted_key, bad_key, bad_cert,
                                  unreadable_cert])
def test_check_refuses_what_the_loader_refuses(tmp_path: Path, make: Callable[[Path], tuple[Path, Path]]) -> None:
    cert, key = make(tmp_path)
    with pytest.raises(ConfigError) as loaded:
        load_or_create_ca(cert, key)
    with pytest.raises(ConfigError) as checked:
        check_ca(cert, key)
    with pytest.raises(ConfigError) as opened:
        open_ca(cert, key)
    # the same sentence up to the detail in parentheses (which library said what), the same hint
    assert checked.value.message.split(" (")[0] == loaded.value.message.split(" (")[0]
    assert checked.value.hint == loaded.value.hint
    assert opened.value.message == checked.value.message


def test_a_good_pair_opens_to_the_same_ca(tmp_path: Path) -> None:
    cert, key = ca_paths(tmp_path)
    ca = load_or_create_ca(cert, key)
    pem, load = open_ca(cert, key)
    assert pem == ca.cert_pem == check_ca(cert, key)
    loaded = load()
    assert loaded.cert == ca.cert and loaded.key_pem() == ca.key_pem()


def test_a_missing_pair_is_created_now(tmp_path: Path) -> None:
    cert, key = ca_paths(tmp_path)
    pem, load = open_ca(cert, key)
    assert cert.read_bytes() == pem and key.exists()
    assert load().cert_pem == pem


def test_a_certificate_replaced_after_the_check_is_refused_by_the_loader(tmp_path: Path) -> None:
    cert, key = ca_paths(tmp_path)
    load_or_create_ca(cert, key)
    _, load = open_ca(cert, key)
    other = create_ca()
    cert.write_bytes(other.cert_pem)
    key.write_bytes(other.key_pem())
    with pytest.raises(ConfigError, match="changed after cordon started"):
        load()


def test_the_check_imports_no_cryptography(tmp_path: Path) -> None:
    cert, key = pair(tmp_path)
    code = ("import sys; from pathlib import Path; from cordon.store.castore import open_ca; "
            "pem, load = open_ca(Path(sys.argv[1]), Path(sys.argv[2])); before = 'cryptography' in sys.modules; "
            "load(); print(before, 'cryptography' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code, str(cert), str(key)], capture_output=True, text=True,
                       cwd=REPO, timeout=60, check=True)
    assert p.stdout.split() == ["False", "True"]
