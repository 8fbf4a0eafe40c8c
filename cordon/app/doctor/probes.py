"""Live runtime probes: can each runtime on PATH reach a route through cordon, and by which trust variable?

Doctor starts a real proxy on a free port with one throwaway route (a `.invalid`
host, RFC 6761, so nothing can leak to the internet) whose upstream is a local
HTTPS server of its own, then runs curl, python (`ssl`, `requests`, `httpx`),
node, git and codex with the exact `cordon exec` environment. A probe passes
when the upstream received the request *with the injected credential*. Each
runtime is then re-run with one trust variable at a time to name the variable
it trusts cordon through. Throwaway CA, secret and token: nothing persistent.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from cordon.app.doctor.checks import Check, fail, ok, skip
from cordon.app.doctor.probe_upstream import ProbeLog, serve_probe_upstream
from cordon.core import certs
from cordon.core.envvars import BUNDLE_VARS, CA_VARS, child_env
from cordon.core.errors import CordonError
from cordon.core.model import DEFAULT_PLACEHOLDER, Auth, Route, SecretSpec, UpstreamSpec
from cordon.proxy.auth import ProxyAuth
from cordon.proxy.server import ProxySettings, serve
from cordon.proxy.stats import ProxyStats
from cordon.proxy.tls import LeafIssuer
from cordon.store import castore
from cordon.store.secrets import SecretResolver

PROBE_HOST = "probe.cordon-doctor.invalid"
SECRET_VAR = "CORDON_DOCTOR_PROBE_SECRET"
TRUST_VARS = (*BUNDLE_VARS, *CA_VARS)
TIMEOUT = 25.0
EXIT_NOT_IMPORTABLE = 3

PY_PROBE = r"""
import sys
mode, url = sys.argv[1], sys.argv[2]
try:
    if mode == "ssl":
        import urllib.request
        body = urllib.request.urlopen(url, timeout=20).read()
    else:
        try:
            mod = __import__(mode)
        except ImportError:
            sys.exit(3)
        r = mod.get(url, timeout=20)
        r.raise_for_status()
        body = r.content
except Exception as e:
    print(f"{type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)
sys.stdout.write(body.decode("utf-8", "replace"))
"""

# Node's fetch ignores the proxy variables before 22.21 (NODE_USE_ENV_PROXY), so this
# speaks CONNECT itself: what is probed is Node's TLS trust, the part cordon configures.
NODE_PROBE = r"""
const http = require('http'), tls = require('tls');
const u = new URL(process.argv[process.argv.length - 1]);
const p = new URL(process.env.HTTPS_PROXY || process.env.https_proxy);
const cred = decodeURIComponent(p.username) + ':' + decodeURIComponent(p.password);
const auth = 'Basic ' + Buffer.from(cred).toString('base64');
const target = u.hostname + ':' + (u.port || 443);
const fail = (m) => { process.stderr.write(m + '\n'); process.exit(1); };
setTimeout(() => fail('timed out'), 20000).unref();
const req = http.request({host: p.hostname, port: p.port, method: 'CONNECT', path: target,
                          headers: {'Proxy-Authorization': auth, Host: target}});
req.on('error', (e) => fail(e.message));
req.on('connect', (res, socket) => {
  if (res.statusCode !== 200) fail('proxy answered ' + res.statusCode);
  const s = tls.connect({socket, servername: u.hostname}, () => {
    s.write('GET ' + u.pathname + ' HTTP/1.1\r\nHost: ' + u.host + '\r\nConnection: close\r\n\r\n');
  });
  let buf = '';
  s.on('data', (d) => { buf += d; });
  s.on('error', (e) => fail((e.code || 'error') + ': ' + e.message));
  s.on('end', () => {
    if (!/^HTTP\/1\.[01] 200/.test(buf)) fail('unexpected answer: ' + buf.split('\r\n')[0]);
    process.stdout.write(buf.split('\r\n\r\n').slice(1).join('\r\n\r\n'));
    process.exit(0);
  });
});
req.end();
"""


@dataclass(frozen=True)
class Runtime:
    name: str                                   # check id: probe.<name>
    program: str                                # looked up on PATH
    argv: Callable[[str, str, str], list[str]]  # (program path, url, work dir) -> argv
    trust_vars: tuple[str, ...]                 # the variables it is known to read, tried one by one
    fix: str
    version_argv: tuple[str, ...] = ("--version",)
    # (url, its throwaway home) -> variables it also needs: where to send its call, a placeholder key
    extra_env: Callable[[str, str], dict[str, str]] | None = None
    # where under $XDG_CACHE_HOME it unpacks itself: shared with the user's cache (see _packages)
    package_cache: str | None = None


def _python() -> str:
    return "python3"


RUNTIMES: tuple[Runtime, ...] = (
    Runtime("curl", "curl", lambda exe, url, wd: [exe, "-sS", "--fail", "--max-time", "20", url],
            ("CURL_CA_BUNDLE", "SSL_CERT_FILE"),
            "curl trusts cordon through CURL_CA_BUNDLE (recent curl also reads SSL_CERT_FILE); a "
            "`cacert`/`capath` line in ~/.curlrc overrides both: remove it"),
    Runtime("python-ssl", _python(), lambda exe, url, wd: [exe, "-c", PY_PROBE, "ssl", url],
            ("SSL_CERT_FILE",),
            "Python's ssl trusts cordon through SSL_CERT_FILE; check nothing (sitecustomize, truststore) "
            "replaces the default context"),
    Runtime("python-requests", _python(), lambda exe, url, wd: [exe, "-c", PY_PROBE, "requests", url],
            ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"),
            "requests trusts cordon through REQUESTS_CA_BUNDLE; code that passes verify=... overrides it"),
    Runtime("python-httpx", _python(), lambda exe, url, wd: [exe, "-c", PY_PROBE, "httpx", url],
            ("SSL_CERT_FILE",),
            "httpx trusts cordon through SSL_CERT_FILE (trust_env); code that passes verify=... overrides it"),
    Runtime("node", "node", lambda exe, url, wd: [exe, "-e", NODE_PROBE, url],
            ("NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE"),
            "Node trusts cordon through NODE_EXTRA_CA_CERTS (read once at start-up): check it names the CA file"),
    Runtime("git", "git", lambda exe, url, wd: [exe, "ls-remote", f"{url}/repo.git"],
            ("GIT_SSL_CAINFO", "SSL_CERT_FILE", "CURL_CA_BUNDLE"),
            "git trusts cordon through GIT_SSL_CAINFO; an `http.sslCAInfo` or `http.sslBackend` "
            "setting in your git config can override it"),
    Runtime("codex", "codex",
            lambda exe, url, wd: [exe, "exec", "--skip-git-repo-check", "--color", "never", "--ephemeral",
                                  "-c", f'openai_base_url="{url}/v1"', "-c", "model_provider=\"openai\"",
                                  "reply with ok"],
            ("CODEX_CA_CERTIFICATE", "SSL_CERT_FILE"),
            "the Codex CLI trusts cordon through CODEX_CA_CERTIFICATE or SSL_CERT_FILE; both must name a PEM "
            "bundle (system roots plus the cordon CA)"),
)


def _agent_home(home: str, **more: str) -> dict[str, str]:
    """A coding agent's files (settings, sessions, caches) go to the probe's throwaway home."""
    return {"HOME": home, "XDG_CONFIG_HOME": f"{home}/.config", "XDG_DATA_HOME": f"{home}/.local/share",
            "XDG_STATE_HOME": f"{home}/.local/state", "XDG_CACHE_HOME": f"{home}/.cache", **more}


def _gemini_env(url: str, home: str) -> dict[str, str]:
    # with GOOGLE_GEMINI_BASE_URL alone it picks its "gateway" auth, which -p refuses; the
    # settings file in its throwaway home selects the API key
    settings = Path(home) / ".gemini" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"security": {"auth": {"selectedType": "gemini-api-key"}},
                                    "privacy": {"usageStatisticsEnabled": False}}))
    # GEMINI_CLI_NO_RELAUNCH: it would start itself again as a child with a larger heap (a second
    # Node start-up, half of each run's CPU); the probe's one request needs no more memory
    return _agent_home(home, GOOGLE_GEMINI_BASE_URL=url, GEMINI_API_KEY=DEFAULT_PLACEHOLDER,
                       GEMINI_CLI_NO_RELAUNCH="true")


AGENT_RUNTIMES: tuple[Runtime, ...] = (
    # the Gemini CLI: Node 20+ with its own proxy agent
    Runtime("gemini", "gemini",
            lambda exe, url, wd: [exe, "--skip-trust", "-m", "gemini-2.5-flash", "-p", "reply with ok"],
            ("NODE_EXTRA_CA_CERTS",),
            "the Gemini CLI trusts cordon through NODE_EXTRA_CA_CERTS (Node adds it to its roots)",
            extra_env=lambda url, home: _gemini_env(url, home)),
    # opencode: a Bun binary; no fetch of its model list from the internet (the probe calls
    # nothing but the probe host, and a failing fetch holds the call back by seconds), and npm
    # offline: in a fresh home it installs its plugin package into the config directory (~95 MB
    # and seconds of CPU per run, for nothing the probe needs)
    Runtime("opencode", "opencode",
            lambda exe, url, wd: [exe, "run", "-m", "openai/gpt-4o-mini", "reply with ok"],
            ("NODE_EXTRA_CA_CERTS",),
            "opencode (Bun) trusts cordon through NODE_EXTRA_CA_CERTS (or SSL_CERT_FILE)",
            extra_env=lambda url, home: _agent_home(
                home, OPENAI_API_KEY=DEFAULT_PLACEHOLDER, OPENCODE_DISABLE_MODELS_FETCH="true",
                npm_config_offline="true",
                OPENCODE_CONFIG_CONTENT=json.dumps({"provider": {"openai": {"options": {"baseURL": url + "/v1"}}}}))),
    # the Copilot CLI: a Node single-executable with a Rust network layer; its first call goes to
    # the GitHub API it is pointed at
    Runtime("copilot", "copilot",
            lambda exe, url, wd: [exe, "-p", "reply with ok", "--allow-all-tools", "--disable-client-telemetry",
                                  "--no-auto-update"],
            ("SSL_CERT_FILE",),
            "the Copilot CLI trusts cordon through SSL_CERT_FILE (or NODE_EXTRA_CA_CERTS)",
            extra_env=lambda url, home: _agent_home(home, COPILOT_DEBUG_GITHUB_API_URL=url,
                                                    GH_TOKEN=DEFAULT_PLACEHOLDER),
            package_cache="copilot/pkg"),
    # aider: Python, litellm on httpx
    Runtime("aider", "aider",
            lambda exe, url, wd: [exe, "--openai-api-base", url + "/v1", "--model", "openai/gpt-4o-mini",
                                  "--message", "reply with ok", "--no-git", "--yes-always", "--no-check-update",
                                  "--analytics-disable", "--no-stream", "--no-show-model-warnings"],
            ("SSL_CERT_FILE",),
            "aider (litellm, httpx) trusts cordon through SSL_CERT_FILE",
            extra_env=lambda url, home: _agent_home(home, OPENAI_API_KEY=DEFAULT_PLACEHOLDER,
                                                    LITELLM_LOCAL_MODEL_COST_MAP="True")),
)
RUNTIMES = RUNTIMES + AGENT_RUNTIMES


@dataclass(frozen=True)
class Trial:
    ok: bool
    error: str | None
    seconds: float = 0.0


class _Harness:
    """The running proxy + upstream pair and the files a child needs to trust them."""

    def __init__(self, workdir: Path, env: Mapping[str, str]) -> None:
        self.workdir = workdir
        self.secret = secrets.token_urlsafe(24)
        self.token = secrets.token_urlsafe(32)
        self.log = ProbeLog()
        # the MITM CA is name-constrained to the probe host, as a `cordon exec` session's is
        self.ca = certs.create_ca("cordon doctor probe CA", permitted_hosts=[PROBE_HOST])
        up_ca = certs.create_ca("cordon doctor upstream CA")
        # each trial calls a name of its own under PROBE_HOST, so a refused handshake names it
        leaf = certs.issue_leaf(up_ca, f"*.{PROBE_HOST}")
        self.upstream_ca = workdir / "upstream-ca.pem"
        self.upstream_ca.write_bytes(up_ca.cert_pem)
        self.ca_path = workdir / "ca.pem"
        self.ca_path.write_bytes(self.ca.cert_pem)
        self.bundle_path = workdir / "bundle.pem"
        self.bundle_path.write_bytes(castore.build_bundle([self.ca.cert_pem], env))
        chain, key = workdir / "upstream-chain.pem", workdir / "upstream-key.pem"
        chain.write_bytes(leaf.chain_pem)
        key.write_bytes(leaf.key_pem)
        self.upstream_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.upstream_ctx.load_cert_chain(chain, key)
        self.upstream_port = 0
        self.proxy_port = 0
        self.stats: ProxyStats | None = None

    def refused(self, host: str) -> bool:
        """The client at `host` refused cordon's certificate: it will not get through this way."""
        return self.stats is not None and host in self.stats.handshake_failures

    def route(self) -> Route:
        return Route(name="doctor-probe", host=PROBE_HOST, more_hosts=(f"*.{PROBE_HOST}",),
                     auth=Auth(type="header", header_name="Authorization", scheme="Bearer",
                               secret=SecretSpec(source="env", var=SECRET_VAR)),
                     upstream=UpstreamSpec(address=f"127.0.0.1:{self.upstream_port}", ca_file=self.upstream_ca))

    def child_env(self, base: Mapping[str, str]) -> dict[str, str]:
        env = child_env(base, port=self.proxy_port, token=self.token, bundle_path=self.bundle_path,
                        ca_path=self.ca_path, routes=[self.route()], remove=(SECRET_VAR,))
        env["GIT_TERMINAL_PROMPT"] = "0"
        return env


async def _start_proxy(tg: anyio.abc.TaskGroup, h: _Harness) -> int:
    settings = ProxySettings(routes=(h.route(),), port=0, issuer=LeafIssuer(h.ca),
                             resolver=SecretResolver({SECRET_VAR: h.secret}),
                             auth=ProxyAuth.single(h.token, "doctor"))
    h.stats = settings.stats
    port: int = await tg.start(serve, settings)
    return port


_ERROR_WORDS = re.compile(r"error|fail|unable|refused|certificate|ssl|tls|denied|timed out|\(\d+\)", re.I)


def _reason(text: str) -> str:
    """The line of a runtime's stderr that says what went wrong (curl: first; Python: last)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    hits = [ln for ln in lines if _ERROR_WORDS.search(ln)]
    return ((hits or lines or [""])[0])[:240]


GRACE = 3.0        # seconds a runtime that failed may take to say why before it is stopped


async def _run(argv: Sequence[str], env: Mapping[str, str], cwd: Path, timeout: float,
               arrived: Callable[[], bool], answered: Callable[[], bool]) -> tuple[int, str]:
    """Run one probe. Stopped once `answered` (the verdict is in: nothing the runtime does after
    that changes it, and agents go on working for seconds), else `GRACE` s after its request
    arrived (time to print why it failed), else at `timeout` (Codex keeps retrying on a TLS
    failure). (status, stderr)."""
    errfile = cwd / "stderr.txt"
    with errfile.open("wb") as err:
        proc = await anyio.open_process(list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    async with proc:
        started = anyio.current_time()
        seen_at: float | None = None
        timed_out = False
        while proc.returncode is None:
            with anyio.move_on_after(0.05):
                await proc.wait()
            now = anyio.current_time()
            if seen_at is None and arrived():
                seen_at = now
            if proc.returncode is None and (now - started > timeout or answered() or
                                            (seen_at is not None and now - seen_at > GRACE)):
                timed_out = seen_at is None
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)   # its whole group: the codex shim has a child
                await proc.wait()
    text = errfile.read_text("utf-8", "replace")
    if timed_out:
        text += f"\nno request arrived within {timeout:.0f} s (it may be retrying)"
    return (124 if timed_out else (proc.returncode or 0)), text


async def _trial(h: _Harness, rt: Runtime, exe: str, env: Mapping[str, str], label: str,
                 timeout: float = TIMEOUT, why: bool = True) -> Trial:
    """One run of `rt` through the proxy; `why`: wait for it to say why it failed (the full
    environment's run, whose error is reported), else stop it as soon as it refused cordon."""
    prefix = f"/probe/{rt.name}/{label}"
    host = f"{rt.name}-{label}".lower().replace("_", "-") + "." + PROBE_HOST
    url = f"https://{host}:{h.upstream_port}{prefix}"
    home = h.workdir / "home" / rt.name / label
    home.mkdir(parents=True, exist_ok=True)
    env = dict(env)
    if rt.name == "codex":
        env["CODEX_HOME"] = str(home)    # a throwaway Codex home: no sessions or logs left behind
    if rt.extra_env is not None:
        env.update(_packages(rt, h.workdir, env, rt.extra_env(url, str(home))))
    t0 = anyio.current_time()
    # done once the request arrived, or once the client refused cordon's certificate (clients
    # that retry would otherwise run until the timeout)
    rc, stderr = await _run(rt.argv(exe, url, str(home)), env, home, timeout,
                            lambda: h.log.injected_under(prefix) or h.refused(host),
                            lambda: h.log.injected_under(prefix) or (not why and h.refused(host)))
    took = anyio.current_time() - t0
    if h.log.injected_under(prefix):
        return Trial(True, None, took)
    if rc == EXIT_NOT_IMPORTABLE and rt.name.startswith("python-"):
        return Trial(False, "not importable", took)
    err = _reason(stderr) or ("it refused cordon's certificate" if h.refused(host) else f"exit status {rc}")
    if h.log.seen_under(prefix):
        err = "the request arrived without the injected credential"
    return Trial(False, err, took)


def _packages(rt: Runtime, workdir: Path, user: Mapping[str, str], agent: dict[str, str]) -> dict[str, str]:
    """`agent` (an agent's throwaway variables), its package cache linked to the one it unpacked into
    in the user's cache (the Copilot CLI: ~235 MB, seconds to unpack), or to one shared by this
    run's trials; the rest of its cache (its plan, its settings) stays throwaway."""
    if rt.package_cache is None:
        return agent
    cache = user.get("XDG_CACHE_HOME") or os.path.join(user.get("HOME") or os.path.expanduser("~"), ".cache")
    target = Path(cache) / rt.package_cache
    if not target.is_dir():
        target = workdir / "packages" / rt.name
        target.mkdir(parents=True, exist_ok=True)
    link = Path(agent["XDG_CACHE_HOME"]) / rt.package_cache
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(target, target_is_directory=True)
    return agent


def _version(exe: str, rt: Runtime, env: Mapping[str, str]) -> str:
    try:
        p = subprocess.run([exe, *rt.version_argv], capture_output=True, text=True, timeout=10,
                           env=dict(env), stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return _version_words((p.stdout or p.stderr).strip())


def _version_words(text: str) -> str:
    """What a --version line names, up to its version number: "curl 7.88.1 (x86_64-pc-linux-gnu)
    libcurl/..." -> "curl 7.88.1", "git version 2.39.5" -> "git 2.39.5", "GitHub Copilot CLI
    1.0.102." -> "GitHub Copilot CLI 1.0.102", "v20.1.0", "1.18.33"."""
    lines = text.splitlines()
    words = lines[0].replace(" version ", " ").split() if lines else []
    for i, w in enumerate(words[:5]):
        if any(c.isdigit() for c in w):
            return " ".join(words[:i + 1]).rstrip(".,")[:60]
    return " ".join(words[:2])[:60]


async def _probe(h: _Harness, rt: Runtime, base_env: Mapping[str, str], limiter: anyio.CapacityLimiter) -> Check:
    cid = f"probe.{rt.name}"
    exe = shutil.which(rt.program, path=base_env.get("PATH"))
    if exe is None and rt.program == "python3":
        exe = sys.executable
    if exe is None:
        return skip(cid, f"{rt.program} is not on PATH")
    full = h.child_env(base_env)
    async with limiter:
        res = await _trial(h, rt, exe, full, "full")
    # a variant that has not got through in several times what the full environment took is failing
    quick = min(TIMEOUT, max(8.0, 4 * res.seconds))
    venv = full
    if rt.extra_env is not None:               # an agent writes its files even for --version
        vhome = h.workdir / "home" / rt.name / "version"
        vhome.mkdir(parents=True, exist_ok=True)
        venv = {**full, **_packages(rt, h.workdir, full, rt.extra_env(f"https://{PROBE_HOST}", str(vhome)))}
    if not res.ok:
        who = _label(rt, await anyio.to_thread.run_sync(_version, exe, rt, venv))
        if res.error == "not importable":
            return skip(cid, f"{rt.name.split('-', 1)[1]} is not importable by {exe}")
        return fail(cid, f"{who}: the request through cordon failed: {res.error}", rt.fix, exe=exe)
    # the version, the run without any trust variable and one run per variable, side by side
    bare = {k: v for k, v in full.items() if k not in TRUST_VARS}
    variants = {"none": bare, **{var: {**bare, var: full[var]} for var in rt.trust_vars}}
    got: dict[str, Trial] = {}
    version = ""

    async def variant(label: str, env: Mapping[str, str]) -> None:
        async with limiter:
            got[label] = await _trial(h, rt, exe, env, label, quick, why=False)

    async def read_version() -> None:
        nonlocal version
        version = await anyio.to_thread.run_sync(_version, exe, rt, venv)
    async with anyio.create_task_group() as tg:
        tg.start_soon(read_version)
        for label, env in variants.items():
            tg.start_soon(variant, label, env)
    who = _label(rt, version)
    if got["none"].ok:
        return ok(cid, f"{who}: credential injected; trusts cordon's CA without any variable "
                       "(the CA is in its default trust store)", exe=exe, version=version, trust_vars=[])
    carriers = [var for var in rt.trust_vars if got[var].ok]
    via = ", ".join(carriers) if carriers else "the variables together (no single one suffices)"
    return ok(cid, f"{who}: credential injected; trusts cordon via {via}", exe=exe, version=version,
              trust_vars=carriers)


def _label(rt: Runtime, version: str) -> str:
    if rt.name.startswith("python-"):
        lib = rt.name.split("-", 1)[1]
        return f"{version or 'python'} {lib}"
    if not version:
        return rt.name
    # an agent that prints its version number alone: say whose it is
    return version if rt.name.lower() in version.lower() else f"{rt.name} {version}"


async def _run_all(env: Mapping[str, str], workdir: Path, runtimes: Sequence[Runtime],
                   on_check: Callable[[Check], None] | None = None) -> list[Check]:
    h = _Harness(workdir, env)
    results: dict[str, Check] = {}
    told = 0
    async with anyio.create_task_group() as tg:
        h.upstream_port = await tg.start(serve_probe_upstream, h.upstream_ctx, "Authorization",
                                         f"Bearer {h.secret}", h.log)
        h.proxy_port = await _start_proxy(tg, h)
        limiter = anyio.CapacityLimiter(max(2, min(4, os.cpu_count() or 2)))

        async def one(rt: Runtime) -> None:
            nonlocal told
            results[rt.name] = await _probe(h, rt, env, limiter)
            while on_check is not None and told < len(runtimes) and runtimes[told].name in results:
                on_check(results[runtimes[told].name])
                told += 1

        async with anyio.create_task_group() as probes:
            for rt in runtimes:
                probes.start_soon(one, rt)
        tg.cancel_scope.cancel()
    return [results[rt.name] for rt in runtimes]


def _leaf(e: BaseException) -> BaseException:
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return e


def run_probes(env: Mapping[str, str], runtimes: Sequence[Runtime] = RUNTIMES,
               on_check: Callable[[Check], None] | None = None) -> list[Check]:
    """Every probe, in RUNTIMES order; `on_check` gets each as soon as it and those before it
    are done. A harness that cannot start is one failed check."""
    try:
        try:
            with tempfile.TemporaryDirectory(prefix="cordon-doctor-") as d:
                return anyio.run(_run_all, env, Path(d), runtimes, on_check)
        except BaseExceptionGroup as group:   # anyio wraps what a task group raises
            raise _leaf(group) from None
    except CordonError as e:
        return [fail("probes", f"cannot start the probe proxy: {e.message}", e.hint or "see `cordon doctor --help`")]
    except OSError as e:
        return [fail("probes", f"cannot start the probe proxy: {e}", "check that 127.0.0.1 is usable")]
