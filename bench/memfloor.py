"""Memory after the 200-connection run: cordon beside a bare relay, in one run.

The same HTTPS upstream and curl load as bench/run.py's 200-connection row
(`GET /small`, keep-alive, concurrency 16, then 200): `cordon start` (the
set-up of run.py) and the `tls-uvloop` relay of bench/relays.py, which holds a
client TLS session and an upstream TLS connection per client connection and
does nothing else, on the same Python, uvloop and OpenSSL. A third contender
is that relay started after importing what `cordon start` imports (the CLI,
the proxy; not cryptography, which only its short-lived signing child loads),
to split cordon's figure into the modules it loads and what its connections
cost. For each: VmRSS idle (ready), VmRSS and
VmHWM after the load, and the sockets it holds then. Not a test.

    bench/.venv/bin/python bench/memfloor.py [--duration 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as R

IMPORTS = ("import cordon.cli.cmd_start, cordon.app.start, cordon.proxy.server, cordon.proxy.mitm, "
           "anyio, runpy, sys; ")


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def sockets(pid: int) -> int:
    n = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            n += os.readlink(fd).startswith("socket:")
        except OSError:
            pass
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=2.0, help="seconds per request-rate batch")
    args = ap.parse_args()
    t_start = time.perf_counter()
    rows: list[tuple[str, float, float, float, int, float]] = []
    with tempfile.TemporaryDirectory(prefix="cordon-memfloor-") as tmp:
        wd = Path(tmp)
        ca, leaf, key = R.make_pki(wd)
        up = R.Upstream(leaf, key)
        f = R.Figures()
        try:
            relay_args = ["tls-uvloop", "--cert", str(leaf), "--key", str(key), "--ca", str(ca),
                          "--upstream-port", str(up.ports[0])]
            relay_py = str(R.HERE / "relays.py")
            contenders = [
                ("cordon start", None),
                ("relay: tls-uvloop", [sys.executable, relay_py, *relay_args]),
                ("relay: tls-uvloop + cordon start's imports",
                 [sys.executable, "-c", IMPORTS + f"sys.argv = {[relay_py, *relay_args]!r}; "
                  f"runpy.run_path({relay_py!r}, run_name='__main__')"]),
            ]
            for name, argv in contenders:
                R.log(name)
                c = None
                p = None
                if argv is None:
                    d = wd / "cordon"
                    d.mkdir()
                    c = R.cordon(d, up, ca)
                    c.start(d, f"{R.TUNNEL_IP}:{up.ports[1]}")
                    cordon_ca = c.ca_pem()
                    assert c.proc is not None and cordon_ca is not None
                    pid, proxy, cacert = c.proc.pid, c.proxy_url(), R.bundle(d / "ca.pem", cordon_ca)
                else:
                    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                         env={**os.environ, "PYTHONPATH": str(R.REPO)})
                    assert p.stdout is not None
                    pid, proxy, cacert = p.pid, f"http://127.0.0.1:{int(p.stdout.readline())}", ca
                try:
                    time.sleep(0.5)
                    idle = status_kib(pid, "VmRSS") / 1024
                    R.keepalive(up.mitm_base, 16, args.duration, proxy, cacert, f)
                    rps = R.keepalive(up.mitm_base, 200, args.duration, proxy, cacert, f)[0]
                    rows.append((name, idle, status_kib(pid, "VmRSS") / 1024, status_kib(pid, "VmHWM") / 1024,
                                 sockets(pid), rps))
                finally:
                    if c is not None:
                        c.stop()
                    if p is not None:
                        R.stop_process(p)
        finally:
            up.stop()
    print("| after the 200-connection run | VmRSS idle | VmRSS after | VmHWM | sockets held | c200 req/s |")
    print("|---|---|---|---|---|---|")
    for name, idle, rss, hwm, socks, rps in rows:
        print(f"| {name} | {idle:.1f} MiB | {rss:.1f} MiB | {hwm:.1f} MiB | {socks} | {rps:,.0f} |")
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n{args.duration:g} s at concurrency 16, then {args.duration:g} s at 200; Python "
          f"{sys.version.split()[0]}; load average at the end {load}; ran {time.perf_counter() - t_start:.0f} s.")
    for e in f.errors:
        print(f"- {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
