"""The proxy's byte streams: the `Stream` protocol (`stream`), lean TCP (`fastio`) and TLS (`fasttls`).

The rest of `proxy` is written against `stream.Stream` only.

Hand-written because anyio's socket and TLS streams cost several event-loop
trips per request on the hot path (docs/performance.md has the figures).

May import: `core` and the parent `proxy` package's own protocols; never `store`, `app` or `cli`.
"""
