"""The event loop under the proxy: uvloop when it is installed, else asyncio's own.

uvloop is asyncio's loop written in C over libuv: the proxy's hot path spends
less CPU per intercepted request on it (docs/performance.md has the
measurements); everything above the loop is unchanged
(anyio, the asyncio protocols of `fastio`). `CORDON_EVENT_LOOP=asyncio`
forces the standard library's loop, for comparison or if uvloop misbehaves.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

ENV = "CORDON_EVENT_LOOP"


def backend_options(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`anyio.run(..., backend_options=...)` for the proxy's loop."""
    env = os.environ if env is None else env
    if env.get(ENV, "").strip().lower() == "asyncio":
        return {}
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}


def running_loop_name() -> str:
    """"uvloop" or "asyncio": which loop this coroutine runs on (for /health)."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"
