"""Loopback ports for tests that need a number before anything listens on it.

Binding port 0, closing the socket and using the number later races every other
test process on the machine: any listener made meanwhile may be handed the same
port. These keep a socket bound on 127.0.0.1 for as long as the block runs, so
the kernel gives the port to no one else, and never listen on it:

    with refused_port() as port:     # connecting gets ECONNREFUSED, every time
    with reserved_port() as port:    # cordon (SO_REUSEADDR) can still listen here

Linux lets a second socket bind an address a first one holds when both set
SO_REUSEADDR and the first does not listen; a socket without it (another
program, `port_is_free`) still finds the port taken.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 where nothing listens and nothing can start to."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


@contextmanager
def reserved_port() -> Iterator[int]:
    """A port on 127.0.0.1 kept for the caller: only a SO_REUSEADDR listener (cordon's) may take it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])
