"""The start command's logging: levels, text/JSON lines and the redaction filter."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator

import pytest

from cordon.cli.logsetup import REDACTED, TRACE, Redactor, setup_logging, teardown_logging

SECRET = "sk-live-very-secret-0042"


@pytest.fixture
def known() -> list[str]:
    return [SECRET]


@pytest.fixture
def text_log(known: list[str]) -> Iterator[io.StringIO]:
    out = io.StringIO()
    h = setup_logging("trace", "text", out, Redactor(lambda: known))
    try:
        yield out
    finally:
        teardown_logging(h)


def test_message_args_and_traceback_are_redacted(text_log: io.StringIO) -> None:
    log = logging.getLogger("cordon.proxy")
    log.info("sending header %s", f"Authorization: Bearer {SECRET}")
    log.log(TRACE, "raw value %r", SECRET)
    try:
        raise ValueError(f"bad key {SECRET}")
    except ValueError:
        log.exception("failed")
    out = text_log.getvalue()
    assert SECRET not in out
    assert out.count(REDACTED) >= 3
    assert "Traceback" in out and "ValueError: bad key" in out
    assert " trace cordon.proxy: raw value" in out


def test_values_are_read_live(text_log: io.StringIO, known: list[str]) -> None:
    log = logging.getLogger("cordon.proxy")
    rotated = "tok_rotated_ABCDEFG"
    log.warning("before %s", rotated)
    known.append(rotated)
    log.warning("after %s", rotated)
    lines = text_log.getvalue().splitlines()
    assert rotated in lines[0] and rotated not in lines[1]


def test_credential_shapes_are_redacted_without_knowing_them(text_log: io.StringIO) -> None:
    unknown = base64.b64encode(b"cordon:some-unknown-token-value").decode()
    logging.getLogger("cordon.proxy").warning("Proxy-Authorization: Basic %s / bearer abcdefghijkl", unknown)
    out = text_log.getvalue()
    assert unknown not in out and "abcdefghijkl" not in out
    assert f"Basic {REDACTED}" in out and f"bearer {REDACTED}" in out


def test_other_libraries_warnings_go_through_the_filter(text_log: io.StringIO) -> None:
    logging.getLogger("asyncio").error("Task exception was never retrieved: %s", SECRET)
    logging.getLogger("asyncio").debug("noise")
    out = text_log.getvalue()
    assert "asyncio" in out and SECRET not in out and "noise" not in out


def test_levels(known: list[str]) -> None:
    out = io.StringIO()
    h = setup_logging("warn", "text", out, Redactor(lambda: known))
    try:
        log = logging.getLogger("cordon.proxy")
        log.info("hidden")
        log.warning("shown")
        log.error("also shown")
    finally:
        teardown_logging(h)
    text = out.getvalue()
    assert "hidden" not in text and " warn  cordon.proxy: shown" in text and " error cordon.proxy: also" in text


def test_json_lines_with_fields(known: list[str]) -> None:
    out = io.StringIO()
    h = setup_logging("info", "json", out, Redactor(lambda: known))
    try:
        logging.getLogger("cordon.proxy").info("route=%s status=%d", "openai", 200,
                                               extra={"cordon": {"route": "openai", "status": 200,
                                                                 "note": f"key {SECRET}"}})
    finally:
        teardown_logging(h)
    obj = json.loads(out.getvalue())
    assert obj["msg"] == "route=openai status=200"
    assert obj["level"] == "info" and obj["logger"] == "cordon.proxy" and obj["ts"].endswith("Z")
    assert obj["route"] == "openai" and obj["status"] == 200
    assert SECRET not in out.getvalue() and obj["note"] == f"key {REDACTED}"


def test_setup_twice_keeps_one_handler(known: list[str]) -> None:
    a, b = io.StringIO(), io.StringIO()
    h1 = setup_logging("info", "text", a, Redactor(lambda: known))
    h2 = setup_logging("info", "text", b, Redactor(lambda: known))
    try:
        logging.getLogger("cordon.x").info("once")
    finally:
        teardown_logging(h2)
        teardown_logging(h1)
    assert a.getvalue() == "" and b.getvalue().count("once") == 1


def test_short_values_are_not_blanked() -> None:
    r = Redactor(lambda: ["ab", "", SECRET])
    assert r("abc about ab") == "abc about ab"
    assert r(f"x{SECRET}y") == f"x{REDACTED}y"
