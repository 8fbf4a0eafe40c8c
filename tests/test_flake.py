"""flake.nix, checked offline: every .nix file parses, and the flake's outputs evaluate
against a stand-in for nixpkgs (tests/flake_stub.nix) with pyproject.toml's version and
dependencies; lib.shellHook's output is run in bash. Nothing here builds a derivation:
this machine cannot download nixpkgs (see docs/activation.md).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests import configs
from tests.conftest import REPO, write

pytestmark = pytest.mark.skipif(shutil.which("nix-instantiate") is None,
                                reason="nix-instantiate missing (scripts/test installs Debian's nix-bin)")

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _name(req: str) -> str:
    """A requirement's project name, normalised the way nixpkgs names Python packages."""
    m = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req)
    assert m, req
    return re.sub(r"[._]+", "-", m.group(0)).lower()


def nix_files() -> list[Path]:
    skip = {".git", "node_modules", ".venv", ".direnv", "result"}
    return sorted(p for p in REPO.rglob("*.nix") if not skip & set(p.relative_to(REPO).parts))


def test_the_flake_is_among_the_nix_files() -> None:
    files = nix_files()
    assert REPO / "flake.nix" in files and REPO / "tests" / "flake_stub.nix" in files


@pytest.mark.parametrize("path", nix_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_nix_file_parses(path: Path) -> None:
    r = subprocess.run(["nix-instantiate", "--parse", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def fake_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stands in for the package's $out: bin/cordon runs this checkout."""
    out = tmp_path_factory.mktemp("cordon-out")
    cordon = out / "bin" / "cordon"
    write(cordon, f"#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m cordon \"$@\"\n")
    cordon.chmod(0o755)
    return out


def evaluate(repo: Path, fake_out: Path) -> dict[str, Any]:
    """The stub's view of `repo`'s flake.nix (with `repo`'s pyproject.toml)."""
    r = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", str(repo / "tests" / "flake_stub.nix"),
                        "--argstr", "fakeOut", str(fake_out)],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "NIX_PATH": ""})
    assert r.returncode == 0, r.stderr
    result: dict[str, Any] = json.loads(r.stdout)
    return result


@pytest.fixture(scope="module")
def outputs(fake_out: Path) -> dict[str, Any]:
    return evaluate(REPO, fake_out)


def test_flake_version_is_pyprojects(outputs: dict[str, Any]) -> None:
    assert outputs["version"] == PYPROJECT["project"]["version"]
    assert outputs["overlayVersion"] == PYPROJECT["project"]["version"]
    assert outputs["pname"] == PYPROJECT["project"]["name"]


def test_package_is_a_pyproject_build_with_pyprojects_dependencies(outputs: dict[str, Any]) -> None:
    assert outputs["pyproject"] is True
    assert outputs["build-system"] == [_name(r) for r in PYPROJECT["build-system"]["requires"]]
    assert sorted(outputs["dependencies"]) == sorted(_name(r) for r in PYPROJECT["project"]["dependencies"])
    assert outputs["pythonImportsCheck"] == ["cordon"]
    assert outputs["mainProgram"] == "cordon"
    assert "shell-hooks/cordon.direnvrc $out/share/cordon/" in outputs["postInstall"]


def test_the_flake_takes_its_python_dependencies_from_pyproject(fake_out: Path, tmp_path: Path) -> None:
    """pyproject.toml is the one list: a dependency moved there moves in the flake too."""
    (tmp_path / "tests").mkdir()
    shutil.copy(REPO / "flake.nix", tmp_path / "flake.nix")
    shutil.copy(REPO / "tests" / "flake_stub.nix", tmp_path / "tests" / "flake_stub.nix")
    text = (REPO / "pyproject.toml").read_text()
    # move pexpect from the test extra to the runtime dependencies, spelled the way pip allows
    moved = text.replace('  "pexpect>=4.9",\n', "")
    moved = moved.replace('dependencies = [\n', 'dependencies = [\n  "PExpect >=4.9",\n', 1)
    assert moved != text
    (tmp_path / "pyproject.toml").write_text(moved)
    out = evaluate(tmp_path, fake_out)
    assert "pexpect" in out["dependencies"] and "pexpect" not in out["nativeCheckInputs"]
    assert sorted(out["dependencies"]) == sorted(
        _name(r) for r in tomllib.loads(moved)["project"]["dependencies"])


def test_check_phase_runs_the_tests_with_a_file_keyring(outputs: dict[str, Any]) -> None:
    assert "PYTHON_KEYRING_BACKEND=keyrings.alt.file.PlaintextKeyring" in outputs["checkPhase"]
    assert "CORDON_TEST_KEYRING=file" in outputs["checkPhase"]   # tests/conftest.py's switch
    assert "pytest" in outputs["checkPhase"]
    # linters run in the devShell; the Secret Service cannot run in the build sandbox
    wanted = {_name(r) for r in PYPROJECT["project"]["optional-dependencies"]["test"]} - {
        "ruff", "mypy", "secretstorage"}
    assert wanted <= set(outputs["nativeCheckInputs"])
    assert {"zsh", "fish", "direnv", "bashInteractive"} <= set(outputs["nativeCheckInputs"])


def test_dev_shell_has_python_with_the_test_dependencies(outputs: dict[str, Any]) -> None:
    test_deps = {_name(r) for r in PYPROJECT["project"]["optional-dependencies"]["test"]} - {"ruff"}
    runtime = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert test_deps | runtime <= set(outputs["devShellPython"]["pyenv"])
    assert {"ruff", "direnv", "zsh", "fish"} <= set(outputs["devShellTools"])


def test_app_and_checks(outputs: dict[str, Any], fake_out: Path) -> None:
    assert outputs["app"] == {"type": "app", "program": f"{fake_out}/bin/cordon"}
    assert outputs["checks"] == ["devShell", "package"]


def test_lib_shell_hook_puts_shims_first_and_exports_placeholders(outputs: dict[str, Any], fake_out: Path,
                                                                  tmp_path: Path) -> None:
    """Runs the shellHook another project's devShell would get, in bash, in a cordon project."""
    agents = tmp_path / "agents"
    write(agents / "codex", "#!/bin/sh\n")
    (agents / "codex").chmod(0o755)
    proj = tmp_path / "proj"
    configs.write(proj / "cordon.toml", configs.openai(placeholder_env=["OPENAI_API_KEY"]))
    assert "hook use --shell bash" in outputs["shellHook"] and "'codex'" in outputs["shellHook"]
    script = outputs["shellHook"] + 'printf "%s\\n" "$PATH" "$OPENAI_API_KEY"\n'
    env = {"PATH": f"{agents}:/usr/bin:/bin", "HOME": str(tmp_path / "home"),
           "XDG_CONFIG_HOME": str(tmp_path / "home" / ".config")}
    r = subprocess.run(["bash", "--norc", "-c", script], cwd=proj, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    path, placeholder = r.stdout.splitlines()
    shim_dir = Path(path.split(":")[0])
    assert path.split(":")[1:] == [str(agents), "/usr/bin", "/bin"]
    assert placeholder == "dummy-replaced-by-cordon"
    assert f"exec {fake_out}/bin/cordon exec -- {agents}/codex" in (shim_dir / "codex").read_text()
