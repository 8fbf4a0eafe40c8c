"""Load and soak: many concurrent keep-alive clients through a real `cordon start`, with its memory.

Not a test (it asserts nothing; the suite never runs it). One invocation:

  1. starts bench/upstream.py (HTTPS, 127.0.0.1 = the route host `localhost`,
     127.0.0.2 = a tunnelled host) and `cordon start` with one route (an env secret)
     and `[policy] allow_private` for the tunnel target — the same set-up as run.py;
  2. MITM phase: `--clients` concurrent keep-alive clients (default 200), each its
     own CONNECT + TLS to cordon's leaf, share `--requests` (default 20,000)
     `GET /small` requests; every answer must be a 200 with the full body;
  3. tunnel phase: the same through opaque CONNECT tunnels (TLS to the upstream);
  4. soak: both phases again, alternately, for `--soak` seconds (default 180);
  5. throughout, cordon's resident memory (VmRSS of its process) is sampled every
     `--sample` seconds; printed after each phase, then summed up as the median per
     quarter of the phases and the trend over the second half (a least-squares
     slope in MiB per million requests): memory that "stops growing" has flat
     later quarters and a slope near zero.

    /work/venv/bin/python bench/load.py                     # ~4 minutes on 2 cores
    /work/venv/bin/python bench/load.py --soak 0            # the two 20,000-request phases only

The clients are Python asyncio (one process, one loop), so on a small machine they
compete with cordon for CPU: the rates are a floor, the error count and the memory
curve are the point.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402  (bench/run.py: PKI, upstream and `cordon start` helpers)

BODY_LEN = len(b"x" * 127 + b"\n")


@dataclass
class Phase:
    name: str
    requests: int = 0
    errors: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def fail(self, why: str) -> None:
        self.errors += 1
        self.reasons[why] = self.reasons.get(why, 0) + 1

    def line(self) -> str:
        lat = sorted(self.latencies)
        p50 = statistics.median(lat) * 1000 if lat else 0.0
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else 0.0
        rate = self.requests / self.seconds if self.seconds else 0.0
        why = f"  ({', '.join(f'{k}: {v}' for k, v in self.reasons.items())})" if self.reasons else ""
        return (f"{self.name:<7} {self.requests:>7} requests  {self.errors:>3} errors  {self.seconds:6.1f} s  "
                f"{rate:7.0f} req/s  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms{why}")


async def read_head(reader: asyncio.StreamReader) -> tuple[int, int]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    return status, length


async def client(proxy_port: int, auth: str, target: str, sni: str, ctx: ssl.SSLContext, host_header: str,
                 n: int, phase: Phase) -> None:
    """One keep-alive client: CONNECT, TLS, then `n` requests on the same connection."""
    writer = None
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: {auth}\r\n\r\n"
                     .encode())
        status, _ = await read_head(reader)
        if status != 200:
            phase.fail(f"CONNECT {status}")
            return
        await writer.start_tls(ctx, server_hostname=sni)
        req = f"GET /small HTTP/1.1\r\nHost: {host_header}\r\nAuthorization: Bearer placeholder\r\n\r\n".encode()
        for _ in range(n):
            t0 = time.perf_counter()
            writer.write(req)
            status, length = await read_head(reader)
            body = await reader.readexactly(length)
            phase.latencies.append(time.perf_counter() - t0)
            phase.requests += 1
            if status != 200 or len(body) != BODY_LEN:
                phase.fail(f"status {status}, {len(body)} bytes")
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ssl.SSLError, ValueError) as e:
        phase.fail(type(e).__name__)
    finally:
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, ssl.SSLError):
                pass


async def phase(name: str, clients: int, requests: int, proxy_port: int, auth: str, target: str, sni: str,
                ctx: ssl.SSLContext, host_header: str) -> Phase:
    ph = Phase(name)
    per, extra = divmod(requests, clients)
    t0 = time.perf_counter()
    await asyncio.gather(*(client(proxy_port, auth, target, sni, ctx, host_header, per + (i < extra), ph)
                           for i in range(clients)))
    ph.seconds = time.perf_counter() - t0
    return ph


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def sampler(pid: int, every: float, out: list[tuple[float, float]], t0: float) -> None:
    while True:
        out.append((time.perf_counter() - t0, rss_mib(pid)))
        await asyncio.sleep(every)


async def main_async(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="cordon-load-"))
    upstream_ca, leaf, key = bench.make_pki(work)
    up = bench.Upstream(leaf, key)
    c = bench.cordon(work, up, upstream_ca)
    try:
        c.start(work, f"{bench.TUNNEL_IP}:{up.ports[1]}")
        assert c.proc is not None
        pid = c.proc.pid
        _, header = c.proxy_auth()
        assert header is not None
        mitm_ctx = ssl.create_default_context(cafile=str(c.ca_pem()))
        tunnel_ctx = ssl.create_default_context(cafile=str(upstream_ca))
        mitm = (f"{bench.MITM_HOST}:{up.ports[0]}", bench.MITM_HOST, mitm_ctx, f"{bench.MITM_HOST}:{up.ports[0]}")
        tunnel = (f"{bench.TUNNEL_IP}:{up.ports[1]}", bench.TUNNEL_IP, tunnel_ctx, f"{bench.TUNNEL_IP}:{up.ports[1]}")
        samples: list[tuple[float, float]] = []
        t0 = time.perf_counter()
        rss_start = rss_mib(pid)
        task = asyncio.ensure_future(sampler(pid, args.sample, samples, t0))  # noqa: TID251 (a bench, not cordon)
        rounds: list[tuple[Phase, float]] = []
        try:
            for which, spec in (("mitm", mitm), ("tunnel", tunnel)):
                ph = await phase(which, args.clients, args.requests, c.port, header, *spec)
                rounds.append((ph, rss_mib(pid)))
                print(f"{ph.line()}  rss {rounds[-1][1]:.1f} MiB", flush=True)
            soak_end = time.perf_counter() + args.soak
            i = 0
            while time.perf_counter() < soak_end:
                which, spec = (("mitm", mitm), ("tunnel", tunnel))[i % 2]
                ph = await phase(which, args.clients, args.requests, c.port, header, *spec)
                rounds.append((ph, rss_mib(pid)))
                print(f"{ph.line()}  rss {rounds[-1][1]:.1f} MiB  (soak {time.perf_counter() - t0:.0f} s)", flush=True)
                i += 1
        finally:
            task.cancel()
        report(args, rounds, samples, rss_start, pid, c, time.perf_counter() - t0)
        return 1 if any(ph.errors for ph, _ in rounds) else 0
    finally:
        c.stop()
        up.stop()


def report(args: argparse.Namespace, rounds: list[tuple[Phase, float]], samples: list[tuple[float, float]],
           rss_start: float, pid: int, c: bench.Contender, elapsed: float) -> None:
    total = sum(ph.requests for ph, _ in rounds)
    errors = sum(ph.errors for ph, _ in rounds)
    by = {n: [ph for ph, _ in rounds if ph.name == n] for n in ("mitm", "tunnel")}
    print()
    print(f"cordon load: {args.clients} concurrent keep-alive clients, {args.requests} requests per phase, "
          f"{len(rounds)} phases in {elapsed:.0f} s")
    for n, phs in by.items():
        reqs = sum(p.requests for p in phs)
        secs = sum(p.seconds for p in phs)
        lat = sorted(x for p in phs for x in p.latencies)
        if not lat:
            continue
        print(f"  {n:<7} {reqs} requests, {sum(p.errors for p in phs)} errors, {reqs / secs:.0f} req/s, "
              f"p50 {statistics.median(lat) * 1000:.1f} ms, p99 {lat[int(len(lat) * 0.99)] * 1000:.1f} ms")
    print(f"  total   {total} requests, {errors} errors")
    after = [r for _, r in rounds]
    print(f"  rss     start {rss_start:.1f} MiB (idle), after the first phase {after[0]:.1f} MiB, "
          f"peak {max([r for _, r in samples] or after):.1f} MiB")
    if len(after) >= 8:
        # medians per quarter of the run: robust to the allocator's short-lived bumps; memory that
        # stops growing has flat later quarters
        q = len(after) // 4
        quarters = [after[i * q:(i + 1) * q if i < 3 else len(after)] for i in range(4)]
        meds = [statistics.median(x) for x in quarters]
        print(f"  rss     median per quarter of the phases: {', '.join(f'{m:.1f}' for m in meds)} MiB "
              f"(last quarter vs second: {meds[3] - meds[1]:+.1f} MiB)")
        # the trend over the second half: a least-squares line through (requests so far, rss after
        # the phase); memory that stops growing has a slope near 0 MiB per million requests
        done = [0]
        for ph, _ in rounds:
            done.append(done[-1] + ph.requests)
        half = len(after) // 2
        xs = [d / 1e6 for d in done[1:]][half:]
        ys = after[half:]
        slope = statistics.linear_regression(xs, ys).slope if len(set(xs)) > 1 else 0.0
        print(f"  rss     second half ({len(ys)} phases, {sum(ph.requests for ph, _ in rounds[half:])} requests): "
              f"{min(ys):.1f} to {max(ys):.1f} MiB, trend {slope:+.2f} MiB per million requests")
    else:
        print("  rss     (run a soak, e.g. --soak 180, to see whether it keeps growing)")
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"  machine {os.cpu_count()} CPUs, load average at the end {load}; clients and cordon share them")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--requests", type=int, default=20_000, help="requests per phase")
    ap.add_argument("--soak", type=float, default=180.0, help="seconds of alternating phases after the first two")
    ap.add_argument("--sample", type=float, default=0.5, help="seconds between memory samples")
    args = ap.parse_args()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
