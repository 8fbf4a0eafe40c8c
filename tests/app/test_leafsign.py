"""`sign_in_child`: leaves for `cordon start`, signed by the CA files in a child process."""

from __future__ import annotations

import ssl
import time
from pathlib import Path

import pytest
from cryptography import x509

from cordon.app.leafsign import LeafSignError, child_env, sign_in_child
from cordon.core.certs import create_ca
from cordon.proxy.tls import load_context
from cordon.store.castore import ca_paths, load_or_create_ca


def test_the_child_signs_a_leaf_per_host_with_the_ca_on_disk(tmp_path: Path) -> None:
    cert, key = ca_paths(tmp_path)
    ca = load_or_create_ca(cert, key)
    leaves = sign_in_child(cert, key, ["api.openai.com", "127.0.0.1"], ca.cert_pem)
    assert set(leaves) == {"api.openai.com", "127.0.0.1"}
    leaf, until = leaves["api.openai.com"]
    parsed = x509.load_pem_x509_certificate(leaf.cert_pem)
    assert parsed.issuer == ca.cert.subject
    parsed.verify_directly_issued_by(ca.cert)
    san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["api.openai.com"]
    assert leaf.chain_pem == leaf.cert_pem + ca.cert_pem
    assert until == pytest.approx(parsed.not_valid_after_utc.timestamp(), abs=1)
    assert until > time.time() + 86400 * 100
    assert isinstance(load_context(leaf.chain_pem, leaf.key_pem), ssl.SSLContext)   # the key matches


def test_a_ca_that_changed_since_the_check_is_refused(tmp_path: Path) -> None:
    cert, key = ca_paths(tmp_path)
    load_or_create_ca(cert, key)
    with pytest.raises(LeafSignError, match="changed after cordon started"):
        sign_in_child(cert, key, ["api.openai.com"], create_ca().cert_pem)


def test_a_child_that_fails_says_why(tmp_path: Path) -> None:
    cert, key = ca_paths(tmp_path)
    ca = load_or_create_ca(cert, key)
    key.unlink()
    with pytest.raises(LeafSignError, match="cannot load the CA"):
        sign_in_child(cert, key, ["api.openai.com"], ca.cert_pem)


def test_a_key_that_is_not_the_certificates_is_refused(tmp_path: Path) -> None:
    cert, key = ca_paths(tmp_path / "a")
    ca = load_or_create_ca(cert, key)
    _, other_key = ca_paths(tmp_path / "b")
    load_or_create_ca(*ca_paths(tmp_path / "b"))
    with pytest.raises(LeafSignError, match="does not belong"):
        sign_in_child(cert, other_key, ["api.openai.com"], ca.cert_pem)


def test_the_child_gets_no_secret_from_the_proxys_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REAL_KEY", "sk-env-sourced-secret")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-another")
    assert not {"REAL_KEY", "OPENAI_API_KEY"} & child_env().keys()
    assert "PATH" in child_env()
