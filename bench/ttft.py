"""Time to first token: what a streamed model answer (SSE) loses through cordon.

    bench/.venv/bin/python bench/ttft.py [--rounds 5] [--requests 40] [--events 20] [--interval 0.01] [--against TREE]

An HTTPS upstream (this file with `--serve`, its own process) answers every
request with an SSE stream, chunked, as model APIs do: the response head and
the first event at once, then `--events` more, one every `--interval`
seconds. Each event carries the upstream's send time (CLOCK_MONOTONIC, shared
by all processes of the machine). A client (in this process, one TLS
connection kept alive per round, TCP_NODELAY) measures, per request:

  - first byte: from writing the request to the first byte of the response
    (direct, the head and the first event arrive together);
  - first event: from the upstream's write of the head and the first event to
    the event's arrival here (what an agent shows first);
  - each later event: from the upstream's write to the event's arrival here.

Direct (the client to the upstream) and cordon (`cordon start`, a route for
the upstream's host: CONNECT, TLS to cordon's leaf, the credential injected,
the response relayed with echo scrubbing, TLS to the upstream) are measured
in alternating rounds, with two relays of bench/relays.py that do strictly
less than cordon (`tls-uvloop` and `tls-threads`: CONNECT, TLS in, TLS out,
the plaintext copied both ways, nothing else; `--no-relays` leaves them out);
the figures are p50/p99 of every sample of a kind, and what each adds at each
percentile over direct. `--against TREE` adds cordon from another source tree (a
git worktree of another commit), measured in the same rounds. Not a test: it
asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

EVENT = re.compile(rb"data: t=(\d+);i=(\d+)\n\n")


# --- the upstream (its own process) ----------------------------------------------------------

async def serve(cert: str, key: str, events: int, interval: float) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])

    def event(i: int) -> bytes:
        data = b"data: t=%d;i=%d\n\n" % (time.monotonic_ns(), i)
        data = b": " + b"x" * 60 + b"\n" + data        # an event of a model API's size (~100 bytes)
        return b"%x\r\n%s\r\n" % (len(data), data)

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        sock = w.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                await r.readuntil(b"\r\n\r\n")
                w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n" + event(0))
                for i in range(1, events + 1):
                    await asyncio.sleep(interval)
                    w.write(event(i))
                w.write(b"0\r\n\r\n")
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    print(server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not os.read(sys.stdin.fileno(), 1) else None)
    await stop.wait()
    server.close()


# --- the client --------------------------------------------------------------------------------

class Client:
    """One keep-alive TLS connection, direct or through a proxy's CONNECT."""

    def __init__(self, port: int, ca: Path, proxy: tuple[int, str] | None) -> None:
        ctx = ssl.create_default_context(cafile=str(ca))
        if proxy is None:
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        else:
            raw = socket.create_connection(("127.0.0.1", proxy[0]), timeout=10)
            raw.sendall(f"CONNECT localhost:{port} HTTP/1.1\r\nHost: localhost:{port}\r\n"
                        f"Proxy-Authorization: {proxy[1]}\r\n\r\n".encode())
            got = b""
            while b"\r\n\r\n" not in got:
                got += raw.recv(4096)
            if not got.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"CONNECT refused: {got[:80]!r}")
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.s = ctx.wrap_socket(raw, server_hostname="localhost")
        self.req = (f"POST /v1/responses HTTP/1.1\r\nHost: localhost:{port}\r\nAccept: text/event-stream\r\n"
                    "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}").encode()

    def one(self, first: list[float], events: list[float], first_event: list[float] | None = None) -> None:
        t0 = time.monotonic_ns()
        self.s.sendall(self.req)
        buf = b""
        got_first = False
        while not buf.endswith(b"0\r\n\r\n"):
            data = self.s.recv(65536)
            now = time.monotonic_ns()
            if not data:
                raise SystemExit("the connection closed mid-stream")
            if not got_first:
                first.append((now - t0) / 1e6)
                got_first = True
            start = max(0, len(buf) - 64)
            buf += data
            for m in EVENT.finditer(buf, start):
                if m.end() > len(buf) - len(data):
                    latency = (now - int(m.group(1))) / 1e6
                    if m.group(2) == b"0":
                        if first_event is not None:
                            first_event.append(latency)
                    else:
                        events.append(latency)
        if b"Authorization" in buf:
            raise SystemExit("unexpected echo")

    def close(self) -> None:
        self.s.close()


def pct(v: list[float], q: float) -> float:
    s = sorted(v)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=40, help="streamed answers per round and contender")
    ap.add_argument("--events", type=int, default=20, help="events after the first, per answer")
    ap.add_argument("--interval", type=float, default=0.01, help="seconds between events")
    ap.add_argument("--no-relays", action="store_true", help="direct and cordon only")
    ap.add_argument("--against", type=Path, metavar="TREE",
                    help="also cordon from another source tree (a checkout of another version), side by side")
    args = ap.parse_args()
    if args.serve:
        asyncio.run(serve(args.cert, args.key, args.events, args.interval))
        return 0

    import subprocess

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import run as R

    with tempfile.TemporaryDirectory(prefix="cordon-ttft-") as tmp:
        wd = Path(tmp)
        upstream_ca, leaf, key = R.make_pki(wd)
        up = subprocess.Popen([sys.executable, __file__, "--serve", "--cert", str(leaf), "--key", str(key),
                               "--events", str(args.events), "--interval", str(args.interval)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert up.stdout is not None
        port = int(up.stdout.readline())

        class _Up:   # what run.cordon() needs of an upstream: the MITM target's port
            ports = [port, port]

        c = R.cordon(wd, _Up(), upstream_ca)   # type: ignore[arg-type]
        other = (R.cordon(wd, _Up(), upstream_ca, repo=args.against.resolve(),  # type: ignore[arg-type]
                          name=f"cordon {args.against.name}") if args.against else None)
        relays: list[tuple[str, subprocess.Popen[str], int]] = []
        try:
            for mode in () if args.no_relays else ("tls-uvloop", "tls-threads"):
                rp = subprocess.Popen([sys.executable, str(R.HERE / "relays.py"), mode, "--cert", str(leaf),
                                       "--key", str(key), "--ca", str(upstream_ca), "--upstream-port", str(port)],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                assert rp.stdout is not None
                relays.append((f"relay: {mode}", rp, int(rp.stdout.readline())))
            c.start(wd, f"localhost:{port}")   # a route: CONNECT answers 200
            _, header = c.proxy_auth()
            assert header is not None
            cordon_ca = R.bundle(wd / "cordon-ca.pem", c.ca_file())
            kinds = {"direct": (upstream_ca, None), "cordon": (cordon_ca, (c.port, header))}
            if other is not None:
                other.start(wd, f"localhost:{port}")
                _, oheader = other.proxy_auth()
                assert oheader is not None
                kinds[other.name] = (R.bundle(wd / "other-ca.pem", other.ca_file()), (other.port, oheader))
            for name, _, rport in relays:
                kinds[name] = (upstream_ca, (rport, "none"))
            first: dict[str, list[float]] = {k: [] for k in kinds}
            events: dict[str, list[float]] = {k: [] for k in kinds}
            first_ev: dict[str, list[float]] = {k: [] for k in kinds}
            for ca, px in kinds.values():   # warm-up: leaf certificate, pooled upstream
                cl = Client(port, ca, px)
                cl.one([], [])
                cl.close()
            t_start = time.perf_counter()
            for i in range(args.rounds):
                order = list(kinds.items())
                if i % 2:
                    order.reverse()
                for name, (ca, px) in order:
                    cl = Client(port, ca, px)
                    for _ in range(args.requests):
                        cl.one(first[name], events[name], first_ev[name])
                    cl.close()
            elapsed = time.perf_counter() - t_start
        finally:
            c.stop()
            if other is not None:
                other.stop()
            for _, rp, _ in relays:
                R.stop_process(rp)
            R.stop_process(up)
    print("| ms | p50 | added p50 | p99 | added p99 |")
    print("|---|---|---|---|---|")
    for label, d in (("first byte", first), ("first event", first_ev), ("each later event", events)):
        a = d["direct"]
        for name, b in d.items():
            if name == "direct":
                print(f"| {label}: direct | {pct(a, .5):.3f} | | {pct(a, .99):.3f} | |")
                continue
            print(f"| {label}: {name} | {pct(b, .5):.3f} | {pct(b, .5) - pct(a, .5):+.3f} | "
                  f"{pct(b, .99):.3f} | {pct(b, .99) - pct(a, .99):+.3f} |")
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    n = len(events["cordon"])
    print(f"\n{args.rounds} alternating rounds of {args.requests} answers each ({args.events} events after the "
          f"first, every {args.interval * 1000:g} ms); {n} event samples per column, medians of all "
          f"{statistics.median([len(first['direct']), len(first['cordon'])]):.0f} first bytes; "
          f"ran {elapsed:.0f} s; load average at the end {load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
