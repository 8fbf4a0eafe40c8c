"""The few error types cordon raises, written for users.

Every error carries a one-line message (what and where) and a hint (the fix).
Only the CLI prints them; nothing here does I/O.
"""

from __future__ import annotations


class CordonError(Exception):
    """A failure the user can act on: message says what, hint says the fix."""

    exit_status = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(CordonError):
    """Wrong command-line use (exit status 2)."""

    exit_status = 2


class ConfigError(CordonError):
    """cordon.toml (or another cordon file) is missing, malformed or invalid."""


class SecretError(CordonError):
    """A route's secret could not be resolved. Never carries the value."""


class UpstreamError(CordonError):
    """The upstream could not be reached or failed its TLS check."""


class ProtocolError(CordonError):
    """A client spoke HTTP cordon will not accept; `status` is the answer to send."""

    def __init__(self, message: str, status: int = 400, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.status = status
