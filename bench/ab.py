"""Before/after: proxy CPU per MITM keep-alive request, two cordon trees side by side.

    bench/.venv/bin/python bench/ab.py --base ../main-tree [--new .] [--pairs 10] [--requests 2000]

Both trees run `cordon start` at the same time (run.py's set-up: one route for
`localhost`, bench/upstream.py behind it, curl as the client); batches of
`--requests` `GET /small` alternate between them, `--pairs` times per
concurrency (1 and 16), the order flipping every pair. Each batch's figure is
the proxy process's own CPU time (/proc/<pid>/stat) per request, so both
trees see the same load on a shared machine, and the paired ratio new/base is
what to quote. Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as R


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, required=True, help="the tree to compare against (e.g. a worktree of main)")
    ap.add_argument("--new", type=Path, default=R.REPO, help="the tree under test (default: this checkout)")
    ap.add_argument("--pairs", type=int, default=10, help="alternating batch pairs per concurrency (default 10)")
    ap.add_argument("--requests", type=int, default=2000, help="requests per batch (default 2000)")
    args = ap.parse_args()
    trees = {"base": args.base.resolve(), "new": args.new.resolve()}
    with tempfile.TemporaryDirectory(prefix="cordon-ab-") as tmp:
        workdir = Path(tmp)
        upstream_ca, leaf, key = R.make_pki(workdir)
        up = R.Upstream(leaf, key)
        proxies: dict[str, tuple[R.Contender, Path]] = {}
        try:
            for name, tree in trees.items():
                R.REPO = tree   # run.cordon() puts R.REPO on the proxy's PYTHONPATH
                d = workdir / name
                d.mkdir()
                c = R.cordon(d, up, upstream_ca)
                c.start(d, f"{R.TUNNEL_IP}:{up.ports[1]}")
                ca = c.ca_pem()
                assert ca is not None
                proxies[name] = (c, R.bundle(d / "trust.pem", ca))
            print("| | base µs/request | new µs/request | new/base, paired: median (range) |")
            print("|---|---|---|---|")
            for conc in (1, 16):
                extra = ["--parallel", "--parallel-immediate", "--parallel-max", str(conc)] if conc > 1 else []
                per: dict[str, list[float]] = {k: [] for k in trees}
                for c, cacert in proxies.values():   # warm-up: leaf certificate, pooled upstreams
                    R.curl(f"{up.mitm_base}/small?[1-300]", proxy=c.proxy_url(), cacert=cacert, extra=extra)
                for i in range(args.pairs):
                    order = list(proxies.items())
                    if i % 2:
                        order.reverse()
                    for name, (c, cacert) in order:
                        assert c.proc is not None
                        before = cpu_seconds(c.proc.pid)
                        b = R.curl(f"{up.mitm_base}/small?[1-{args.requests}]", proxy=c.proxy_url(),
                                   cacert=cacert, extra=extra)
                        if b.ok != len(b.codes):
                            raise SystemExit(f"{name}: {len(b.codes) - b.ok} of {len(b.codes)} requests not 200")
                        per[name].append((cpu_seconds(c.proc.pid) - before) / b.ok * 1e6)
                ratios = [n / o for n, o in zip(per["new"], per["base"], strict=True)]
                print(f"| keep-alive, concurrency {conc} | {statistics.median(per['base']):.0f} | "
                      f"{statistics.median(per['new']):.0f} | {statistics.median(ratios):.3f} "
                      f"({min(ratios):.2f} to {max(ratios):.2f}) |")
        finally:
            for c, _ in proxies.values():
                c.stop()
            up.stop()
    load = os.getloadavg()
    print(f"\n{args.pairs} pairs of {args.requests} requests per row; load average {load[0]:.1f} / {load[1]:.1f} / "
          f"{load[2]:.1f}; base {trees['base']}, new {trees['new']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
