"""The run record of a `cordon start` proxy: `<state_dir>/proxy.json`.

Written by `cordon start` (0600, removed when it stops) and read by `wait`,
`env`, `setup`, `status` and `doctor` to find the running proxy:
    {"pid": 1234, "port": 6790, "started_at": "2025-01-01T12:00:00+00:00",
     "version": "0.1.0", "config_path": "/abs/cordon.toml", "scope": "project",
     "state_dir": "/home/u/.config/cordon/projects/app-1a2b3c4d"}
Local files only; no sockets.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

RUN_RECORD = "proxy.json"


@dataclass(frozen=True)
class RunRecord:
    pid: int
    port: int
    started_at: dt.datetime | None
    version: str | None
    config_path: Path | None


def run_record_path(state_dir: Path) -> Path:
    return state_dir / RUN_RECORD


def pid_alive(pid: int) -> bool:
    """True while a process holds `pid` (also someone else's, which we may not signal)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:   # EPERM: the pid exists but belongs to another user
        return True
    return True


def _parse_time(v: object) -> dt.datetime | None:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return dt.datetime.fromtimestamp(float(v), dt.UTC)
    if isinstance(v, str):
        try:
            t = dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            return None
        return t if t.tzinfo else t.replace(tzinfo=dt.UTC)
    return None


def read_run_record(state_dir: Path) -> RunRecord | None:
    """The record as written, whether or not its process still runs (None if absent or garbled)."""
    try:
        data = json.loads(run_record_path(state_dir).read_text(encoding="utf-8"))
        pid, port = data["pid"], data["port"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(pid, int) or not isinstance(port, int) or isinstance(pid, bool) or isinstance(port, bool):
        return None
    cfg, version = data.get("config_path"), data.get("version")
    return RunRecord(pid=pid, port=port, started_at=_parse_time(data.get("started_at")),
                     version=version if isinstance(version, str) else None,
                     config_path=Path(cfg) if isinstance(cfg, str) else None)


def live_run_record(state_dir: Path) -> RunRecord | None:
    """The record if its process is alive; a stale one (crashed proxy) counts as none."""
    rec = read_run_record(state_dir)
    return rec if rec is not None and pid_alive(rec.pid) else None
