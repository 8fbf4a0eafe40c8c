"""The secrets generation file: every secret change replaces it, and running proxies watch it.

Writers (`cordon secret set|delete`, `route remove --delete-secret`) call
`bump_generation`; the proxy is handed the path and only watches it.
"""

from __future__ import annotations

import time
from pathlib import Path

from cordon.store.atomic import atomic_write

GENERATION_FILE = "secrets.gen"


def generation_file(cordon_home: Path) -> Path:
    """`$XDG_CONFIG_HOME/cordon/secrets.gen`: the file every secret change replaces."""
    return cordon_home / GENERATION_FILE


def bump_generation(path: Path) -> None:
    """Tell running proxies that secrets changed (atomic replace: a new inode every time)."""
    atomic_write(path, str(time.time_ns()) + "\n", mode=0o600, durable=False)
