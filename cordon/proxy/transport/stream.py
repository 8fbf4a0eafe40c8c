"""`Stream`: the byte stream the proxy's request/response logic is written against.

`conn`, `forward`, `mitm`, `pool` and `server` use only what is declared here,
so the same logic runs over a TCP connection (`fastio.FastStream`), TLS over
one (`fasttls.TLSConn`), or an in-memory pair in the tests. Errors follow
anyio's byte streams: `anyio.EndOfStream` at EOF, `anyio.BrokenResourceError`
when the peer is gone, `anyio.ClosedResourceError` after our own `aclose`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Stream(Protocol):
    """A bidirectional byte stream with a read deadline."""

    # Loop time (on `clock`) after which a `receive` still waiting raises TimeoutError; None: no limit.
    # One deadline per stream instead of a cancel scope per read: `Conn.read_head` sets it per head.
    deadline: float | None

    @property
    def clock(self) -> Callable[[], float]:
        """The clock `deadline` is measured on (the event loop's)."""
        ...

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """At least one byte, at most `max_bytes`; waits for them."""
        ...

    def receive_nowait(self, max_bytes: int) -> bytes:
        """Bytes that can be handed out without waiting (b"" when none or when the stream keeps
        nothing decoded ahead). A TLS stream returns the whole records already buffered."""
        ...

    async def send(self, item: bytes) -> None:
        ...

    async def send_parts(self, parts: tuple[bytes, ...]) -> None:
        """`send(b"".join(parts))`, without the join where the stream can avoid it."""
        ...

    async def send_eof(self) -> None:
        """Half-close (TCP FIN); NotImplementedError where the stream cannot (TLS)."""
        ...

    async def aclose(self) -> None:
        ...

    def looks_dead(self) -> bool:
        """For an idle connection: anything arrived (EOF, junk) means it is not reusable."""
        ...
