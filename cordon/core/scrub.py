"""Echo scrubbing (pure): every form of a credential cordon sent is replaced in what comes back.

An `EchoScrub` holds (needle, replacement) pairs: the secret and the placeholder,
plus, for `basic` routes, `base64(user:secret)` and `base64(user:placeholder)`.
`Scrubber` streams a body through them; `EchoScrub.scrub` and `.headers` do a
status line's reason phrase and header names and values. The output never holds
a needle, however the body is split: replacement text cannot combine with its
neighbours into a needle (a placeholder that could is swapped for `*`s), and
the text already emitted is never rescanned. Not scrubbed, by design: compressed
bodies, transformed echoes (escaped, re-encoded, reversed) and WebSocket frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Headers = list[tuple[bytes, bytes]]


def _overlaps(a: bytes, b: bytes) -> bool:
    """Whether `a` and `b`, placed at any offset where they share at least one byte, agree there."""
    for k in range(-len(a) + 1, len(b)):
        lo, hi = max(0, k), min(len(b), k + len(a))
        if b[lo:hi] == a[lo - k:hi - k]:
            return True
    return False


@dataclass(frozen=True)
class EchoScrub:
    """The (needle, replacement) pairs of one exchange, longest needle first."""

    pairs: tuple[tuple[bytes, bytes], ...]

    @classmethod
    def of(cls, pairs: Sequence[tuple[bytes, bytes]]) -> EchoScrub:
        needles = [n for n, _ in pairs if n]
        if not needles:
            raise ValueError("nothing to scrub")
        safe: list[tuple[bytes, bytes]] = []
        for needle, repl in pairs:
            if needle and any(_overlaps(n, repl) for n in needles):
                # this replacement next to the text around it could spell a needle again
                repl = _filler(needles) * len(repl)
            if needle and not repl:
                # cutting the needle out would join the text on either side, which may spell it
                repl = _filler(needles)
            if needle:
                safe.append((needle, repl))
        safe.sort(key=lambda p: -len(p[0]))
        return cls(tuple(safe))

    def scrubber(self) -> Scrubber:
        return Scrubber(self)

    def scrub(self, data: bytes) -> bytes:
        if not any(n in data for n, _ in self.pairs):
            return data
        s = Scrubber(self)
        return s.feed(data) + s.flush()

    def headers(self, headers: Sequence[tuple[bytes, bytes]]) -> Headers:
        """Names and values both (an upstream may echo a credential as a field name)."""
        # one search of all the fields at once: a needle in a name or a value is in the joined bytes
        # (one that only spans a separator there sends the fields through the field-by-field pass)
        joined = b"\n".join([part for field in headers for part in field])
        if not any(n in joined for n, _ in self.pairs):
            return list(headers)
        out = []
        for k, v in headers:
            if any(n in k or n in v for n, _ in self.pairs):
                k, v = self.scrub(k), self.scrub(v)
            out.append((k, v))
        return out


def _filler(needles: Sequence[bytes]) -> bytes:
    for c in b"*#x_.0":
        if all(c not in n for n in needles):
            return bytes([c])
    for c in range(256):
        if all(c not in n for n in needles):
            return bytes([c])
    return b""   # every byte value is in some needle: the echo is cut out


class Scrubber:
    """Streams a body, replacing every needle with its replacement.

    Only the longest tail that could begin a needle is held back between chunks
    (never more than the longest needle's length - 1 bytes), so an SSE event that
    ends in "\\n\\n" is passed on at once instead of waiting for the next chunk.
    """

    __slots__ = ("_pairs", "_pending", "hits")

    def __init__(self, scrub: EchoScrub) -> None:
        self._pairs = scrub.pairs
        self._pending = b""
        self.hits = 0

    def feed(self, data: bytes) -> bytes:
        buf = self._pending + data if self._pending else data
        pairs = self._pairs
        out: list[bytes] = []
        i = 0
        if any(n in buf for n, _ in pairs):
            while True:
                best = -1
                hit = (b"", b"")
                for needle, repl in pairs:   # longest first: on a tie the longest needle wins
                    j = buf.find(needle, i)
                    if j >= 0 and (best < 0 or j < best):
                        best, hit = j, (needle, repl)
                if best < 0:
                    break
                out.append(buf[i:best])
                out.append(hit[1])
                self.hits += 1
                i = best + len(hit[0])
        keep = self._tail_len(buf, i)
        end = len(buf) - keep
        out.append(buf[i:end])
        self._pending = buf[end:]
        return b"".join(out) if len(out) > 1 else out[0]

    def _tail_len(self, buf: bytes, floor: int) -> int:
        """Length of the longest suffix of buf[floor:] that is a proper prefix of a needle."""
        n = len(buf)
        best = 0
        for needle, _ in self._pairs:
            first = needle[:1]
            i = buf.find(first, max(floor, n - len(needle) + 1))
            while i >= 0 and n - i > best:
                if needle.startswith(buf[i:]):
                    best = n - i
                    break
                i = buf.find(first, i + 1)
        return best

    def flush(self) -> bytes:
        out, self._pending = self._pending, b""
        return out
