"""`cordon start` follows its cordon.toml: an edit takes effect on the next connection.

`LiveConfig.current()` is called by the proxy for each new connection; it costs one
stat() while the file is unchanged. A changed file that loads replaces the routes
and policy (a new route's secret is resolved on its first request, like any
other); one that does not load keeps the last good configuration running and logs
one error naming the file and line, once per version of the file. `/health`
reports which configuration is live and any edit that failed to load.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from cordon.core.errors import ConfigError, CordonError
from cordon.core.model import Config, Policy, Route

log = logging.getLogger("cordon.start")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


class LiveConfig:
    def __init__(self, config: Config, path: Path, scope: str, cordon_home: Path) -> None:
        self.path = path
        self.scope = scope
        self.cordon_home = cordon_home   # approvals: a project file is used only as the user approved it
        self._awaiting_approval = False
        self._stat = self._stat_of()
        try:
            data = path.read_bytes()
        except OSError:
            data = b""
        self.live_digest = _digest(data)
        self.loaded_at = _now()
        self.routes = len(config.routes)
        self.error: str | None = None        # the edit that failed to load, if the file still holds it
        self._failed_digest: str | None = None

    def _stat_of(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def current(self) -> tuple[tuple[Route, ...], Policy] | None:
        st = self._stat_of()
        if st == self._stat and not self._awaiting_approval:
            return None
        self._stat = st
        try:
            data = self.path.read_bytes()
        except OSError as e:
            self._failed(_digest(b""), f"{self.path}: cannot read: {e.strerror or e}")
            return None
        digest = _digest(data)
        if digest == self.live_digest:
            self.error = self._failed_digest = None    # edited back to what runs
            return None
        from cordon.store.approvals import require_approved
        from cordon.store.config import parse_config
        self._awaiting_approval = False
        try:
            cfg = parse_config(data.decode("utf-8"), self.path, self.scope)
            if cfg.routes and not cfg.tls.enabled:
                raise ConfigError(f"{self.path}: [tls] enabled = false, so cordon cannot intercept its routes")
        except UnicodeDecodeError:
            self._failed(digest, f"{self.path}: not UTF-8 text")
            return None
        except ConfigError as e:
            self._failed(digest, e.message)
            return None
        try:
            # an edit (by an agent, say) that adds or redirects a route waits for `cordon allow`;
            # until then every new connection checks again, so the approval takes effect at once
            require_approved(self.cordon_home, cfg)
        except CordonError as e:
            self._awaiting_approval = True
            self._failed(digest, f"{e.message} ({e.hint})" if e.hint else e.message)
            return None
        self.live_digest, self.loaded_at, self.routes = digest, _now(), len(cfg.routes)
        self.error = self._failed_digest = None
        log.info("reloaded %s (%d route%s); new connections use it", self.path, len(cfg.routes),
                 "" if len(cfg.routes) == 1 else "s")
        return tuple(cfg.routes), cfg.policy

    def _failed(self, digest: str, message: str) -> None:
        if digest != self._failed_digest:
            log.error("%s; the proxy keeps running the configuration loaded at %s", message, self.loaded_at)
        self._failed_digest, self.error = digest, message

    def health(self) -> dict[str, Any]:
        return {"path": str(self.path), "live": self.live_digest, "loaded_at": self.loaded_at,
                "routes": self.routes, "error": self.error}
