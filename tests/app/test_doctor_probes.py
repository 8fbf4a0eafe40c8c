"""`cordon doctor`'s live probes: a real proxy, a local HTTPS upstream, real runtimes.

Each probe passes only when the upstream received the injected credential, so a
runtime that bypassed the proxy or distrusted its CA fails. The failing case is
a real misconfiguration (a `cacert` line in ~/.curlrc that overrides cordon's).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from cordon.app.doctor.checks import Check
from cordon.app.doctor.probes import AGENT_RUNTIMES, PY_PROBE, RUNTIMES, Runtime, run_probes
from tests.conftest import REPO, write

NODE_BIN = REPO / "tests" / "node" / "node_modules" / ".bin"


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    # this interpreter (which has requests and httpx) first; codex from tests/node when installed
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), str(NODE_BIN), env["PATH"]])
    return env


def _by_id(checks: list[Check]) -> dict[str, Check]:
    return {c.id: c for c in checks}


BASE_RUNTIMES = [rt for rt in RUNTIMES if rt not in AGENT_RUNTIMES]


def test_every_runtime_on_path_gets_through(home: Path) -> None:
    checks = _by_id(run_probes(_env(home), BASE_RUNTIMES))
    assert set(checks) == {f"probe.{rt.name}" for rt in BASE_RUNTIMES}
    bad = {k: c.message for k, c in checks.items() if c.status == "fail"}
    assert not bad
    py = checks["probe.python-ssl"]
    assert py.status == "ok" and py.details["trust_vars"] == ["SSL_CERT_FILE"]
    assert "credential injected" in py.message
    assert checks["probe.python-requests"].status == "ok"
    assert "REQUESTS_CA_BUNDLE" in checks["probe.python-requests"].details["trust_vars"]
    assert checks["probe.python-httpx"].status == "ok"
    if shutil.which("curl"):
        assert "CURL_CA_BUNDLE" in checks["probe.curl"].details["trust_vars"]
    if shutil.which("node"):
        assert checks["probe.node"].details["trust_vars"] == ["NODE_EXTRA_CA_CERTS"]
    if shutil.which("git"):
        assert "GIT_SSL_CAINFO" in checks["probe.git"].details["trust_vars"]
    if shutil.which("codex", path=_env(home)["PATH"]):
        assert checks["probe.codex"].status == "ok"
    else:
        assert checks["probe.codex"].status == "skip"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_a_curlrc_that_overrides_the_bundle_fails(home: Path) -> None:
    write(home / ".curlrc", "cacert = /etc/ssl/certs/ca-certificates.crt\n")
    [c] = run_probes(_env(home), [rt for rt in RUNTIMES if rt.name == "curl"])
    assert c.status == "fail"
    assert "SSL certificate problem" in c.message
    assert "~/.curlrc" in (c.fix or "")


def test_missing_runtime_and_module_are_skipped(home: Path) -> None:
    absent = Runtime("nothere", "no-such-program-cordon", lambda exe, url, wd: [exe, url], (), "n/a")
    nomod = Runtime("python-nosuchmodule", "python3",
                    lambda exe, url, wd: [exe, "-c", PY_PROBE, "cordon_no_such_module", url], (), "n/a")
    a, b = run_probes(_env(home), [absent, nomod])
    assert (a.status, b.status) == ("skip", "skip")
    assert "not on PATH" in a.message and "not importable" in b.message


def test_a_runtime_that_bypasses_the_proxy_fails(home: Path) -> None:
    # drops the proxy variables before its request: it cannot reach the .invalid host at all
    bypass = Runtime("python-bypass", "python3",
                     lambda exe, url, wd: [exe, "-c", "import os, sys\n"
                                           "for v in ('HTTPS_PROXY', 'https_proxy'): os.environ.pop(v, None)\n"
                                           f"exec({PY_PROBE!r})", "ssl", url], (), "fix it")
    [c] = run_probes(_env(home), [bypass])
    assert c.status == "fail" and c.fix == "fix it"


def test_doctor_json_includes_the_probes(project: Path, cordon, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    # the shape is the point here: leave the slow codex probe to the test above
    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    r = cordon("doctor", "--json")
    data = json.loads(r.stdout)
    probes = [c for c in data["checks"] if c["id"].startswith("probe.")]
    assert [c["id"] for c in probes] == [f"probe.{rt.name}" for rt in RUNTIMES]
    ok = [c for c in probes if c["status"] == "ok"]
    assert ok and all(isinstance(c["details"]["trust_vars"], list) for c in ok)
    assert r.status == (1 if any(c["status"] == "fail" for c in data["checks"]) else 0)


def test_the_copilot_probe_reuses_the_package_the_user_unpacked_and_nothing_else(tmp_path: Path) -> None:
    """The Copilot CLI unpacks ~235 MB of itself into its cache: a probe's runs use the copy in the
    user's cache (or one shared by the probe's runs), never the plan or settings cached beside it."""
    from cordon.app.doctor.probes import _packages
    [copilot] = [rt for rt in AGENT_RUNTIMES if rt.name == "copilot"]
    assert copilot.extra_env is not None
    user = {"HOME": str(tmp_path / "u"), "XDG_CACHE_HOME": str(tmp_path / "u" / ".cache")}
    work = tmp_path / "work"

    def run(label: str) -> Path:
        env = _packages(copilot, work, user, copilot.extra_env("https://x", str(work / label)))  # type: ignore[misc]
        return Path(env["XDG_CACHE_HOME"])
    first, second = run("a"), run("b")
    assert first != second and (first / "copilot" / "pkg").resolve() == (second / "copilot" / "pkg").resolve()
    assert (first / "copilot" / "pkg").resolve().is_relative_to(work)      # nothing unpacked yet: the run's own
    unpacked = tmp_path / "u" / ".cache" / "copilot" / "pkg"
    unpacked.mkdir(parents=True)
    third = run("c")
    assert (third / "copilot" / "pkg").resolve() == unpacked
    assert not (third / "copilot" / "copilot-user-cache.json").exists() and third.is_relative_to(work)
    [gemini] = [rt for rt in AGENT_RUNTIMES if rt.name == "gemini"]
    assert gemini.extra_env is not None
    assert not (Path(_packages(gemini, work, user, gemini.extra_env("https://x", str(work / "g")))["XDG_CACHE_HOME"])
                / "copilot").exists()


def test_each_probe_names_the_runtime_and_its_version() -> None:
    from cordon.app.doctor.probes import RUNTIMES, _label, _version_words
    by = {rt.name: rt for rt in RUNTIMES}
    seen = {
        "curl": "curl 7.88.1 (x86_64-pc-linux-gnu) libcurl/7.88.1 OpenSSL/3.0.15",
        "git": "git version 2.39.5",
        "node": "v20.19.2",
        "copilot": "GitHub Copilot CLI 1.0.102.\nRun 'copilot update' to check for updates.",
        "opencode": "1.18.33",
        "gemini": "0.61.0",
        "aider": "aider 0.86.2",
    }
    assert {name: _label(by[name], _version_words(text)) for name, text in seen.items()} == {
        "curl": "curl 7.88.1", "git": "git 2.39.5", "node": "node v20.19.2",
        "copilot": "GitHub Copilot CLI 1.0.102", "opencode": "opencode 1.18.33", "gemini": "gemini 0.61.0",
        "aider": "aider 0.86.2"}
    assert _label(by["codex"], "") == "codex"


AIDER_BIN = REPO / "tests" / ".aider-venv" / "bin"


@pytest.mark.slow
@pytest.mark.parametrize("rt", AGENT_RUNTIMES, ids=lambda rt: rt.name)
def test_a_coding_agent_gets_through(home: Path, rt: Runtime) -> None:
    """The Gemini CLI (Node), opencode (Bun), the Copilot CLI (Node SEA + Rust) and aider
    (litellm): each reaches the probe host through cordon with the injected credential."""
    env = _env(home)
    env["PATH"] = os.pathsep.join([str(AIDER_BIN), env["PATH"]])
    [c] = run_probes(env, [rt])
    assert c.id == f"probe.{rt.name}"
    if shutil.which(rt.program, path=env["PATH"]) is None:
        assert c.status == "skip"
        return
    assert c.status == "ok", c.message
    assert c.details["trust_vars"] == list(rt.trust_vars), c.message
    # its files went to the probe's throwaway home
    assert not (home / ".gemini").exists() and not (home / ".copilot").exists()
    assert not (home / ".local" / "share" / "opencode").exists()


def test_the_probe_upstream_closes_a_connection_whose_handshake_failed(tmp_path: Path) -> None:
    """A client that refuses cordon's certificate (the usual case in the runs that find the trust
    variable) ends its handshake: the probe's upstream must close its side, not leave the socket
    for the garbage collector."""
    import socket
    import ssl

    import anyio

    from cordon.app.doctor.probe_upstream import ProbeLog, serve_probe_upstream
    from cordon.core import certs

    leaf = certs.issue_leaf(certs.create_ca("probe upstream test CA"), "up.test")
    chain, key = write(tmp_path / "chain.pem", ""), write(tmp_path / "key.pem", "")
    chain.write_bytes(leaf.chain_pem)
    key.write_bytes(leaf.key_pem)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(chain, key)

    def client(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\n\r\n")        # not a TLS ClientHello: the handshake fails
            while s.recv(4096):                         # until the server closes its side
                pass

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            port = await tg.start(serve_probe_upstream, ctx, "Authorization", "Bearer x", ProbeLog())
            await anyio.to_thread.run_sync(client, port)
            tg.cancel_scope.cancel()
    anyio.run(main)
