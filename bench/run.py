"""Benchmark: cordon side by side with a direct connection, mitmproxy and proxy.py.

A benchmark, not a test: it asserts nothing and the suite never runs it. In one
invocation, against one local HTTPS upstream (bench/upstream.py) on loopback,
with curl as the client (a C client, so the client is not the bottleneck) it
measures for each contender:

  - small HTTPS requests over keep-alive through the intercepting (MITM) path,
    concurrency 1 and 16: req/s, p50 and p99 latency;
  - a new connection and a full TLS handshake per request (MITM): conn/s;
  - a large download through the MITM path and through an opaque tunnel: MB/s;
  - start-up: process spawn until the proxy relays its first CONNECT;
  - peak resident memory of the proxy (its whole process tree).

Every figure is printed as a markdown table with its ratio to direct. Run
bench/setup.sh first (it creates bench/.venv with mitmproxy and proxy.py);
then `bench/.venv/bin/python bench/run.py`. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from routes import route

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MITM_HOST = "localhost"        # intercepted by every proxy (a cordon route)
TUNNEL_IP = "127.0.0.2"        # never intercepted: an opaque CONNECT tunnel
SECRET = "bench-secret-value-0123456789"


# --- certificates ------------------------------------------------------------------------------

def make_pki(d: Path) -> tuple[Path, Path, Path]:
    """A bench CA and an upstream leaf for localhost, 127.0.0.1 and 127.0.0.2 (EC P-256)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cordon bench upstream CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=7))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(MITM_HOST)]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", TUNNEL_IP)]
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, MITM_HOST)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_pem, leaf_pem, key_pem = d / "upstream-ca.pem", d / "upstream.pem", d / "upstream.key"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    leaf_pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return ca_pem, leaf_pem, key_pem


def bundle(path: Path, *pems: Path) -> Path:
    path.write_bytes(b"".join(p.read_bytes() for p in pems))
    return path


# --- processes ---------------------------------------------------------------------------------

def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Upstream:
    """bench/upstream.py on 127.0.0.1 (the MITM target) and 127.0.0.2 (the tunnel target)."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        self.ports: list[int] = []
        for host in ("127.0.0.1", TUNNEL_IP):
            p = subprocess.Popen([sys.executable, str(HERE / "upstream.py"), "--cert", str(cert),
                                  "--key", str(key), "--host", host],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert p.stdout is not None
            self.ports.append(int(p.stdout.readline()))
            self.procs.append(p)

    @property
    def mitm_base(self) -> str:
        return f"https://{MITM_HOST}:{self.ports[0]}"

    @property
    def tunnel_base(self) -> str:
        return f"https://{TUNNEL_IP}:{self.ports[1]}"

    def stop(self) -> None:
        for p in self.procs:
            stop_process(p)


def stop_process(p: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    if p.poll() is not None:
        return
    with contextlib.suppress(OSError):
        if p.stdin:
            p.stdin.close()
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def peak_rss_mib(pid: int) -> float:
    """VmHWM of a process and its descendants (proxy.py forks workers)."""
    total = 0
    todo = [pid]
    while todo:
        cur = todo.pop()
        try:
            for line in Path(f"/proc/{cur}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
            children = Path(f"/proc/{cur}/task/{cur}/children").read_text().split()
        except OSError:
            continue
        todo += [int(c) for c in children]
    return total / 1024


def wait_relaying(port: int, proxy_auth: str | None, target: str, deadline: float) -> bool:
    """True once the proxy on `port` answers a CONNECT to `target` with 200."""
    req = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
    if proxy_auth:
        req += f"Proxy-Authorization: {proxy_auth}\r\n"
    data = (req + "\r\n").encode()
    while time.perf_counter() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(data)
                if s.recv(64).startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
                    return True
        except OSError:
            pass
        time.sleep(0.002)
    return False


# --- contenders --------------------------------------------------------------------------------

@dataclasses.dataclass
class Contender:
    """How to start one proxy; `start()` returns the process once it relays."""

    name: str
    argv: Callable[[int], list[str]]
    ca_pem: Callable[[], Path | None]         # the proxy's CA (None: no interception)
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    proxy_auth: Callable[[], tuple[str, str | None]] = lambda: ("", None)   # (user:pass@, header)
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    log: Path | None = None

    def ca_file(self) -> Path:
        """The CA of a proxy that intercepts."""
        ca = self.ca_pem()
        assert ca is not None, f"{self.name} does not intercept"
        return ca

    def start(self, workdir: Path, tunnel_target: str) -> float:
        """Start; return seconds from spawn until it relays a CONNECT."""
        self.port = free_port()
        self.log = workdir / f"{self.name}.log"
        env = {**os.environ, **self.env}
        argv = self.argv(self.port)
        _, header = self.proxy_auth()       # before the clock starts (cordon: `cordon env`)
        t0 = time.perf_counter()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, env=env, cwd=workdir)
        if not wait_relaying(self.port, header, tunnel_target, t0 + 30):
            self.stop()
            tail = self.log.read_text(errors="replace")[-600:]
            raise RuntimeError(f"{self.name} did not start:\n{tail}")
        return time.perf_counter() - t0

    def proxy_url(self) -> str:
        cred, _ = self.proxy_auth()
        return f"http://{cred}127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


def venv_bin(name: str) -> str:
    cand = Path(sys.executable).parent / name
    return str(cand) if cand.exists() else (shutil.which(name) or name)


def mitmproxy(workdir: Path, upstream_ca: Path) -> Contender:
    confdir = workdir / "mitmproxy"
    return Contender(
        name="mitmproxy",
        argv=lambda port: [venv_bin("mitmdump"), "-q", "--listen-host", "127.0.0.1", "--listen-port", str(port),
                           "--set", f"confdir={confdir}",
                           "--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}",
                           # stream instead of buffering whole bodies (its default), as cordon does
                           "--set", "stream_large_bodies=1m",
                           "--ignore-hosts", "^" + TUNNEL_IP.replace(".", r"\.")],
        ca_pem=lambda: confdir / "mitmproxy-ca-cert.pem")


def proxy_py(workdir: Path, upstream_ca: Path, intercept: bool) -> Contender:
    d = workdir / "proxy.py"
    d.mkdir(exist_ok=True)
    ca_key, ca_cert, sign_key = d / "ca.key", d / "ca.pem", d / "sign.key"
    if intercept and not ca_cert.exists():
        # proxy.py signs its leaves with the openssl CLI; give it an EC CA like the others
        subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(ca_key)],
                       check=True, capture_output=True)
        subprocess.run(["openssl", "req", "-x509", "-new", "-key", str(ca_key), "-subj", "/CN=proxy.py bench CA",
                        "-days", "7", "-out", str(ca_cert)], check=True, capture_output=True)
        subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(sign_key)],
                       check=True, capture_output=True)

    def argv(port: int) -> list[str]:
        a = [venv_bin("proxy"), "--hostname", "127.0.0.1", "--port", str(port), "--log-level", "ERROR"]
        if intercept:
            a += ["--ca-key-file", str(ca_key), "--ca-cert-file", str(ca_cert),
                  "--ca-signing-key-file", str(sign_key), "--ca-file", str(upstream_ca),
                  "--ca-cert-dir", str(d / "certs")]
        return a

    return Contender(name="proxy.py" + (" (TLS interception)" if intercept else ""), argv=argv,
                     ca_pem=lambda: ca_cert if intercept else None)


def approve(cfg: Path, env: dict[str, str]) -> None:
    """`cordon allow` the bench's config: a project file's routes are used only once approved."""
    out = subprocess.run([sys.executable, "-m", "cordon", "allow", "--config", str(cfg)], capture_output=True,
                         text=True, env={**os.environ, **env}, check=False)
    if out.returncode != 0 and "unknown" not in out.stderr and "invalid choice" not in out.stderr:
        raise RuntimeError(f"cordon allow failed: {out.stderr.strip()}")


def cordon(workdir: Path, upstream: Upstream, upstream_ca: Path, *, repo: Path = REPO,
           name: str = "cordon") -> Contender:
    """cordon from the source tree `repo` (another checkout: a paired run of two versions)."""
    home = workdir / f"{name}-home"
    proj = workdir / f"{name}-project"
    proj.mkdir(parents=True, exist_ok=True)
    cfg = proj / "cordon.toml"
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "BENCH_SECRET": SECRET,
           "PYTHONPATH": str(repo)}
    env.pop("XDG_RUNTIME_DIR", None)
    cached: dict[str, tuple[str, str | None]] = {}

    def argv(port: int) -> list[str]:
        cfg.write_text(f'listen = {port}\n\n[policy]\nallow_private = ["{TUNNEL_IP}/32"]\n'
                       + route("bench", MITM_HOST, env="BENCH_SECRET", upstream=f"127.0.0.1:{upstream.ports[0]}",
                               ca_file=str(upstream_ca)))
        cached.clear()
        approve(cfg, env)
        return [sys.executable, "-m", "cordon", "start", "--config", str(cfg), "--log-level", "warn"]

    def env_vars() -> dict[str, str]:
        out = subprocess.run([sys.executable, "-m", "cordon", "env", "--format", "json", "--config", str(cfg)],
                             capture_output=True, text=True, env={**os.environ, **env}, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"cordon env failed: {out.stderr.strip()}")
        return dict(json.loads(out.stdout))

    def auth() -> tuple[str, str | None]:
        if "auth" not in cached:
            # the token is created by `cordon start`; `cordon env` hands it out in the proxy URL
            url = env_vars()["HTTPS_PROXY"]
            cred = url.split("//", 1)[1].split("@", 1)[0]
            import base64
            cached["auth"] = (cred + "@", "Basic " + base64.b64encode(cred.encode()).decode())
        return cached["auth"]

    def ca() -> Path:
        return Path(env_vars()["NODE_EXTRA_CA_CERTS"])

    return Contender(name=name, argv=argv, ca_pem=ca, env=env, proxy_auth=auth)


# --- measurements ------------------------------------------------------------------------------

@dataclasses.dataclass
class Batch:
    wall: float
    codes: list[str]
    times: list[float]
    sizes: list[int] = dataclasses.field(default_factory=list)   # with a `%{size_download} ` format

    @property
    def ok(self) -> int:
        return sum(c == "200" for c in self.codes)


def curl(urls: str, *, proxy: str | None, cacert: Path, extra: Sequence[str] = (), fmt: str = "%{time_total}",
         timeout: float = 120) -> Batch:
    argv = ["curl", "-sS", "--no-progress-meter", "--http1.1", "--noproxy", "", "--cacert", str(cacert),
            "-o", "/dev/null", "-w", "%{http_code} " + fmt + "\\n", *extra]
    if proxy:
        argv += ["-x", proxy]
    argv.append(urls)
    t0 = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    wall = time.perf_counter() - t0
    b = Batch(wall, [], [])
    for line in out.stdout.splitlines():
        fields = line.split()
        if not fields:
            continue
        b.codes.append(fields[0])
        with contextlib.suppress(ValueError):
            b.times.append(float(fields[-1]))   # the time is always the last field
            if len(fields) == 3:
                b.sizes.append(int(fields[1]))
    return b


def pct(values: Sequence[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def sized_run(base: str, path: str, duration: float, *, proxy: str | None, cacert: Path,
              extra: Sequence[str] = (), probe: int = 100, cap: int = 200_000) -> Batch:
    """A probe batch (also the warm-up: leaf certificates, pools), then one sized to last `duration`."""
    p = curl(f"{base}{path}?[1-{probe}]", proxy=proxy, cacert=cacert, extra=extra)
    rate = p.ok / p.wall if p.wall > 0 and p.ok else 10.0
    n = max(probe, min(cap, int(rate * duration)))
    return curl(f"{base}{path}?[1-{n}]", proxy=proxy, cacert=cacert, extra=extra, timeout=duration * 20 + 60)


@dataclasses.dataclass
class Figures:
    ka1: tuple[float, float, float] | None = None      # req/s, p50 ms, p99 ms
    ka16: tuple[float, float, float] | None = None
    ka200: tuple[float, float, float] | None = None
    conn: float | None = None
    bulk_mitm: float | None = None
    bulk_tunnel: float | None = None
    ready_ms: float | None = None
    rss_mib: float | None = None
    errors: list[str] = dataclasses.field(default_factory=list)


def keepalive(base: str, c: int, duration: float, proxy: str | None, cacert: Path,
              f: Figures) -> tuple[float, float, float]:
    extra = ["--parallel", "--parallel-immediate", "--parallel-max", str(c)] if c > 1 else []
    b = sized_run(base, "/small", duration, proxy=proxy, cacert=cacert, extra=extra, probe=max(100, 2 * c))
    if b.ok != len(b.codes):
        f.errors.append(f"keep-alive c{c}: {len(b.codes) - b.ok} of {len(b.codes)} not 200")
    return b.ok / b.wall, pct(b.times, 0.5) * 1000, pct(b.times, 0.99) * 1000


def new_conns(base: str, duration: float, proxy: str | None, cacert: Path, f: Figures) -> float:
    # no TLS session reuse: every request pays CONNECT + a full handshake (+ the upstream's, if any)
    extra = ["--no-sessionid", "-H", "Connection: close"]
    b = sized_run(base, "/small", duration, proxy=proxy, cacert=cacert, extra=extra, probe=20)
    if b.ok != len(b.codes):
        f.errors.append(f"new connections: {len(b.codes) - b.ok} of {len(b.codes)} not 200")
    return b.ok / b.wall


def bulk(base: str, size: int, runs: int, proxy: str | None, cacert: Path, f: Figures, what: str,
         max_time: float) -> float:
    """Median MB/s; a download cut off at `max_time` counts with the bytes it got (and ends the series)."""
    speeds = []
    for _ in range(runs):
        b = curl(f"{base}/bulk/{size}", proxy=proxy, cacert=cacert, fmt="%{size_download} %{time_total}",
                 extra=["--max-time", f"{max_time:g}"], timeout=max_time + 30)
        if b.ok != 1 or not b.times or len(b.sizes) != 1:
            f.errors.append(f"bulk {what}: status {b.codes}")
            break
        speeds.append(b.sizes[0] / b.times[0] / 1e6)
        if b.sizes[0] < size:
            f.errors.append(f"bulk {what}: only {b.sizes[0] / 1e6:.0f} of {size / 1e6:.0f} MB in {max_time:g} s")
            break
    return statistics.median(speeds) if speeds else float("nan")


# --- the run -----------------------------------------------------------------------------------

def measure(c: Contender | None, up: Upstream, workdir: Path, upstream_ca: Path, args: argparse.Namespace,
            *, mitm: bool, tunnel: bool) -> Figures:
    f = Figures()
    proxy = None
    cacert = upstream_ca
    if c is not None:
        # a cold start first (creates the proxy's CA), then timed warm starts
        c.start(workdir, f"{TUNNEL_IP}:{up.ports[1]}")
        c.stop()
        starts = []
        for _ in range(args.starts):
            starts.append(c.start(workdir, f"{TUNNEL_IP}:{up.ports[1]}"))
            if len(starts) < args.starts:
                c.stop()
        f.ready_ms = statistics.median(starts) * 1000
        proxy = c.proxy_url()
        ca = c.ca_pem()
        # MITM rows trust only the proxy's CA, the tunnel row only the upstream's: a figure
        # exists only if the path really was intercepted (or really was a tunnel)
        if ca is not None:
            cacert = bundle(workdir / f"{c.name.split()[0]}-ca.pem", ca)
    try:
        if mitm:
            f.ka1 = keepalive(up.mitm_base, 1, args.duration, proxy, cacert, f)
            f.ka16 = keepalive(up.mitm_base, 16, args.duration, proxy, cacert, f)
            if args.c200:
                f.ka200 = keepalive(up.mitm_base, 200, args.duration, proxy, cacert, f)
            f.conn = new_conns(up.mitm_base, args.duration, proxy, cacert, f)
            f.bulk_mitm = bulk(up.mitm_base, args.bulk_mb * 1_000_000, args.bulk_runs, proxy, cacert, f, "MITM",
                               args.bulk_max_time)
        if tunnel:
            f.bulk_tunnel = bulk(up.tunnel_base, args.bulk_mb * 1_000_000, args.bulk_runs, proxy, upstream_ca, f,
                                 "tunnel", args.bulk_max_time)
        if c is not None and c.proc is not None:
            f.rss_mib = peak_rss_mib(c.proc.pid)
    finally:
        if c is not None:
            c.stop()
    return f


def fmt_ratio(v: float | None, d: float | None, *, unit: str = "", digits: int = 0, latency: bool = False) -> str:
    if v is None or v != v:
        return "—"
    s = f"{v:,.{digits}f}{unit}"
    if d is None or d != d or d == 0:
        return s
    if latency:
        return f"{s} ({v / d:.1f}×, {v - d:+.2f} ms)"  # noqa: RUF001
    return f"{s} ({v / d:.2f}×)"  # noqa: RUF001


def table(cols: list[tuple[str, Figures | None, Figures | None]], direct: Figures) -> str:
    """cols: (header, MITM-path figures, tunnel figures)."""
    heads = ["direct"] + [h for h, _, _ in cols]
    rows: list[tuple[str, Callable[[Figures | None, Figures | None, bool], str]]] = []

    def ka(which: str, i: int, label: str, digits: int, unit: str, latency: bool) -> None:
        def cell(m: Figures | None, t: Figures | None, is_direct: bool) -> str:
            v = getattr(m, which) if m else None
            dv = getattr(direct, which)
            if v is None:
                return "—"
            return fmt_ratio(v[i], None if is_direct else dv[i] if dv else None, unit=unit, digits=digits,
                             latency=latency)
        rows.append((label, cell))

    ka("ka1", 0, "MITM keep-alive, concurrency 1: req/s", 0, "", False)
    ka("ka1", 1, "MITM keep-alive, concurrency 1: p50 ms", 2, "", True)
    ka("ka1", 2, "MITM keep-alive, concurrency 1: p99 ms", 2, "", True)
    ka("ka16", 0, "MITM keep-alive, concurrency 16: req/s", 0, "", False)
    ka("ka16", 1, "MITM keep-alive, concurrency 16: p50 ms", 2, "", True)
    ka("ka16", 2, "MITM keep-alive, concurrency 16: p99 ms", 2, "", True)
    if direct.ka200 is not None:
        ka("ka200", 0, "MITM keep-alive, 200 connections: req/s", 0, "", False)

    def simple(attr: str, label: str, digits: int, from_tunnel: bool = False, ratio: bool = True) -> None:
        def cell(m: Figures | None, t: Figures | None, is_direct: bool) -> str:
            src = t if from_tunnel else m
            v = getattr(src, attr) if src else None
            d = getattr(direct, attr)
            return fmt_ratio(v, None if (is_direct or not ratio) else d, digits=digits)
        rows.append((label, cell))

    simple("conn", "MITM new TLS connection per request: conn/s", 0)
    simple("bulk_mitm", "MITM large download: MB/s", 0)
    simple("bulk_tunnel", "tunnel large download: MB/s", 0, from_tunnel=True)

    def proc_cell(attr: str, label: str, digits: int) -> None:
        def cell(m: Figures | None, t: Figures | None, is_direct: bool) -> str:
            if is_direct:
                return "—"
            vals = [getattr(x, attr) for x in (m, t) if x is not None and getattr(x, attr) is not None]
            return " / ".join(f"{v:,.{digits}f}" for v in dict.fromkeys(vals)) if vals else "—"
        rows.append((label, cell))

    proc_cell("ready_ms", "start-up until relaying: ms", 0)
    proc_cell("rss_mib", "peak RSS: MiB", 0)

    out = ["| | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    for label, cell in rows:
        cells = [cell(direct, direct, True)] + [cell(m, t, False) for _, m, t in cols]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=2.0, help="seconds per request-rate figure (default 2)")
    ap.add_argument("--bulk-mb", type=int, default=200, help="size of the large download in MB (default 200)")
    ap.add_argument("--bulk-runs", type=int, default=3, help="downloads per figure; the median is shown")
    ap.add_argument("--bulk-max-time", type=float, default=8.0,
                    help="cut a download off after this many seconds and count what arrived (default 8)")
    ap.add_argument("--starts", type=int, default=3, help="timed warm starts per proxy; the median is shown")
    ap.add_argument("--only", default="cordon,mitmproxy,proxy.py",
                    help="comma-separated contenders (direct always runs)")
    ap.add_argument("--no-c200", dest="c200", action="store_false",
                    help="skip the 200-connection keep-alive run (peak RSS is then taken at concurrency 16)")
    ap.add_argument("--json", metavar="FILE", help="also write the raw figures as JSON")
    args = ap.parse_args()
    if shutil.which("curl") is None:
        print("bench: needs curl", file=sys.stderr)
        return 1
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cordon-bench-") as tmp:
        workdir = Path(tmp)
        upstream_ca, leaf, key = make_pki(workdir)
        up = Upstream(leaf, key)
        results: dict[str, Figures] = {}
        cols: list[tuple[str, Figures | None, Figures | None]] = []
        try:
            log("direct")
            direct = measure(None, up, workdir, upstream_ca, args, mitm=True, tunnel=True)
            results["direct"] = direct
            for name in ("cordon", "mitmproxy", "proxy.py"):
                if name not in only:
                    continue
                log(name)
                try:
                    if name == "cordon":
                        f = measure(cordon(workdir, up, upstream_ca), up, workdir, upstream_ca, args,
                                    mitm=True, tunnel=True)
                        cols.append(("cordon", f, f))
                    elif name == "mitmproxy":
                        f = measure(mitmproxy(workdir, upstream_ca), up, workdir, upstream_ca, args,
                                    mitm=True, tunnel=True)
                        cols.append(("mitmproxy", f, f))
                    else:
                        fm = measure(proxy_py(workdir, upstream_ca, True), up, workdir, upstream_ca, args,
                                     mitm=True, tunnel=False)
                        ft = measure(proxy_py(workdir, upstream_ca, False), up, workdir, upstream_ca, args,
                                     mitm=False, tunnel=True)
                        results["proxy.py (TLS interception)"] = fm
                        results["proxy.py (tunnel only)"] = ft
                        cols.append(("proxy.py", fm, ft))
                        continue
                    results[name] = f
                except (RuntimeError, subprocess.SubprocessError, OSError) as e:
                    log(f"{name}: skipped: {e}")
                    cols.append((f"{name} (failed)", None, None))
        finally:
            up.stop()
    print(table(cols, results["direct"]))
    print()
    print(notes(args, time.perf_counter() - t_start))
    for name, f in results.items():
        for err in f.errors:
            print(f"- {name}: {err}")
    if args.json:
        Path(args.json).write_text(json.dumps({k: dataclasses.asdict(v) for k, v in results.items()}, indent=2))
    return 0


def notes(args: argparse.Namespace, elapsed: float) -> str:
    import platform
    versions = []
    for pkg in ("mitmproxy", "proxy.py"):
        with contextlib.suppress(Exception):
            import importlib.metadata as md
            versions.append(f"{pkg} {md.version(pkg)}")
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"Python {platform.python_version()}, {os.cpu_count()} CPUs (load average at the end {load}: "
            f"other work on the machine skews every column), curl as the client, "
            f"{', '.join(versions)}; {args.duration:g} s per rate, {args.bulk_mb} MB downloads "
            f"(median of {args.bulk_runs}), start-up median of {args.starts}; ran {elapsed:.0f} s. "
            "Ratios are to direct; proxy.py's tunnel row and the second figure of its start-up and RSS cells "
            "come from a second proxy.py without TLS interception.")


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
