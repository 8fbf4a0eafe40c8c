"""Orchestration: what each command does, as functions that return results.

What lives here: `cordon exec` (`exec`: preflight, session, proxy, child,
teardown), `cordon start` (`start`), the scope a long-lived proxy serves
(`scope`), `status`, project trust (`trust`), shell activation (`activation`),
services (`service`), `setup`/`integration` (`integrations/`), `doctor`
(`doctor/`) and the small HTTP client for a running proxy (`localclient`).

May import: `core`, `store` and `proxy`. Never `cli`: nothing here parses
arguments or prints; progress is reported through callbacks.
"""
