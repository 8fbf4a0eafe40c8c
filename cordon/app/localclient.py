"""Blocking loopback queries of a running cordon proxy: `/health`, `/status`, is a port taken.

For `cordon status` and `cordon doctor` (synchronous commands): plain sockets
to 127.0.0.1 with short timeouts, JSON answers parsed defensively. Never sends
anything off the machine; the token only goes to the loopback proxy.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import socket
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Answer:
    status: int                  # HTTP status; 0 when nothing answered
    body: dict[str, Any] | None  # the JSON object, if the body was one
    error: str | None = None     # why nothing (usable) answered


def get_json(port: int, path: str, *, token: str | None = None, timeout: float = 2.0) -> Answer:
    """GET http://127.0.0.1:<port><path> (origin-form, addressed to the proxy itself)."""
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"   # what the proxy's /status takes
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        raw = resp.read(1 << 20)
    except ConnectionRefusedError:
        return Answer(0, None, f"nothing listens on 127.0.0.1:{port}")
    except (OSError, http.client.HTTPException) as e:
        return Answer(0, None, f"127.0.0.1:{port} did not answer ({type(e).__name__}: {e})")
    finally:
        conn.close()
    try:
        body = json.loads(raw)
    except ValueError:
        return Answer(resp.status, None, f"127.0.0.1:{port}{path} did not answer with JSON")
    return Answer(resp.status, body if isinstance(body, dict) else None)


def port_is_free(port: int) -> bool:
    """True if 127.0.0.1:<port> can be bound right now (nothing listens there)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        # no SO_REUSEADDR: a listener on the port must make this fail
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True
