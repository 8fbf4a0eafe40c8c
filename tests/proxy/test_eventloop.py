"""Which loop the proxy runs on (cordon/proxy/eventloop.py)."""

from __future__ import annotations

import anyio
import pytest

from cordon.proxy.eventloop import backend_options, running_loop_name


def test_uvloop_is_the_default_when_installed() -> None:
    pytest.importorskip("uvloop")
    assert backend_options({}) == {"use_uvloop": True}
    assert backend_options({"CORDON_EVENT_LOOP": "uvloop"}) == {"use_uvloop": True}


@pytest.mark.parametrize("value", ["asyncio", "ASYNCIO", " asyncio "])
def test_the_standard_loop_can_be_forced(value: str) -> None:
    assert backend_options({"CORDON_EVENT_LOOP": value}) == {}


def test_running_loop_name_reports_the_loop_in_use() -> None:
    pytest.importorskip("uvloop")

    async def name() -> str:
        return running_loop_name()

    assert anyio.run(name, backend_options=backend_options({})) == "uvloop"
    assert anyio.run(name, backend_options=backend_options({"CORDON_EVENT_LOOP": "asyncio"})) == "asyncio"
