"""Counters a running proxy keeps for `/status` (per route, tunnels, refusals).

Plain in-memory numbers updated on the event loop; nothing secret in them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RouteStats:
    requests: int = 0
    errors: int = 0              # answers cordon generated (4xx/5xx) or aborted exchanges
    bytes_up: int = 0            # request body bytes sent upstream
    bytes_down: int = 0          # response body bytes sent to clients


@dataclass
class ProxyStats:
    started: float = field(default_factory=time.time)
    started_monotonic: float = field(default_factory=time.monotonic)
    port: int = 0
    connections: int = 0
    routes: dict[str, RouteStats] = field(default_factory=dict)
    tunnels: int = 0
    tunnel_errors: int = 0
    plain: int = 0               # absolute-form requests for unmatched hosts
    refused: int = 0             # 403/407/421 and friends
    # route hosts whose client refused cordon's certificate (a bounded few: a `*.suffix` route
    # could otherwise be made to count any number of names)
    handshake_failures: dict[str, int] = field(default_factory=dict)

    def handshake_failed(self, host: str) -> None:
        if host in self.handshake_failures or len(self.handshake_failures) < 256:
            self.handshake_failures[host] = self.handshake_failures.get(host, 0) + 1

    def route(self, name: str) -> RouteStats:
        st = self.routes.get(name)
        if st is None:
            st = self.routes[name] = RouteStats()
        return st

    @property
    def uptime(self) -> float:
        return time.monotonic() - self.started_monotonic

    def snapshot(self, *, version: str, route_names: list[str]) -> dict[str, Any]:
        return {
            "status": "ok",
            "version": version,
            "pid": os.getpid(),
            "port": self.port,
            "uptime": round(self.uptime, 3),
            "connections": self.connections,
            "routes": {n: vars(self.route(n)).copy() for n in route_names},
            "tunnels": {"opened": self.tunnels, "errors": self.tunnel_errors},
            "plain": self.plain,
            "refused": self.refused,
        }
