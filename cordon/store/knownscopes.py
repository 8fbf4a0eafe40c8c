"""Which cordon.toml files this user has: so that a shared keyring entry is not deleted blindly.

Each project's state directory (`projects/<ns>/`) keeps the path of its config in
`config-path` once a command has edited it; the user scope's file is known by
its place. `keyring_users()` lists the routes of those files that read a given
keyring entry. Reads config files; writes only the one-line `config-path`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cordon.core.errors import CordonError
from cordon.core.model import SecretSpec
from cordon.store.paths import Paths

MARKER = "config-path"


@dataclass(frozen=True)
class KeyringUser:
    config_path: Path
    route: str


def remember(paths: Paths, config_path: Path) -> None:
    """Note `config_path` in its scope's state directory (best effort: never fails a command)."""
    from cordon.store.atomic import atomic_write
    from cordon.store.paths import ensure_private_dir
    try:
        real = config_path.resolve()
        if real == paths.user_config.resolve():
            return
        d = ensure_private_dir(paths.state_dir("project", real.parent))
        line = str(real) + "\n"
        try:
            if (d / MARKER).read_text(encoding="utf-8") == line:
                return   # already known: a command that changes nothing writes nothing
        except (OSError, UnicodeDecodeError):
            pass
        atomic_write(d / MARKER, line, mode=0o600)
    except OSError:
        pass


def known_configs(paths: Paths) -> Iterator[Path]:
    """The user config (if any) and every remembered project config that still exists."""
    if paths.user_config.is_file():
        yield paths.user_config.resolve()
    root = paths.cordon_home / "projects"
    try:
        dirs = sorted(root.iterdir())
    except OSError:
        return
    for d in dirs:
        try:
            p = Path((d / MARKER).read_text(encoding="utf-8").strip())
        except (OSError, UnicodeDecodeError):
            continue
        if p.is_file():
            yield p


def keyring_users(paths: Paths, spec: SecretSpec, *, besides: Path) -> list[KeyringUser]:
    """Routes in other known config files that read the keyring entry of `spec`."""
    from cordon.store.config import load_config
    out: list[KeyringUser] = []
    skip = besides.resolve()
    for cfg_path in known_configs(paths):
        if cfg_path == skip:
            continue
        try:
            cfg = load_config(cfg_path)
        except CordonError:
            continue
        for r in cfg.routes:
            s = r.auth.secret
            if s.source == "keyring" and (s.service, s.account) == (spec.service, spec.account):
                out.append(KeyringUser(cfg_path, r.name))
    return out
