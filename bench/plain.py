"""Plain `http://` forwarding for unmatched hosts: cordon against direct and a CONNECT tunnel.

    bench/.venv/bin/python bench/plain.py [--rounds 5] [--requests 3000] [--concurrency 16] [--repo TREE]

A cleartext upstream (bench/upstream.py --plain) on 127.0.0.1, and one `cordon
start` whose only route is for another host, so every request here is
unmatched: policy, SSRF guard (`[policy] allow_private = 127.0.0.0/8` lets the
loopback upstream through), then forwarded. curl is the client, `GET /small`
over keep-alive connections. In each round, interleaved:

  - direct: curl to the upstream;
  - plain forward, host name: `curl -x cordon http://localhost:PORT/small`
    (the name goes through the resolver and the SSRF guard);
  - plain forward, IP literal: `http://127.0.0.1:PORT/small`;
  - tunnel: the same requests through a CONNECT tunnel (`curl -p`);
  - proxy.py (no interception), plain forward, IP literal;
  - the floor: `relays.py http-uvloop`, a forwarder that splits the request
    line and headers, rewrites to origin form and relays over one kept-alive
    upstream connection per client, on uvloop as cordon; no policy, no SSRF
    guard, no response parsing, no timeouts: strictly less work than cordon.

Figures: req/s and its ratio to direct (wall clock, moved by whatever else
runs on the machine), and the proxy process's own CPU time per request
(/proc/<pid>/stat, with its child processes: proxy.py forks workers), which
other load moves far less. Medians of the rounds.
`--repo` runs cordon from another tree, for a before/after.
Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as R
from routes import route


def cpu_seconds(pid: int) -> float:
    """User+system CPU of `pid` and its live descendants."""
    stats: dict[int, list[str]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stats[int(d.name)] = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
    tree, todo = set(), [pid]
    while todo:
        p = todo.pop()
        tree.add(p)
        todo += [q for q, f in stats.items() if int(f[1]) == p and q not in tree]
    ticks = sum(int(stats[p][11]) + int(stats[p][12]) for p in tree if p in stats)
    return ticks / os.sysconf("SC_CLK_TCK")


def start_plain_relay() -> tuple[subprocess.Popen[str], int]:
    p = subprocess.Popen([sys.executable, str(R.HERE / "relays.py"), "http-uvloop"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert p.stdout is not None
    return p, int(p.stdout.readline())


def start_plain_upstream() -> tuple[subprocess.Popen[str], int]:
    p = subprocess.Popen([sys.executable, str(R.HERE / "upstream.py"), "--plain", "--host", "127.0.0.1"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    return p, int(p.stdout.readline())


def start_cordon(d: Path, up_port: int, log_level: str = "warn") -> R.Contender:
    """`cordon start` with one route for a host no request here names: all traffic is unmatched."""
    d.mkdir(parents=True, exist_ok=True)
    home = d / "home"
    cfg = d / "cordon.toml"
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "BENCH_SECRET": R.SECRET,
           "PYTHONPATH": str(R.REPO)}

    def argv(port: int) -> list[str]:
        cfg.write_text(f'listen = {port}\n\n[policy]\nallow_private = ["127.0.0.0/8"]\n'
                       + route("other", "api.example.com", env="BENCH_SECRET"))
        R.approve(cfg, env)
        return [sys.executable, "-m", "cordon", "start", "--config", str(cfg), "--log-level", log_level]

    cached: dict[str, tuple[str, str | None]] = {}

    def auth() -> tuple[str, str | None]:
        if "auth" not in cached:
            import base64
            import json
            out = subprocess.run([sys.executable, "-m", "cordon", "env", "--format", "json", "--config", str(cfg)],
                                 capture_output=True, text=True, env={**os.environ, **env}, check=True)
            cred = json.loads(out.stdout)["HTTPS_PROXY"].split("//", 1)[1].split("@", 1)[0]
            cached["auth"] = (cred + "@", "Basic " + base64.b64encode(cred.encode()).decode())
        return cached["auth"]

    c = R.Contender(name="cordon", argv=argv, ca_pem=lambda: None, env=env, proxy_auth=auth)
    c.start(d, f"127.0.0.1:{up_port}")
    return c


def batch(url: str, n: int, conc: int, proxy: str | None, tunnel: bool = False) -> R.Batch:
    extra = ["--parallel", "--parallel-immediate", "--parallel-max", str(conc)] if conc > 1 else []
    if tunnel:
        extra.append("-p")
    b = R.curl(f"{url}?[1-{n}]", proxy=proxy, cacert=Path("/dev/null"), extra=extra)
    if b.ok != len(b.codes) or not b.ok:
        raise SystemExit(f"{url} via {proxy} (tunnel={tunnel}): {len(b.codes) - b.ok} of {len(b.codes)} not 200")
    return b


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=3000, help="requests per batch")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--log-level", default="warn",
                    help="cordon's --log-level (default warn, as run.py; info, cordon's default, logs each exchange)")
    ap.add_argument("--repo", type=Path, help="run cordon from another tree (e.g. a worktree of main)")
    ap.add_argument("--no-peers", action="store_true", help="cordon and direct only (no proxy.py, no floor relay)")
    args = ap.parse_args()
    if args.repo:
        R.REPO = args.repo.resolve()
    with tempfile.TemporaryDirectory(prefix="cordon-plain-") as tmp:
        up, port = start_plain_upstream()
        c = ppy = None
        relay: subprocess.Popen[str] | None = None
        try:
            c = start_cordon(Path(tmp), port, args.log_level)
            assert c.proc is not None
            pid = c.proc.pid
            proxy = c.proxy_url()
            rows = {
                "direct": (f"http://127.0.0.1:{port}/small", None, False, 0),
                "cordon: plain forward, host name": (f"http://localhost:{port}/small", proxy, False, pid),
                "cordon: plain forward, IP literal": (f"http://127.0.0.1:{port}/small", proxy, False, pid),
                "cordon: CONNECT tunnel": (f"http://127.0.0.1:{port}/small", proxy, True, pid),
            }
            if not args.no_peers:
                ppy = R.proxy_py(Path(tmp), Path("/dev/null"), False)
                ppy.start(Path(tmp), f"127.0.0.1:{port}")
                assert ppy.proc is not None
                rows["proxy.py: plain forward, IP literal"] = (f"http://127.0.0.1:{port}/small", ppy.proxy_url(),
                                                               False, ppy.proc.pid)
                relay, rport = start_plain_relay()
                rows["floor: relays.py http-uvloop"] = (f"http://127.0.0.1:{port}/small",
                                                        f"http://127.0.0.1:{rport}", False, relay.pid)
            rate: dict[str, list[float]] = {k: [] for k in rows}
            cpu: dict[str, list[float]] = {k: [] for k in rows}
            for url, px, tun, _ in rows.values():   # warm-up
                batch(url, 200, args.concurrency, px, tun)
            t0 = time.perf_counter()
            for i in range(args.rounds):
                order = list(rows.items())
                if i % 2:
                    order.reverse()
                for name, (url, px, tun, pid) in order:
                    before = cpu_seconds(pid) if pid else 0.0
                    b = batch(url, args.requests, args.concurrency, px, tun)
                    rate[name].append(b.ok / b.wall)
                    cpu[name].append(((cpu_seconds(pid) if pid else 0.0) - before) / b.ok * 1e6)
            elapsed = time.perf_counter() - t0
        finally:
            if c is not None:
                c.stop()
            if ppy is not None:
                ppy.stop()
            if relay is not None:
                R.stop_process(relay)
            R.stop_process(up)
    d = statistics.median(rate["direct"])
    print(f"| concurrency {args.concurrency}, `GET /small` keep-alive | req/s | ratio to direct | "
          "CPU per request in between |")
    print("|---|---|---|---|")
    for name in rows:
        r = statistics.median(rate[name])
        cell = "—" if name == "direct" else f"{statistics.median(cpu[name]):.0f} µs"
        print(f"| {name} | {r:,.0f} | {r / d:.2f}× | {cell} |")  # noqa: RUF001
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\ncordon --log-level {args.log_level}; {args.rounds} rounds of {args.requests} requests per row, "
          "interleaved (order flipped every "
          f"round), medians; ran {elapsed:.0f} s; load average at the end {load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
