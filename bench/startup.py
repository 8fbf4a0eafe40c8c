"""Start-up as users feel it: whole `cordon` commands from a non-editable install, median of N.

    python3 bench/startup.py [-n 15] [--repo DIR] [--venv DIR]
    python3 bench/startup.py -n 15 --against DIR      # paired: this tree and DIR's, alternating
    python3 bench/startup.py --secret-service         # the secrets in a Secret Service, not a file

Installs `--repo` (default: this checkout) the way users get it, `pip install .`
(byte-compiled, no editable finder), into `--venv` (default bench/.startup-venv,
created with the dependencies and keyrings.alt on first use; cordon itself is
re-installed on every run), then times, each in a throwaway HOME/XDG:

- `python -c pass` with the same interpreter (the floor every command pays);
- `cordon --version`;
- `cordon exec -- true` with no routes (no cordon.toml, no *_API_KEY variable);
- `cordon exec -- true` with two routes whose secrets are in the keyring
  (keyrings.alt's file backend, so no Secret Service daemon takes part);
- `cordon start` with those two routes: from spawn to its "ready" line on
  stderr, and to the first `GET /health` answered 200 (cpu: the process's own
  user+sys time at that moment, from /proc);
- `cordon start` with a third route, for `localhost`, whose upstream is
  bench/upstream.py (a throwaway CA made with the `openssl` CLI): from spawn
  to the first intercepted `GET /small` answered 200, sent the moment the
  ready line appears (CONNECT, TLS with cordon's leaf, the credential
  injected, TLS to the upstream); cpu as above.

With `--secret-service` the two routes' secrets are kept in gnome-keyring's Secret
Service instead (a private D-Bus session started by the bench, with a throwaway
HOME), as on a desktop: keyring then loads its Secret Service backend and talks
D-Bus before each read.

Wall time is the median over N runs after one warm-up; cpu is the user+sys
time of the process tree (less sensitive to other load on the machine). With
`--against DIR`, DIR's tree is installed into a second virtualenv and the
`cordon exec` and `cordon start` figures are taken in rounds, each round one run
of each tree, so that the ratio of each pair holds while the machine's load
drifts: both medians and the median of the per-round ratios are printed. Not a
test: it asserts nothing and the suite never runs it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import os
import re
import resource
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from routes import route

HERE = Path(__file__).resolve().parent
BACKEND = "keyrings.alt.file.PlaintextKeyring"
SECRET_SERVICE = "keyring.backends.SecretService.Keyring"
# waits until the daemon owns its bus name (a call before that makes D-Bus start a second,
# locked daemon), then stores the two routes' secrets
STORE = """
import sys, time, keyring
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection
conn = open_dbus_connection(sys.argv[1])
deadline = time.monotonic() + 10
while not conn.send_and_get_reply(message_bus.NameHasOwner("org.freedesktop.secrets")).body[0]:
    assert time.monotonic() < deadline, "the Secret Service did not start"
    time.sleep(0.02)
for attempt in range(50):
    try:
        keyring.set_password('cordon', 'openai', 'sk-startup-bench-1')
        keyring.set_password('cordon', 'anthropic', 'sk-ant-startup-bench-2')
        break
    except Exception:
        if attempt == 49:
            raise
        time.sleep(0.1)
"""
ROUTES_TOML = (route("openai", "api.openai.com", keyring="openai")
               + route("anthropic", "api.anthropic.com", keyring="anthropic", header="x-api-key", scheme=None))
TARGETS = {"cordon --version": 40.0, "cordon exec -- true, no routes": 100.0,
           "cordon exec -- true, two keyring routes": 130.0, "cordon start: ready line": 120.0,
           "cordon start: first /health 200": 120.0}


def prepare(venv: Path, repo: Path) -> Path:
    py = venv / "bin" / "python"
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([*pip, str(repo), "keyrings.alt"], check=True)   # the dependencies, once
    subprocess.run([*pip, "--force-reinstall", "--no-deps", str(repo)], check=True)   # this tree's cordon
    return py


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(argv: Sequence[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall ms, cpu ms of the process tree)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {r.returncode}: {r.stderr.decode(errors='replace')[-400:]}")
    return wall * 1000, ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) * 1000


def proc_cpu_ms(pid: int) -> float:
    """user+sys CPU time of a running process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def running_start(cordon: str, cfg: Path, env: dict[str, str], cwd: Path) -> Iterator[tuple[int, float, int, float]]:
    """`cordon start` until its ready line: (pid, perf_counter at spawn, port, at the ready line);
    stopped on leaving."""
    t0 = time.perf_counter()
    p = subprocess.Popen([cordon, "start", "--config", str(cfg), "--log-level", "warn"], env=env, cwd=cwd,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert p.stderr is not None
        line = p.stderr.readline().decode(errors="replace")
        ready = time.perf_counter()
        m = re.search(r"ready on 127\.0\.0\.1:(\d+)", line)
        if not m:
            raise SystemExit(f"cordon start did not report ready: {line!r}{p.stderr.read(400)!r}")
        yield p.pid, t0, int(m.group(1)), ready
    finally:
        p.terminate()
        p.wait(10)


@contextlib.contextmanager
def secret_service(root: Path) -> Iterator[str]:
    """gnome-keyring's Secret Service on a private D-Bus session, its HOME under `root`, unlocked
    with a throwaway password: the session's bus address. Ends with the block."""
    home = root / "keyring-home"
    home.mkdir()
    script = ("printf pw | gnome-keyring-daemon --foreground --unlock --components=secrets >/dev/null 2>&1 & "
              'echo "$DBUS_SESSION_BUS_ADDRESS"; exec cat')
    p = subprocess.Popen(["dbus-run-session", "--", "sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)},
                         start_new_session=True)
    assert p.stdin is not None and p.stdout is not None
    try:
        yield p.stdout.readline().strip()
    finally:
        p.stdin.close()
        p.wait(10)
        p.stdout.close()


def start_until_ready(cordon: str, cfg: Path, env: dict[str, str], cwd: Path) -> tuple[float, float, float]:
    """(ms to the ready line, ms to the first /health 200, cpu ms by then) for one `cordon start`."""
    with running_start(cordon, cfg, env, cwd) as (pid, t0, port, ready):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/health")
        status = conn.getresponse().status
        health = time.perf_counter() - t0
        conn.close()
        if status != 200:
            raise SystemExit(f"/health answered {status}")
        return (ready - t0) * 1000, health * 1000, proc_cpu_ms(pid)


def upstream(d: Path) -> tuple[subprocess.Popen[str], int, Path]:
    """bench/upstream.py with a leaf for localhost from a throwaway CA: (process, port, CA file)."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ca, ca_key, key, csr, leaf = (d / n for n in ("ca.pem", "ca.key", "leaf.key", "leaf.csr", "leaf.pem"))
    ext = d / "leaf.ext"
    ext.write_text("subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(ca_key), "-out", str(ca), "-subj", "/CN=startup bench CA", "-days", "2")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-out", str(leaf), "-days", "2", "-extfile", str(ext))
    p = subprocess.Popen([sys.executable, str(HERE / "upstream.py"), "--cert", str(leaf), "--key", str(key)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    return p, int(p.stdout.readline()), ca


def start_until_intercepted(cordon: str, cfg: Path, env: dict[str, str], cwd: Path, up_port: int,
                            proxy_auth: str, cafile: Path) -> tuple[float, float]:
    """(ms to the first intercepted 200, cpu ms by then) for one `cordon start`."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    with running_start(cordon, cfg, env, cwd) as (pid, t0, port, _):
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
        conn.set_tunnel("localhost", up_port, headers={"Proxy-Authorization": proxy_auth})
        conn.request("GET", "/small")
        r = conn.getresponse()
        r.read()
        done = time.perf_counter() - t0
        conn.close()
        if r.status != 200:
            raise SystemExit(f"the intercepted GET answered {r.status}")
        return done * 1000, proc_cpu_ms(pid)


def proxy_credentials(cordon: str, cfg: Path, env: dict[str, str], cwd: Path) -> tuple[str, Path]:
    """(Proxy-Authorization value, CA bundle) from `cordon env`, asked while a `cordon start` runs."""
    with running_start(cordon, cfg, env, cwd):
        out = subprocess.run([cordon, "env", "--format", "json", "--config", str(cfg)], env=env, cwd=cwd,
                             capture_output=True, text=True, check=True)
    values = json.loads(out.stdout)
    cred = values["HTTPS_PROXY"].split("//", 1)[1].split("@", 1)[0]
    return "Basic " + base64.b64encode(cred.encode()).decode(), Path(values["SSL_CERT_FILE"])


def importtime_until_ready(argv: Sequence[str], env: dict[str, str], cwd: Path) -> str:
    """The -X importtime lines of a `cordon start` up to its ready line; then it is stopped."""
    p = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    assert p.stderr is not None
    lines = []
    try:
        for line in p.stderr:
            if "ready on 127.0.0.1:" in line:
                break
            lines.append(line)
        else:
            raise SystemExit(f"cordon start did not report ready: {''.join(lines[-5:])}")
    finally:
        p.terminate()
        p.wait(10)
        p.stderr.close()
    return "".join(lines)


def import_profile(py: str, argv: Sequence[str], env: dict[str, str], cwd: Path, runs: int = 5,
                   until_ready: bool = False) -> dict[str, float]:
    """Median self time (ms) of `python -X importtime` per top-level package (cordon per layer);
    with `until_ready`, of a `cordon start` up to its ready line."""
    per_run: list[dict[str, float]] = []
    for _ in range(runs):
        if until_ready:
            err = importtime_until_ready([py, "-X", "importtime", *argv], env, cwd)
        else:
            err = subprocess.run([py, "-X", "importtime", *argv], env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True).stderr
        groups: dict[str, float] = {}
        for line in err.splitlines():
            m = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
            if not m:
                continue
            parts = m.group(2).split(".")
            key = ".".join(parts[:2]) if parts[0] == "cordon" else parts[0].lstrip("_")
            groups[key] = groups.get(key, 0.0) + int(m.group(1)) / 1000
        per_run.append(groups)
    keys = set().union(*per_run)
    return {k: statistics.median(g.get(k, 0.0) for g in per_run) for k in keys}


def print_profile(name: str, prof: dict[str, float], top: int = 16) -> None:
    total = sum(prof.values())
    print(f"\n`{name}`: {total:.0f} ms importing (self time, median of 5 runs under -X importtime)\n")
    print("| package | ms | share |")
    print("|---|---|---|")
    for k, v in sorted(prof.items(), key=lambda kv: -kv[1])[:top]:
        print(f"| {k} | {v:.1f} | {v / total:.0%} |")


def print_pairs(rounds: list[tuple[dict[str, float], dict[str, float]]], this: Path, other: Path) -> None:
    load = os.getloadavg()
    print(f"| median of {len(rounds)} rounds | this tree | the other | ratio (median of the rounds' ratios) |")
    print("|---|---|---|---|")
    for key in rounds[0][0]:
        a = statistics.median(r[0][key] for r in rounds)
        b = statistics.median(r[1][key] for r in rounds)
        ratio = statistics.median(r[0][key] / r[1][key] for r in rounds)
        print(f"| {key} | {a:.0f} | {b:.0f} | {ratio:.2f} |")
    print(f"\nPython {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / "
          f"{load[2]:.1f}; this tree {this}, the other {other}")


def median_of(n: int, fn: Callable[[], tuple[float, float]]) -> tuple[float, float]:
    fn()   # warm-up: page cache, the store's CA on the first `cordon start`
    runs = [fn() for _ in range(n)]
    return statistics.median(a for a, _ in runs), statistics.median(b for _, b in runs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=15, help="timed runs per command (default 15)")
    ap.add_argument("--repo", type=Path, default=HERE.parent, help="the cordon tree to install (default: this one)")
    ap.add_argument("--venv", type=Path, default=HERE / ".startup-venv",
                    help="the virtualenv to install it into (default bench/.startup-venv)")
    ap.add_argument("--against", type=Path, help="another cordon tree: paired rounds against it")
    ap.add_argument("--against-venv", type=Path, default=HERE / ".startup-venv-against",
                    help="the virtualenv for --against (default bench/.startup-venv-against)")
    ap.add_argument("--secret-service", action="store_true",
                    help="keep the routes' secrets in gnome-keyring's Secret Service (a private D-Bus session "
                         "started here), as on a desktop, instead of keyrings.alt's file backend")
    ap.add_argument("--profile", action="store_true",
                    help="also print what each cordon command spends importing, by package")
    args = ap.parse_args()
    py = str(prepare(args.venv.resolve(), args.repo.resolve()))
    cordon = str(Path(py).parent / "cordon")
    other = None
    if args.against:
        other = str(prepare(args.against_venv.resolve(), args.against.resolve()).parent / "cordon")
    with tempfile.TemporaryDirectory(prefix="cordon-startup-") as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        bus = stack.enter_context(secret_service(root)) if args.secret_service else None
        home = root / "home"
        (home / ".config").mkdir(parents=True)
        run = root / "run"
        run.mkdir(mode=0o700)
        bare, routed = root / "bare", root / "routed"
        bare.mkdir()
        routed.mkdir()
        cfg = routed / "cordon.toml"
        cfg.write_text(f"listen = {free_port()}\n{ROUTES_TOML}")
        intercept = root / "intercept"
        intercept.mkdir()
        up, up_port, up_ca = upstream(root)
        icfg = intercept / "cordon.toml"
        bench = route("bench", "localhost", env="BENCH_SECRET", upstream=f"127.0.0.1:{up_port}", ca_file=str(up_ca))
        icfg.write_text(f"listen = {free_port()}\n{ROUTES_TOML}{bench}")
        env = {k: v for k, v in os.environ.items()
               if not k.endswith(("_API_KEY", "_TOKEN")) and not k.startswith(("CORDON_", "PYTHON"))
               and k not in ("SSL_CERT_FILE", "VIRTUAL_ENV")}
        env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_DATA_HOME=str(home / ".local/share"),
                   XDG_RUNTIME_DIR=str(run), PYTHON_KEYRING_BACKEND=BACKEND, BENCH_SECRET="sk-startup-bench-3")
        if bus is not None:
            env.update(PYTHON_KEYRING_BACKEND=SECRET_SERVICE, DBUS_SESSION_BUS_ADDRESS=bus)
        subprocess.run([py, "-c", STORE, bus or ""] if bus is not None else
                       [py, "-c", "import keyring; keyring.set_password('cordon', 'openai', 'sk-startup-bench-1'); "
                        "keyring.set_password('cordon', 'anthropic', 'sk-ant-startup-bench-2')"], env=env, check=True)
        # a project file's routes are used only once approved
        for conf in (cfg, icfg):
            subprocess.run([cordon, "allow", "--config", str(conf)], env=env, cwd=conf.parent, check=True,
                           stdout=subprocess.DEVNULL)
        if other is not None:
            try:
                auth, bundle = proxy_credentials(cordon, icfg, env, intercept)   # also creates its CA

                def one(c: str) -> dict[str, float]:
                    ready, health, cpu = start_until_ready(c, cfg, env, routed)
                    iwall, icpu = start_until_intercepted(c, icfg, env, intercept, up_port, auth, bundle)
                    bare_wall, bare_cpu = timed([c, "exec", "--", "true"], env, bare)
                    routed_wall, routed_cpu = timed([c, "exec", "--", "true"], env, routed)
                    return {"cordon exec -- true, no routes: ms": bare_wall,
                            "cordon exec -- true, no routes: cpu ms": bare_cpu,
                            "cordon exec -- true, two keyring routes: ms": routed_wall,
                            "cordon exec -- true, two keyring routes: cpu ms": routed_cpu,
                            "cordon start: ready line ms": ready, "cordon start: first /health 200 ms": health,
                            "cordon start: cpu ms at the first /health 200": cpu,
                            "cordon start: first intercepted 200 ms": iwall,
                            "cordon start: cpu ms at the first intercepted 200": icpu}
                one(cordon), one(other)   # warm-up
                rounds = [(one(cordon), one(other)) for _ in range(args.n)]
            finally:
                up.terminate()
                up.wait(10)
            print_pairs(rounds, args.repo.resolve(), args.against.resolve())
            return 0
        rows: list[tuple[str, float, float | None]] = []
        wall, cpu = median_of(args.n, lambda: timed([py, "-c", "pass"], env, bare))
        rows.append(("python -c pass", wall, cpu))
        wall, cpu = median_of(args.n, lambda: timed([cordon, "--version"], env, bare))
        rows.append(("cordon --version", wall, cpu))
        wall, cpu = median_of(args.n, lambda: timed([cordon, "exec", "--", "true"], env, bare))
        rows.append(("cordon exec -- true, no routes", wall, cpu))
        wall, cpu = median_of(args.n, lambda: timed([cordon, "exec", "--", "true"], env, routed))
        rows.append(("cordon exec -- true, two keyring routes", wall, cpu))
        start_until_ready(cordon, cfg, env, routed)   # warm-up: creates the store's CA
        starts = [start_until_ready(cordon, cfg, env, routed) for _ in range(args.n)]
        rows.append(("cordon start: ready line", statistics.median(s[0] for s in starts), None))
        rows.append(("cordon start: first /health 200", statistics.median(s[1] for s in starts),
                     statistics.median(s[2] for s in starts)))
        try:
            auth, bundle = proxy_credentials(cordon, icfg, env, intercept)   # also creates its CA
            wall, cpu = median_of(args.n, lambda: start_until_intercepted(cordon, icfg, env, intercept, up_port,
                                                                          auth, bundle))
            rows.append(("cordon start: first intercepted 200", wall, cpu))
        finally:
            up.terminate()
            up.wait(10)
        profiles = []
        if args.profile:
            profiles = [("cordon --version", import_profile(py, [cordon, "--version"], env, bare)),
                        ("cordon exec -- true, no routes",
                         import_profile(py, [cordon, "exec", "--", "true"], env, bare)),
                        ("cordon exec -- true, two keyring routes",
                         import_profile(py, [cordon, "exec", "--", "true"], env, routed)),
                        ("cordon start, two keyring routes, to its ready line",
                         import_profile(py, [cordon, "start", "--config", str(cfg), "--log-level", "warn"], env,
                                        routed, until_ready=True))]
    load = os.getloadavg()
    print(f"| command | wall ms (median of {args.n}) | cpu ms | target |")
    print("|---|---|---|---|")
    for name, w, c in rows:
        target = TARGETS.get(name)
        print(f"| `{name}` | {w:.0f} | {'' if c is None else f'{c:.0f}'} | "
              f"{'' if target is None else f'≤ {target:.0f}'} |")
    for name, prof in profiles:
        print_profile(name, prof)
    print(f"\nPython {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / "
          f"{load[2]:.1f}; cordon from {args.repo.resolve()} installed non-editable in {args.venv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
