"""Approved project configs, as `direnv allow` does it: a fingerprint of what the user approved.

`cordon exec` and `cordon start` use a cordon.toml outside cordon's own config
directory only as the user last approved it (`cordon allow`): a route that is new,
or whose host, secret source, upstream or upstream CA changed, stops them with a
one-line error naming it. cordon's own commands that write a route (`route add|edit`,
`setup`) approve exactly the routes they wrote, never the rest of the file.

Records: `<cordon home>/approved/<sha256(absolute path)>.json`, 0600 in a 0700
directory: the file's path and digest, and per route its `core.approval` fingerprint.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shlex
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cordon.core.approval import OP_PATH_KEY, Fingerprint, changes, fingerprint
from cordon.core.errors import CordonError
from cordon.core.model import Config
from cordon.store.atomic import atomic_write
from cordon.store.paths import ensure_private_dir

DIR_NAME = "approved"


def _record_path(cordon_home: Path, config_path: Path) -> Path:
    key = hashlib.sha256(str(config_path.resolve()).encode()).hexdigest()
    return cordon_home / DIR_NAME / f"{key}.json"


def needs_approval(cordon_home: Path, config: Config) -> bool:
    """A file outside cordon's own config directory (a project file, or --config elsewhere)."""
    if config.path is None or config.scope == "none":
        return False
    home = cordon_home.resolve()
    p = config.path.resolve()
    return p.parent != home and home not in p.parents


def _digest(path: Path | None) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() if path is not None else "missing"
    except OSError:
        return "missing"


def current(config: Config) -> dict[str, Fingerprint]:
    fps = {r.name: fingerprint(r, _digest(r.upstream.ca_file) if r.upstream.ca_file else None)
           for r in config.routes}
    if config.op_path:
        fps[OP_PATH_KEY] = {"path": config.op_path}
    return fps


def load(cordon_home: Path, config_path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(_record_path(cordon_home, config_path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("routes"), dict) else None


def unapproved(cordon_home: Path, config: Config) -> list[str]:
    """What of `config` is not approved (empty when all of it is, or it needs no approval)."""
    if not needs_approval(cordon_home, config):
        return []
    rec = load(cordon_home, config.path)  # type: ignore[arg-type]
    return changes(rec["routes"] if rec else None, config.routes, current(config))


def require_approved(cordon_home: Path, config: Config) -> None:
    """CordonError naming what changed, unless the user approved this file as it is."""
    what = unapproved(cordon_home, config)
    if not what:
        return
    assert config.path is not None
    rec = load(cordon_home, config.path)
    allow_command = "cordon allow"
    if config.scope == "explicit":
        allow_command += f" --config {shlex.quote(str(config.path))}"
    state = "changed since you approved it" if rec else "not approved yet"
    raise CordonError(f"{config.path} is {state}: " + "; ".join(what),
                      f"review it, then run `{allow_command}` to use it as it is")


def approve(cordon_home: Path, config: Config, names: Iterable[str] | None = None) -> list[str]:
    """Approve the routes `names` of `config` as they are now (None: the whole file); returns them.

    Approving some routes leaves the approval of the others as it was.
    """
    assert config.path is not None
    fps = current(config)
    if names is None:
        routes: dict[str, Any] = dict(fps)
        chosen = list(fps)
    else:
        rec = load(cordon_home, config.path)
        routes = dict(rec["routes"]) if rec else {}
        chosen = [n for n in names if n in fps]
        routes.update({n: fps[n] for n in chosen})
    data = {"path": str(config.path.resolve()), "sha256": _digest(config.path),
            "approved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "routes": routes}
    ensure_private_dir(cordon_home / DIR_NAME)
    atomic_write(_record_path(cordon_home, config.path), json.dumps(data, indent=2, sort_keys=True) + "\n",
                 mode=0o600)
    return [n for n in chosen if n != OP_PATH_KEY]


def revoke(cordon_home: Path, config_path: Path) -> bool:
    """Forget the approval; True if there was one."""
    p = _record_path(cordon_home, config_path)
    with contextlib.suppress(FileNotFoundError):
        p.unlink()
        return True
    return False
