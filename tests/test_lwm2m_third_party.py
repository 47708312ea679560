"""A third-party LwM2M client in Home Assistant: Telefonica's lwm2m-node-lib (npm).

tests/third_party/lwm2m_node_client.js drives the library's client: a Device object, an
IPSO temperature and a vendor object IoT Bridge has no definition for. scripts/setup
installs the pinned package into .cache/npm when Node.js is present. Without Node.js the
test is skipped (the newest leg deselects it by its marker); with Node.js and without the
package it fails, so a machine that can run it never silently does not.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er

from custom_components.iot_bridge.const import DOMAIN

from .common import registry_device, setup_entry, wait_for
from .test_lwm2m_hub import ENTRY_ID, _free_udp_port, _state, lwm2m_entry

pytestmark = [pytest.mark.usefixtures("socket_enabled"), pytest.mark.third_party_node]

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / ".cache" / "npm" / "node_modules"
PACKAGE = NODE_MODULES / "lwm2m-node-lib"
CLIENT = ROOT / "tests" / "third_party" / "lwm2m_node_client.js"
ENDPOINT = "nodeclient1"
TEMPERATURE = "sensor.nodeclient1_temperature"
VENDOR = "sensor.nodeclient1_object_32769_0_resource_1"
RUNS = "sensor.nodeclient1_object_32769_0_resource_3"


@pytest.fixture
def node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is missing (the newest leg runs without it)")
    assert (PACKAGE / "package.json").exists(), (
        f"{PACKAGE} is missing while Node.js is present: run scripts/setup"
    )
    return node


@pytest.fixture
async def processes() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    started: list[asyncio.subprocess.Process] = []
    yield started
    for process in started:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_node_client_appears_with_live_values(
    hass: HomeAssistant,
    node: str,
    tmp_path: Path,
    processes: list[asyncio.subprocess.Process],
    entity_registry: er.EntityRegistry,
) -> None:
    port = _free_udp_port()
    entry = lwm2m_entry(port)
    await setup_entry(hass, entry)
    log = tmp_path / "client.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            node,
            str(CLIENT),
            f"coap://127.0.0.1:{port}",
            ENDPOINT,
            stdin=asyncio.subprocess.PIPE,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
        )
    processes.append(process)
    assert process.stdin is not None

    def said() -> str:
        return f"client said: {log.read_text()!r}"

    bridge = entry.runtime_data.bridge
    await wait_for(lambda: ENDPOINT in bridge.devices, timeout=15, what=said)
    await wait_for(lambda: _state(hass, TEMPERATURE) == "21.5", what="temperature")
    # The Device object, read resource by resource (the client reads no whole instance).
    device = registry_device(hass, ENTRY_ID, ENDPOINT)
    assert device is not None
    assert (device.manufacturer, device.model) == ("Telefonica I+D", "lwm2m-node-lib client")
    assert (device.serial_number, device.sw_version) == ("TID-0001", "1.4.0")
    temperature = hass.states.get(TEMPERATURE)
    assert temperature is not None
    assert temperature.attributes["unit_of_measurement"] == "°C"  # from 3303/0/5701 "Cel"
    # The vendor object: a diagnostic sensor, enabled because its resource is observed.
    vendor = entity_registry.async_get(VENDOR)
    assert vendor is not None, sorted(
        e.entity_id for e in er.async_entries_for_config_entry(entity_registry, ENTRY_ID)
    )
    assert vendor.disabled_by is None
    assert _state(hass, VENDOR) == "vendor-reading"
    observing = bridge.diagnostics()["endpoints"][ENDPOINT]["observing"]
    assert {"/3303/0/5700", "/32769/0/1"} <= set(observing), observing

    # An executable resource run from Home Assistant, the outcome reported back.
    answer = await hass.services.async_call(
        DOMAIN,
        "send_command",
        {
            "device_id": device.id,
            "action": "execute",
            "params": {"path": "/32769/0/2", "arguments": "5"},
        },
        blocking=True,
        return_response=True,
    )
    assert answer is not None
    assert answer["code"] == "2.04"
    await wait_for(lambda: "executed /32769/0/2 5" in log.read_text(), what=said)
    await wait_for(lambda: _state(hass, RUNS) == "1", what="the run counter's notification")
    with pytest.raises(HomeAssistantError, match=r"refused execute of /32769/0/1: 4\.05"):
        await hass.services.async_call(
            DOMAIN,
            "send_command",
            {"device_id": device.id, "action": "execute", "params": {"path": "/32769/0/1"}},
            blocking=True,
        )
    assert log.read_text().count("executed") == 1

    # A live value: the client changes its temperature and notifies.
    process.stdin.write(b"temperature 24.25\n")
    await process.stdin.drain()
    await wait_for(lambda: _state(hass, TEMPERATURE) == "24.25", what="notification")

    # It de-registers when its input closes: the device goes unavailable.
    process.stdin.close()
    await wait_for(lambda: _state(hass, TEMPERATURE) == STATE_UNAVAILABLE, what="de-registration")
    async with asyncio.timeout(5):
        assert await process.wait() == 0, said()
    assert await hass.config_entries.async_unload(entry.entry_id)
