"""cordon.app.keyringread: the routes' keyring entries read by a forked child, for the start-up
check only.

Each fork runs in a fresh, single-threaded Python process (a script), as in `cordon start`;
the test process itself may run threads (xdist). The keyring is keyrings.alt's file backend
under the test's HOME, or a backend written here."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cordon.app import keyringread
from cordon.core.errors import SecretError
from cordon.core.model import Auth, Route, SecretSpec
from cordon.store.secrets import KeyringAnswer, SecretResolver, set_keyring_secret
from tests.keyringscripts import json_backend, run_read

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the child is forked on Linux only")

def keyring_route(account: str) -> Route:
    return Route(name=account, host=f"{account}.example",
                 auth=Auth(type="header", secret=SecretSpec(source="keyring", account=account)))


def answers_of(p: subprocess.Popen[str]) -> dict[str, list[str | None]] | None:
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    pid, answers = out.splitlines()
    assert pid != "none", "no child was forked"
    return json.loads(answers)  # type: ignore[no-any-return]


@pytest.fixture
def backend(tmp_path: Path) -> dict[str, str]:
    return json_backend(tmp_path)


def test_the_child_reads_each_entry_from_the_real_keyring_as_stored() -> None:
    set_keyring_secret(SecretSpec(source="keyring", account="openai"), "sk-openai-in-the-keyring")
    set_keyring_secret(SecretSpec(source="keyring", account="anthropic"), "sk-ant-in-the-keyring")
    # the test's HOME and PYTHON_KEYRING_BACKEND (keyrings.alt's file backend) reach the script
    answers = answers_of(run_read("openai,anthropic,nothing-here", {}))
    assert answers == {"cordon/openai": ["sk-openai-in-the-keyring", None, ""],
                       "cordon/anthropic": ["sk-ant-in-the-keyring", None, ""],
                       "cordon/nothing-here": [None, None, ""]}


def test_a_backend_error_comes_back_by_name_and_is_worded_as_a_read_in_the_process(backend: dict[str, str]) -> None:
    answers = answers_of(run_read("openai,locked", backend))
    assert answers is not None
    assert answers["cordon/openai"] == ["sk-from-the-file", None, ""]
    assert answers["cordon/locked"] == [None, "KeyringLocked", "the collection is locked"]
    resolver = SecretResolver({})
    locked = KeyringAnswer(None, "KeyringLocked", "the collection is locked")
    with resolver.keyring_answers({("cordon", "locked"): locked}), \
            pytest.raises(SecretError, match=r"route 'locked': the keyring holding .* is locked"):
        resolver.resolve(keyring_route("locked"))


def test_a_backend_that_does_not_load_gives_no_answer() -> None:
    """No answer: the check then reads in the process, which words the error as it always did."""
    p = run_read("openai", {"PYTHON_KEYRING_BACKEND": "no.such.Backend"})
    assert answers_of(p) is None
    with pytest.raises(SecretError, match=r"PYTHON_KEYRING_BACKEND=no\.such\.Backend cannot be loaded"):
        SecretResolver({"PYTHON_KEYRING_BACKEND": "no.such.Backend"}).resolve(keyring_route("openai"))


def test_a_child_that_dies_gives_no_answer(backend: dict[str, str], tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    p = run_read("openai", backend | {"GATE": str(gate)})
    assert p.stdout is not None
    pid = int(p.stdout.readline())
    deadline = time.monotonic() + 30
    while not (tmp_path / "gate.waiting").exists():   # the child is in its read
        assert time.monotonic() < deadline, "the child never reached its read"
        time.sleep(0.01)
    subprocess.run(["kill", "-9", str(pid)], check=True)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert out.strip() == "null"


def test_the_answers_serve_only_inside_the_block(backend: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(backend["PYTHONPATH"])
    resolver = SecretResolver({"PYTHON_KEYRING_BACKEND": backend["PYTHON_KEYRING_BACKEND"]})
    monkeypatch.setenv("ENTRIES", backend["ENTRIES"])
    route = keyring_route("openai")
    with resolver.keyring_answers({("cordon", "openai"): KeyringAnswer("sk-read-by-the-child")}):
        assert resolver.resolve(route).reveal() == "sk-read-by-the-child"
        assert resolver.resolve(keyring_route("spaced")).reveal() == "sk-spaced"   # not answered: read here
    assert resolver.resolve(route).reveal() == "sk-from-the-file"   # after the block: the keyring again


def test_an_answer_is_cleaned_as_a_value_read_in_the_process() -> None:
    resolver = SecretResolver({})
    with resolver.keyring_answers({("cordon", "openai"): KeyringAnswer("  sk-trimmed\n")}):
        assert resolver.resolve(keyring_route("openai")).reveal() == "sk-trimmed"
    with resolver.keyring_answers({("cordon", "openai"): KeyringAnswer("a\nb")}), \
            pytest.raises(SecretError, match="line break"):
        resolver.resolve(keyring_route("openai"))
    with resolver.keyring_answers({("cordon", "openai"): KeyringAnswer(None)}), \
            pytest.raises(SecretError, match=r"no secret stored in keyring cordon/openai"):
        resolver.resolve(keyring_route("openai"))


def test_no_child_while_the_process_runs_threads_or_reads_no_keyring() -> None:
    assert keyringread.start([], {}) is None
    env_route = Route(name="e", host="e.example", auth=Auth(type="header", secret=SecretSpec(source="env", var="X")))
    assert keyringread.start([env_route], {}) is None
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)  # noqa: TID251 - the state under test is "another thread runs"
    t.start()
    try:
        assert keyringread.start([keyring_route("openai")], {}) is None   # a fork would copy no other thread
    finally:
        stop.set()
        t.join()
