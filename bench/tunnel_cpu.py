"""Tunnel bulk in CPU time: what the extra loopback hop costs, cordon beside relays that do nothing else.

    bench/.venv/bin/python bench/tunnel_cpu.py [--rounds 5] [--bulk-mb 200]

On a shared 2-core machine MB/s moves by a factor of two from minute to
minute; CPU seconds per byte move far less. This downloads `--bulk-mb` through
an opaque CONNECT tunnel (TLS end to end, curl to bench/upstream.py on
127.0.0.2) directly, through cordon (`cordon start`, its copying tunnel) and
through the two bare tunnels of bench/relays.py (`copy`: recv_into + sendall,
two threads; `splice`: splice(2) through a pipe), interleaved, `--rounds`
times. Per download it takes the CPU time (user + system) of each process:
the client (curl), the upstream, and the relay in between. The table shows
medians per contender: ms of CPU per 100 MB for each, the total, and MB/s with
its ratio to direct (wall clock, for reference). Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import floor as F
import run as R


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--bulk-mb", type=int, default=200)
    args = ap.parse_args()
    size = args.bulk_mb * 10**6
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cordon-tunnel-cpu-") as tmp:
        wd = Path(tmp)
        ca, leaf, key = R.make_pki(wd)
        up = R.Upstream(leaf, key)
        up_pid = up.procs[1].pid            # the tunnel target, 127.0.0.2
        c = R.cordon(wd, up, ca)
        relays: list[subprocess.Popen[str]] = []
        try:
            c.start(wd, f"{R.TUNNEL_IP}:{up.ports[1]}")
            assert c.proc is not None
            who: dict[str, tuple[str | None, int | None]] = {"direct": (None, None),
                                                             "cordon": (c.proxy_url(), c.proc.pid)}
            for mode in ("copy", "splice"):
                p, port = F.start_relay(mode, leaf, key, ca, up)
                relays.append(p)
                who[f"relay: {mode}"] = (f"http://127.0.0.1:{port}", p.pid)
            cols = ("client", "upstream", "relay", "total", "MB/s")
            figs: dict[str, dict[str, list[float]]] = {w: {k: [] for k in cols} for w in who}
            f = R.Figures()
            for proxy, _ in who.values():   # warm-up
                R.bulk(up.tunnel_base, 10**7, 1, proxy, ca, f, "tunnel", 60)
            for i in range(args.rounds):
                order = list(who.items())
                if i % 2:
                    order.reverse()
                for name, (proxy, pid) in order:
                    before = (children_cpu(), cpu_seconds(up_pid), cpu_seconds(pid) if pid else 0.0)
                    mbs = R.bulk(up.tunnel_base, size, 1, proxy, ca, f, "tunnel", 120)
                    after = (children_cpu(), cpu_seconds(up_pid), cpu_seconds(pid) if pid else 0.0)
                    per100 = [(a - b) * 1000 / (size / 1e8) for a, b in zip(after, before, strict=True)]
                    g = figs[name]
                    g["client"].append(per100[0])
                    g["upstream"].append(per100[1])
                    g["relay"].append(per100[2])
                    g["total"].append(sum(per100))
                    g["MB/s"].append(mbs)
        finally:
            c.stop()
            for p in relays:
                p.kill()
                p.wait()
            up.stop()
    med = {w: {k: statistics.median(v) for k, v in m.items()} for w, m in figs.items()}
    d = med["direct"]
    print("| tunnel download, CPU ms per 100 MB | client (curl) | upstream | in between | total | MB/s |")
    print("|---|---|---|---|---|---|")
    for w, m in med.items():
        between = "—" if w == "direct" else f"{m['relay']:.0f}"
        extra = "" if w == "direct" else f" (+{m['total'] - d['total']:.0f})"
        print(f"| {w} | {m['client']:.0f} | {m['upstream']:.0f} | {between} | {m['total']:.0f}{extra} | "
              f"{m['MB/s']:,.0f} ({m['MB/s'] / d['MB/s']:.2f}×) |")  # noqa: RUF001
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nMedians of {args.rounds} interleaved rounds of {args.bulk_mb} MB; load average at the end {load}; "
          f"ran {time.perf_counter() - t0:.0f} s. CPU from /proc/<pid>/stat (relay, upstream) and "
          "getrusage of the finished curl (client); ticks of 10 ms.")
    for e in f.errors:
        print(f"- {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
