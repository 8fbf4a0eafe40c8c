"""Where the floor is: cordon beside relays that do strictly less work, in one interleaved run.

bench/run.py compares cordon with other proxies. This script asks a different
question: how close can any Python proxy get to a direct connection on this
machine? It runs, against the same local HTTPS upstream and with curl as the
client, a direct connection, cordon (on uvloop, its default, and on asyncio's
own loop) and the minimal relays of bench/relays.py (TLS in, TLS out, copy,
nothing else; and opaque splice/copy tunnels). The figures are taken in rounds,
each round measuring every contender once, so slow drifts of the machine hit
all columns alike; the table shows the median of the rounds and the ratio to
direct.

    bench/.venv/bin/python bench/floor.py [--rounds 5] [--duration 1.5] [--bulk-mb 200]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as R


@dataclasses.dataclass
class Who:
    name: str
    proxy: str | None
    cacert: Path
    mitm: bool = True          # measured on the MITM rows
    tunnel: bool = True        # measured on the tunnel row
    proc: subprocess.Popen[str] | None = None
    stop: object = None


def start_relay(mode: str, leaf: Path, key: Path, ca: Path, up: R.Upstream) -> tuple[subprocess.Popen[str], int]:
    p = subprocess.Popen([sys.executable, str(R.HERE / "relays.py"), mode, "--cert", str(leaf), "--key", str(key),
                          "--ca", str(ca), "--upstream-port", str(up.ports[0])],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert p.stdout is not None
    return p, int(p.stdout.readline())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=1.5, help="seconds per request-rate figure")
    ap.add_argument("--bulk-mb", type=int, default=200)
    args = ap.parse_args()
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cordon-floor-") as tmp:
        wd = Path(tmp)
        ca, leaf, key = R.make_pki(wd)
        up = R.Upstream(leaf, key)
        who: list[Who] = [Who("direct", None, ca)]
        relays: list[subprocess.Popen[str]] = []
        cordons: list[R.Contender] = []
        try:
            for label, loop in (("cordon (uvloop)", ""), ("cordon (asyncio loop)", "asyncio")):
                d = wd / f"cordon-{loop or 'uvloop'}"
                d.mkdir()
                c = R.cordon(d, up, ca)
                c.env["CORDON_EVENT_LOOP"] = loop or "uvloop"
                c.start(d, f"{R.TUNNEL_IP}:{up.ports[1]}")
                cordons.append(c)
                who.append(Who(label, c.proxy_url(), R.bundle(d / "ca.pem", c.ca_file())))
            for mode, mitm in (("tls-threads", True), ("tls-uvloop", True), ("tls-asyncio", True),
                               ("splice", False), ("copy", False)):
                p, port = start_relay(mode, leaf, key, ca, up)
                relays.append(p)
                who.append(Who(f"relay: {mode}", f"http://127.0.0.1:{port}", ca, mitm=mitm, tunnel=not mitm))
            figs: dict[str, dict[str, list[float]]] = {w.name: {} for w in who}
            f = R.Figures()
            for i in range(args.rounds):
                R.log(f"round {i + 1} of {args.rounds}")
                for w in who:
                    R.log(f"  {w.name}")
                    got = figs[w.name]
                    if w.mitm:
                        rps, p50, _ = R.keepalive(up.mitm_base, 1, args.duration, w.proxy, w.cacert, f)
                        got.setdefault("ka1", []).append(rps)
                        got.setdefault("p50", []).append(p50)
                        got.setdefault("ka16", []).append(
                            R.keepalive(up.mitm_base, 16, args.duration, w.proxy, w.cacert, f)[0])
                        got.setdefault("bulk_mitm", []).append(
                            R.bulk(up.mitm_base, args.bulk_mb * 10**6, 1, w.proxy, w.cacert, f, "MITM", 30))
                    if w.tunnel:
                        got.setdefault("bulk_tunnel", []).append(
                            R.bulk(up.tunnel_base, args.bulk_mb * 10**6, 1, w.proxy, ca, f, "tunnel", 30))
        finally:
            for c in cordons:
                c.stop()
            for p in relays:
                p.kill()
                p.wait()
            up.stop()
    rows = [("ka1", "keep-alive c1: req/s", 0), ("p50", "keep-alive c1: p50 ms", 3),
            ("ka16", "keep-alive c16: req/s", 0), ("bulk_mitm", "MITM download: MB/s", 0),
            ("bulk_tunnel", "tunnel download: MB/s", 0)]
    med = {name: {k: statistics.median(v) for k, v in m.items()} for name, m in figs.items()}
    direct = med["direct"]
    print("| | " + " | ".join(med) + " |")
    print("|---|" + "---|" * len(med))
    for key_, label, digits in rows:
        cells = []
        for name, m in med.items():
            if key_ not in m:
                cells.append("—")
                continue
            v, base = m[key_], direct.get(key_)
            if name == "direct" or not base:
                cells.append(f"{v:,.{digits}f}")
            elif key_ == "p50":
                cells.append(f"{v:,.{digits}f} ({v - base:+.3f})")
            else:
                cells.append(f"{v:,.{digits}f} ({v / base:.2f}×)")  # noqa: RUF001
        print(f"| {label} | " + " | ".join(cells) + " |")
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nMedians of {args.rounds} interleaved rounds; {args.duration:g} s per rate, {args.bulk_mb} MB downloads; "
          f"load average at the end {load}; ran {time.perf_counter() - t_start:.0f} s.")
    for e in f.errors:
        print(f"- {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
