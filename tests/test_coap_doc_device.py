"""A CoAP device written from docs/protocols/coap.md alone opens its lock with confirmation."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Generator
from pathlib import Path

import pytest
from homeassistant import config_entries
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er

from custom_components.iot_bridge.const import DOMAIN

from .coap_peers import HOST, free_udp_port
from .common import wait_for

pytestmark = pytest.mark.usefixtures("socket_enabled")

DEVICE = Path(__file__).parent / "doc_device" / "coap_lock_device.py"

RunDevice = Callable[..., tuple[int, Path]]


@pytest.fixture
def doc_device(tmp_path: Path) -> Generator[RunDevice]:
    """Start the document-only device in its own process; yields (port, log)."""
    processes: list[subprocess.Popen[bytes]] = []

    def run(*extra: str) -> tuple[int, Path]:
        port = free_udp_port()
        log = tmp_path / f"device-{port}.log"
        with log.open("wb") as out:
            processes.append(
                subprocess.Popen(
                    [sys.executable, str(DEVICE), "--port", str(port), *extra],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        deadline = time.monotonic() + 10
        while "listening" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        return port, log

    yield run
    for process in processes:
        process.terminate()
        process.wait(10)


async def _add(hass: HomeAssistant, port: int) -> config_entries.ConfigEntry:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "coap"}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: HOST, CONF_PORT: port}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY, result
    await hass.async_block_till_done()
    return result["result"]


def _entity(hass: HomeAssistant, entry: config_entries.ConfigEntry, domain: str) -> str:
    entries = er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
    return next(
        e.entity_id for e in entries if e.domain == domain and "connectivity" not in e.entity_id
    )


async def test_document_only_device_opens_with_confirmation(
    hass: HomeAssistant, doc_device: RunDevice
) -> None:
    """Added by host; lock.open confirmed by its 2.04; the door follows by Observe."""
    port, log = doc_device()
    entry = await _add(hass, port)
    assert entry.title == "Doc lock"
    assert entry.unique_id == "coap:doc-lock-0001"
    lock, door = _entity(hass, entry, "lock"), _entity(hass, entry, "binary_sensor")
    await wait_for(lambda: (s := hass.states.get(lock)) is not None and s.state == "locked")
    await hass.services.async_call("lock", "open", {"entity_id": lock}, blocking=True)
    assert hass.states.get(lock).state == "open"
    await wait_for(lambda: hass.states.get(door).state == "on", what="the door notification")
    await hass.services.async_call("lock", "lock", {"entity_id": lock}, blocking=True)
    assert hass.states.get(lock).state == "locked"
    lines = log.read_text().splitlines()
    assert [line.split(" id=")[0] for line in lines[1:]] == ["open", "locked"]
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_document_only_device_refusal(hass: HomeAssistant, doc_device: RunDevice) -> None:
    """Its 4.03 and diagnostic payload become the error the user sees."""
    port, _log = doc_device("--blocked")
    entry = await _add(hass, port)
    lock = _entity(hass, entry, "lock")
    await wait_for(lambda: (s := hass.states.get(lock)) is not None and s.state == "locked")
    with pytest.raises(HomeAssistantError, match=r"refused to open Door: door blocked \(4\.03"):
        await hass.services.async_call("lock", "open", {"entity_id": lock}, blocking=True)
    assert hass.states.get(lock).state == "locked"
    assert await hass.config_entries.async_unload(entry.entry_id)
