"""Logging for `cordon start`: levels, text or JSON lines on stderr, and a redaction filter.

The proxy never logs a secret, token or credential header; the filter here is
defence in depth: every record's message, structured fields and traceback are
scrubbed of the known secret and token values (and anything that looks like a
Basic/Bearer credential) before a handler formats it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any, TextIO

TRACE = 5
LEVELS = {"trace": TRACE, "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "error": logging.ERROR}
LEVEL_NAMES = {TRACE: "trace", logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn",
               logging.ERROR: "error", logging.CRITICAL: "error"}
REDACTED = "[redacted]"
MIN_SECRET_LEN = 4   # shorter values would blank out ordinary words; config rejects none, doctor warns
_CREDENTIAL_RE = re.compile(r"(?i)\b(basic|bearer)(\s+)[A-Za-z0-9+/=._~-]{8,}")
_HANDLER_NAME = "cordon-start"
_saved: dict[str, tuple[int, int]] = {}     # levels before setup, restored by teardown

logging.addLevelName(TRACE, "TRACE")


class Redactor:
    """Replaces known values in text. `values` is called on every use (tokens rotate)."""

    def __init__(self, values: Callable[[], Iterable[str]]) -> None:
        self._values = values
        self._seen: tuple[str, ...] | None = None
        self._sorted: list[str] = []

    def __call__(self, text: str) -> str:
        return self.bound()(text)

    def bound(self) -> Callable[[str], str]:
        """A redactor over the values as they are now (one record's fields share one look-up)."""
        vals = tuple(self._values())
        if vals != self._seen:   # sorted once per change of the values, not once per string
            self._sorted = sorted({v for v in vals if v and len(v) >= MIN_SECRET_LEN}, key=len, reverse=True)
            self._seen = vals
        longest_first = self._sorted

        def redact(text: str) -> str:
            for v in longest_first:
                if v in text:
                    text = text.replace(v, REDACTED)
            return _CREDENTIAL_RE.sub(_credential, text)

        return redact


def _credential(m: re.Match[str]) -> str:
    return f"{m.group(1)}{m.group(2)}{REDACTED}"


class RedactFilter(logging.Filter):
    """Scrubs a record in place: message (with its args), `cordon` fields, traceback text."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        redact = self.redact.bound()
        try:
            msg = record.getMessage()
        except Exception:   # a bad format string must not hide the record
            msg = f"{record.msg!r} {record.args!r}"
        record.msg = redact(msg)
        record.args = None
        fields = getattr(record, "cordon", None)
        if isinstance(fields, dict):
            record.cordon = {k: redact(v) if isinstance(v, str) else v for k, v in fields.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _ts(record: logging.LogRecord) -> str:
    t = dt.datetime.fromtimestamp(record.created, dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


class TextFormatter(logging.Formatter):
    """`2025-01-01T12:00:00.123Z info  cordon.proxy: route=openai host=... status=200`"""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_ts(record)} {LEVEL_NAMES.get(record.levelno, record.levelname.lower()):<5} " \
               f"{record.name}: {record.getMessage()}"
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, plus the record's `cordon` fields."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {"ts": _ts(record), "level": LEVEL_NAMES.get(record.levelno, "info"),
                               "logger": record.name, "msg": record.getMessage()}
        fields = getattr(record, "cordon", None)
        if isinstance(fields, dict):
            for k, v in fields.items():
                obj.setdefault(str(k), v)
        if record.exc_text:
            obj["exception"] = record.exc_text
        return json.dumps(obj, default=str)


def setup_logging(level: str, fmt: str, stream: TextIO, redactor: Redactor) -> logging.Handler:
    """`cordon.*` loggers at `level`, other libraries' warnings too, all to `stream` in `fmt`,
    all through the redaction filter (asyncio's "exception never retrieved" included).

    Idempotent (an in-process test may start twice): the previous handler is replaced.
    """
    root = logging.getLogger()
    for h in list(root.handlers):
        if h.get_name() == _HANDLER_NAME:
            root.removeHandler(h)
    _saved.setdefault("levels", (root.level, logging.getLogger("cordon").level))
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(RedactFilter(redactor))
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(max(LEVELS[level], logging.WARNING))
    logging.getLogger("cordon").setLevel(LEVELS[level])
    return handler


def teardown_logging(handler: logging.Handler) -> None:
    """Remove the handler; once none of ours is left, restore the levels found before."""
    root = logging.getLogger()
    root.removeHandler(handler)
    handler.close()
    if not any(h.get_name() == _HANDLER_NAME for h in root.handlers) and "levels" in _saved:
        root_level, cordon_level = _saved.pop("levels")
        root.setLevel(root_level)
        logging.getLogger("cordon").setLevel(cordon_level)
