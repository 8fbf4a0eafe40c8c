"""Secret sources failing: the keyring unavailable (no backend, or a Secret Service nobody
answers), `op` hanging. `cordon exec` must stop before the child starts with one clear error
naming the route and the fix (no traceback, exit 1, no orphaned `op`); a running proxy answers
502 for that route and keeps serving the others.
"""

from __future__ import annotations

import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from cordon.core.model import Auth, Route, SecretSpec
from cordon.proxy.forward import Timeouts
from cordon.store.secrets import SecretResolver
from tests import configs
from tests.conftest import cordon_argv, subprocess_env, write
from tests.proxy_harness import running_proxy
from tests.upstream import UpstreamServer

KEYRING_TOML = configs.render(configs.openai(keyring="openai"))

OP_TOML = configs.render(configs.openai(name="stripe", host="api.stripe.com", secret={
    "source": "1password", "vault": "Eng", "item": "Stripe", "field": "secret_key", "timeout": 1}))

HANGING_OP = """#!/bin/sh
echo $$ >> "{pids}"
sleep 300 &
echo $! >> "{pids}"
wait
"""


def run_exec(project: Path, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    marker = project / "child-ran"
    return subprocess.run(cordon_argv("exec", "--", "sh", "-c", f"touch {marker}"), cwd=project,
                          env=subprocess_env(env), capture_output=True, text=True, timeout=timeout)


def assert_clear_failure(r: subprocess.CompletedProcess[str], project: Path, *words: str) -> None:
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert not (project / "child-ran").exists(), "the child must not start without its secret"
    lines = r.stderr.strip().splitlines()
    assert lines and lines[0].startswith("cordon: error: "), r.stderr
    assert any(ln.startswith("hint: ") for ln in lines), r.stderr
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


@pytest.mark.parametrize("backend", ["keyring.backends.fail.Keyring", "keyring.backends.null.Keyring"])
def test_exec_with_no_usable_keyring_fails_before_the_child(project: Path, backend: str) -> None:
    write(project / "cordon.toml", KEYRING_TOML)
    r = run_exec(project, {"PYTHON_KEYRING_BACKEND": backend})
    assert_clear_failure(r, project, "openai")


def test_exec_with_an_unreachable_secret_service_fails_before_the_child(project: Path) -> None:
    write(project / "cordon.toml", KEYRING_TOML)
    r = run_exec(project, {"PYTHON_KEYRING_BACKEND": "keyring.backends.SecretService.Keyring",
                           "DBUS_SESSION_BUS_ADDRESS": f"unix:path={project}/no-such-bus"})
    assert_clear_failure(r, project, "openai")


def test_exec_with_a_hanging_op_times_out_and_leaves_no_process(project: Path, tmp_path: Path) -> None:
    write(project / "cordon.toml", OP_TOML)
    pids = tmp_path / "op-pids"
    op = tmp_path / "bin" / "op"
    write(op, HANGING_OP.format(pids=pids)).chmod(0o755)
    r = run_exec(project, {"PATH": f"{op.parent}:{os.environ['PATH']}"})
    assert_clear_failure(r, project, "stripe", "timed out")
    for pid in (int(p) for p in pids.read_text().split()):
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid):
            assert time.monotonic() < deadline, f"op's process {pid} outlived the timeout"
            time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:", 1)[1].split("\n", 1)[0].lower()
    except (OSError, IndexError):
        return "zombie"


def test_running_proxy_answers_502_for_a_hanging_op_and_keeps_serving(tmp_path: Path) -> None:
    pids = tmp_path / "op-pids"
    op = write(tmp_path / "bin" / "op", HANGING_OP.format(pids=pids))
    op.chmod(0o755)
    with UpstreamServer("api.stripe.com") as stripe, UpstreamServer("api.openai.com") as openai:
        spec = SecretSpec(source="1password", vault="Eng", item="Stripe", field="secret_key", timeout=1)
        hanging = Route(name="stripe", host="api.stripe.com",
                        auth=Auth(type="header", header_name="Authorization", scheme="Bearer", secret=spec),
                        upstream=stripe.route().upstream)
        fine = openai.route()   # env secret CORDON_TEST_SECRET
        resolver = SecretResolver({"PATH": os.defpath, "CORDON_TEST_SECRET": "sk-fine-0123456789"},
                                  op_path=str(op))
        with running_proxy([hanging, fine], resolver=resolver, timeouts=Timeouts(response=20)) as px:
            import ssl
            ctx = ssl.create_default_context(cafile=str(px.ca_file))
            with httpx.Client(proxy=px.url, verify=ctx, timeout=30) as c1, \
                    httpx.Client(proxy=px.url, verify=ctx, timeout=30) as c2, ThreadPoolExecutor(1) as pool:
                pending = pool.submit(c1.get, "https://api.stripe.com/v1/charges")   # op hangs meanwhile
                while not pids.exists():
                    time.sleep(0.02)
                ok = c2.get("https://api.openai.com/v1/models")
                r = pending.result()
        assert r.status_code == 502 and "stripe" in r.text and "timed out" in r.text
        assert ok.status_code == 200
        assert stripe.requests == [], "nothing is sent without the secret"
