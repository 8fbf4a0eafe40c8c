"""A route's `[routes.upstream] ca_file` that is missing, unreadable or not PEM: a config error
naming the file from `route add|edit`, from the preflight of `exec` and `start`, and from `doctor`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cordon.core import certs
from tests import configs

KEY = "sk-upstream-ca-test-1234567890"


def config(project: Path, ca_file: Path) -> Path:
    return configs.write(project / "cordon.toml", configs.anthropic(
        name="internal", host="api.internal.example", env="UPSTREAM_CA_TEST_KEY",
        upstream={"address": "127.0.0.1:9", "ca_file": str(ca_file)}), listen=0)


@pytest.fixture(params=["missing", "directory", "not-pem", "broken-pem"])
def bad_ca(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str]:
    p = tmp_path / "extra-ca.pem"
    kind = request.param
    if kind == "directory":
        p.mkdir()
        return p, "is a directory, not a file"
    if kind == "not-pem":
        p.write_bytes(b"\x30\x82\x01\x0a binary DER, not PEM\n")
        return p, "is not a PEM certificate file"
    if kind == "broken-pem":
        p.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
        return p, "holds a certificate that does not parse"
    return p, "does not exist"


def expect_one_error(stderr: str, ca: Path, reason: str) -> None:
    lines = [ln for ln in stderr.splitlines() if ln.startswith(("cordon: error:", "hint:"))]
    assert len(lines) == 2, stderr
    assert f"route 'internal': upstream ca_file {ca} {reason}" in lines[0]
    assert "--upstream-ca-file" in lines[1]
    assert "Traceback" not in stderr


def test_exec_preflight_names_the_file(cordon_proc: Any, project: Path, bad_ca: tuple[Path, str]) -> None:
    ca, reason = bad_ca
    config(project, ca)
    p = cordon_proc("exec", "--", "sh", "-c", "echo started", env={"UPSTREAM_CA_TEST_KEY": KEY}, cwd=project)
    assert p.returncode == 1 and "started" not in p.stdout
    expect_one_error(p.stderr, ca, reason)


def test_start_preflight_names_the_file(cordon_proc: Any, project: Path, bad_ca: tuple[Path, str]) -> None:
    ca, reason = bad_ca
    config(project, ca)
    p = cordon_proc("start", env={"UPSTREAM_CA_TEST_KEY": KEY}, cwd=project)
    assert p.returncode == 1 and "ready" not in p.stderr
    expect_one_error(p.stderr, ca, reason)


def test_route_edit_and_add_refuse_it(cordon_proc: Any, project: Path, bad_ca: tuple[Path, str],
                                      tmp_path: Path) -> None:
    ca, reason = bad_ca
    good = tmp_path / "good-ca.pem"
    good.write_bytes(certs.create_ca("good").cert_pem)
    cfg = config(project, good)
    before = cfg.read_bytes()
    p = cordon_proc("route", "edit", "internal", "--upstream-ca-file", str(ca), cwd=project)
    assert p.returncode == 1
    expect_one_error(p.stderr, ca, reason)
    assert cfg.read_bytes() == before
    p = cordon_proc("route", "add", "--host", "api.other.example", "--source", "env", "--var", "X",
                    "--upstream-ca-file", str(ca), cwd=project)
    assert p.returncode == 1
    assert f"upstream ca_file {ca} {reason}" in p.stderr
    assert cfg.read_bytes() == before


def test_doctor_fails_the_check_naming_the_file(cordon_proc: Any, project: Path,
                                                bad_ca: tuple[Path, str]) -> None:
    ca, reason = bad_ca
    config(project, ca)
    p = cordon_proc("doctor", "--json", "--no-probes", env={"UPSTREAM_CA_TEST_KEY": KEY}, cwd=project)
    assert p.returncode == 1
    check = next(c for c in json.loads(p.stdout)["checks"] if c["id"] == "upstream_ca.internal")
    assert check["status"] == "fail" and f"upstream ca_file {ca} {reason}" in check["message"]


def test_a_good_ca_file_passes_everywhere(cordon_proc: Any, project: Path, tmp_path: Path) -> None:
    good = tmp_path / "good-ca.pem"
    good.write_bytes(certs.create_ca("good").cert_pem)
    config(project, good)
    p = cordon_proc("exec", "--", "sh", "-c", "echo started", env={"UPSTREAM_CA_TEST_KEY": KEY}, cwd=project)
    assert p.returncode == 0 and p.stdout == "started\n", p.stderr
    p = cordon_proc("doctor", "--json", "--no-probes", env={"UPSTREAM_CA_TEST_KEY": KEY}, cwd=project)
    check = next(c for c in json.loads(p.stdout)["checks"] if c["id"] == "upstream_ca.internal")
    assert check["status"] == "ok"
