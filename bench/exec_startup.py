"""Start-up cost of `cordon exec`: `cordon exec -- true` against `true`, median of N runs.

    python bench/exec_startup.py [-n 30]

Runs this checkout's cordon with the current interpreter (no shim on PATH), in a
throwaway HOME/XDG, once with no routes (tunnel only) and once with one route
whose secret comes from the environment (zero-config, as `OPENAI_API_KEY=... cordon
exec -- codex` does). Reports medians and the overhead over plain `true`; the
issue's target is a median overhead of at most 150 ms. Not a test: the suite
never asserts timings.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def timed(argv: list[str], env: dict[str, str], cwd: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process tree)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dt = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{argv} exited {r.returncode}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return dt, cpu


def median_ms(argv: list[str], env: dict[str, str], cwd: str, n: int) -> tuple[float, float]:
    timed(argv, env, cwd)  # warm the page cache
    runs = [timed(argv, env, cwd) for _ in range(n)]
    return (statistics.median(w for w, _ in runs) * 1000, statistics.median(c for _, c in runs) * 1000)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=30, help="runs per command (default 30)")
    args = ap.parse_args()
    true = shutil.which("true") or "/bin/true"
    # an installed cordon is byte-compiled (pip does it); a checkout run with
    # PYTHONDONTWRITEBYTECODE=1 would otherwise recompile every module on every run
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "cordon")], check=True)
    with tempfile.TemporaryDirectory(prefix="cordon-bench-") as tmp:
        home = Path(tmp) / "home"
        (home / ".config").mkdir(parents=True)
        run = Path(tmp) / "run"
        run.mkdir(mode=0o700)
        proj = Path(tmp) / "proj"
        proj.mkdir()
        base = {k: v for k, v in os.environ.items()
                if not k.endswith(("_API_KEY", "_TOKEN"))
                and k not in ("CORDON_SESSION", "SSL_CERT_FILE", "PYTHONDONTWRITEBYTECODE")}
        base.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_RUNTIME_DIR=str(run),
                    PYTHONPATH=str(REPO))
        # what the installed `cordon` console script runs (no runpy, no PATH shim)
        script = "import sys; from cordon.cli.main import entry; sys.argv[0] = 'cordon'; entry()"
        cordon = [sys.executable, "-c", script, "exec", "--", true]
        baseline = median_ms([true], base, str(proj), args.n)
        no_routes = median_ms(cordon, base, str(proj), args.n)
        one_route = median_ms(cordon, {**base, "OPENAI_API_KEY": "sk-bench-not-a-real-key"}, str(proj), args.n)
        # the same unconfined: what the sandbox (docs/confinement.md) costs
        off = [*cordon[:3], "exec", "--sandbox", "off", "--", true]
        unconfined = median_ms(off, {**base, "OPENAI_API_KEY": "sk-bench-not-a-real-key"}, str(proj), args.n)
    load = os.getloadavg()[0]
    print(f"runs per command: {args.n} (medians)  python {sys.version.split()[0]}  cpus {os.cpu_count()}  "
          f"load average {load:.2f}")
    print(f"{'command':36s} {'wall':>9s} {'overhead':>9s} {'cpu':>9s}")
    for name, (wall, cpu) in (("true", baseline), ("cordon exec -- true (no routes)", no_routes),
                              ("cordon exec -- true (1 route, env)", one_route),
                              ("  the same, --sandbox off", unconfined)):
        print(f"{name:36s} {wall:7.1f}ms {wall - baseline[0]:7.1f}ms {cpu:7.1f}ms")
    print("target: median wall overhead <= 150 ms; cpu = user+sys time of the whole process tree, "
          "which other load on the machine inflates less than wall time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
