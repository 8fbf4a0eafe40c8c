"""The child's side of tests/security/test_confinement.py: every way it knows to get the key.

Run under `cordon exec` as `python confinement_attack.py SPEC_JSON`. SPEC names what
an attacker could learn without the key (the keyring's bus address, the accounts,
the secret file's path, the route hosts) and a regular expression every real secret
matches (the secrets themselves are never in this process's argv or files, or the
/proc scan would find them in itself). Prints one JSON object: per attempt, the
secrets it found; plus the HTTP statuses of requests made through the proxy.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

MEM_CAP = 256 << 20          # bytes read from one process's memory at most


def found(text: str | bytes, pattern: re.Pattern[str]) -> set[str]:
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    return set(pattern.findall(text))


def keyring_api(spec: dict[str, Any], pattern: re.Pattern[str]) -> set[str]:
    out: set[str] = set()
    # as the child got it, then with the bus address put back (an attacker can read it in /proc/net/unix)
    for bus in (os.environ.get("DBUS_SESSION_BUS_ADDRESS"), spec.get("bus")):
        if bus:
            os.environ["DBUS_SESSION_BUS_ADDRESS"] = bus
        code = ("import keyring,sys\n"
                "for a in sys.argv[1:]:\n"
                "    try: print(keyring.get_password('cordon', a))\n"
                "    except Exception as e: print(type(e).__name__)\n")
        r = subprocess.run([sys.executable, "-c", code, *spec["accounts"]], capture_output=True, timeout=30)
        out |= found(r.stdout, pattern)
    return out


def secret_service_tools(spec: dict[str, Any], pattern: re.Pattern[str]) -> tuple[set[str], bool]:
    """secret-tool's lookup for each account, and whether gdbus reached org.freedesktop.secrets."""
    env = dict(os.environ)
    if spec.get("bus"):
        env["DBUS_SESSION_BUS_ADDRESS"] = spec["bus"]
    out: set[str] = set()
    for account in spec["accounts"]:
        try:
            r = subprocess.run(["secret-tool", "lookup", "service", "cordon", "username", account],
                               capture_output=True, env=env, timeout=30)
            out |= found(r.stdout, pattern)
        except (OSError, subprocess.TimeoutExpired):
            pass
    try:
        r = subprocess.run(["gdbus", "call", "--session", "--dest", "org.freedesktop.secrets",
                            "--object-path", "/org/freedesktop/secrets", "--method",
                            "org.freedesktop.DBus.Properties.Get", "org.freedesktop.Secret.Service",
                            "Collections"], capture_output=True, env=env, timeout=30)
        reached = r.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        reached = False
    return out, reached


def files(spec: dict[str, Any], pattern: re.Pattern[str]) -> set[str]:
    out: set[str] = set()
    targets = [spec["secret_file"], *spec.get("more_files", [])]
    for root in spec["walk"]:
        for d, _, names in os.walk(root):
            targets.extend(os.path.join(d, n) for n in names)
    for t in targets:
        try:
            with open(t, "rb") as f:
                out |= found(f.read(1 << 20), pattern)
        except OSError:
            pass
    return out


def proc(pattern: re.Pattern[str], scope: str) -> set[str]:
    """Every process /proc shows ("all"), or only the parent (unconfined, where "all" is the whole machine)."""
    out: set[str] = set()
    me = str(os.getpid())
    pids = os.listdir("/proc") if scope == "all" else [str(os.getppid())]
    for pid in pids:
        if not pid.isdigit() or pid == me:
            continue
        for name in ("environ", "cmdline"):
            try:
                with open(f"/proc/{pid}/{name}", "rb") as f:
                    out |= found(f.read(), pattern)
            except OSError:
                pass
        out |= memory(pid, pattern)
    return out


def memory(pid: str, pattern: re.Pattern[str]) -> set[str]:
    out: set[str] = set()
    try:
        with open(f"/proc/{pid}/maps") as m:
            regions = [line.split()[:2] for line in m]
        mem = open(f"/proc/{pid}/mem", "rb", buffering=0)  # noqa: SIM115 (closed by the `with` below)
    except OSError:
        return out
    budget = MEM_CAP
    with mem:
        for span, perms in regions:
            if not perms.startswith("r") or budget <= 0:
                continue
            lo, hi = (int(x, 16) for x in span.split("-"))
            size = min(hi - lo, budget)
            try:
                mem.seek(lo)
                out |= found(mem.read(size), pattern)
            except (OSError, OverflowError, ValueError):
                continue
            budget -= size
    return out


def op_read(pattern: re.Pattern[str]) -> set[str]:
    try:
        r = subprocess.run(["op", "read", "--no-newline", "op://vault/item/field"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return found(r.stdout, pattern)


def through_proxy(hosts: list[str]) -> dict[str, str]:
    out = {}
    for host in hosts:
        r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", f"https://{host}/json"],
                           capture_output=True, text=True, timeout=60)
        out[host] = r.stdout.strip() or r.stderr.strip()[-200:]
    return out


def main() -> None:
    spec = json.loads(sys.argv[1])
    pattern = re.compile(spec["pattern"])
    tools, reached = secret_service_tools(spec, pattern)
    report = {
        "keyring_api": sorted(keyring_api(spec, pattern)),
        "secret_tool": sorted(tools),
        "gdbus_reached": reached,
        "files": sorted(files(spec, pattern)),
        "proc": sorted(proc(pattern, spec.get("proc_scope", "all"))),
        "op": sorted(op_read(pattern)),
        "proxy": through_proxy(spec["hosts"]),
        "uid": os.getuid(),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
