"""The proxy's byte streams: lean TCP (`fastio`) and TLS over it (`fasttls`).

Hand-written because anyio's socket and TLS streams cost several event-loop
trips per request on the hot path (docs/performance.md has the figures).

May import: `core` and the parent `proxy` package's own protocols; never `store`, `app` or `cli`.
"""
