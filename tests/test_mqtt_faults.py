"""Faults with a real mosquitto: offline devices, a broker that goes away, reconnects.

A command that cannot reach its device must fail loudly with a translated reason through
every way Home Assistant can send it (entity action, iot_bridge.send_command, automation,
script), and a command whose deadline outlasts an outage must still be confirmed, carried
out once (docs/reliability.md).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncGenerator
from typing import Any

import pytest
from homeassistant.components.lock import DOMAIN as LOCK_DOMAIN
from homeassistant.const import ATTR_ENTITY_ID, STATE_OFF, STATE_ON, STATE_UNKNOWN
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.iot_bridge.const import CONF_DEADLINE, CONF_RETRIES, DOMAIN
from iot_bridge_sim.devices import parcel_locker
from iot_bridge_sim.mqtt import MqttDeviceSimulator

from .common import mqtt_entry, registry_device, setup_entry, wait_for
from .mosquitto import Broker

pytestmark = pytest.mark.usefixtures("socket_enabled")

ENTRY_ID = "01JFAULTENTRY000000000000"
LOCK_2 = "lock.parcel_locker_door_2"
CONNECTIVITY = "binary_sensor.parcel_locker_connectivity"
REACHED = "input_boolean.reached"
OPEN_EVENT = "iot_bridge_test_open_door"

# The translated messages (translations/en.json, exceptions) the user sees.
OFFLINE = r"Parcel locker is offline: open of Door \d was not sent"
NOT_CONNECTED = (
    r"open of Door \d on Parcel locker was not sent: IoT Bridge is not connected to the "
    r"MQTT broker 127\.0\.0\.1:\d+"
)


@pytest.fixture
def prefix() -> str:
    """A discovery prefix of this test's own."""
    return f"f{uuid.uuid4().hex[:10]}"


async def _setup_hub(
    hass: HomeAssistant, broker: Broker, prefix: str, **options: Any
) -> MockConfigEntry:
    entry = mqtt_entry(
        broker,
        options={CONF_DEADLINE: 2.0, CONF_RETRIES: 2, **options},
        entry_id=ENTRY_ID,
        prefix=prefix,
    )
    await setup_entry(hass, entry)
    # Reconnect quickly: the tests restart the broker.
    entry.runtime_data.bridge.connection._reconnect_min = 0.1
    return entry


@pytest.fixture
async def locker(
    hass: HomeAssistant, own_broker: Broker, prefix: str
) -> AsyncGenerator[MqttDeviceSimulator]:
    """The parcel locker simulator on this test's own broker (not yet started)."""
    sim = MqttDeviceSimulator(
        parcel_locker(),
        port=own_broker.port,
        prefix=prefix,
        printer=logging.getLogger("simulator").info,
    )
    yield sim
    await hass.async_add_executor_job(sim.stop)


def _state(hass: HomeAssistant, entity_id: str) -> str | None:
    state = hass.states.get(entity_id)
    return None if state is None else state.state


def _device_id(hass: HomeAssistant) -> str:
    device = registry_device(hass, ENTRY_ID, "locker1")
    assert device is not None
    return device.id


async def _setup_every_path(hass: HomeAssistant) -> None:
    """An automation and a script that open door 2, then switch input_boolean.reached on."""
    steps = [
        {"action": "lock.open", "target": {"entity_id": LOCK_2}},
        {"action": "input_boolean.turn_on", "target": {"entity_id": REACHED}},
    ]
    assert await async_setup_component(hass, "input_boolean", {"input_boolean": {"reached": {}}})
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": [
                {
                    "id": "open_door",
                    "alias": "Open door",
                    "triggers": [{"trigger": "event", "event_type": OPEN_EVENT}],
                    "actions": steps,
                }
            ]
        },
    )
    assert await async_setup_component(
        hass, "script", {"script": {"open_door": {"sequence": steps}}}
    )
    await hass.async_block_till_done()


async def _assert_every_path_fails(
    hass: HomeAssistant,
    hass_ws_client: Any,
    caplog: pytest.LogCaptureFixture,
    message: str,
) -> None:
    """Entity action, send_command, script and automation all fail with `message`."""
    with pytest.raises(HomeAssistantError, match=message):
        await hass.services.async_call(LOCK_DOMAIN, "open", {ATTR_ENTITY_ID: LOCK_2}, blocking=True)
    with pytest.raises(HomeAssistantError, match=message):
        await hass.services.async_call(
            DOMAIN,
            "send_command",
            {"device_id": _device_id(hass), "capability": "door1_lock", "action": "open"},
            blocking=True,
            return_response=True,
        )
    # A script stops at the failed step and its caller gets the error.
    with pytest.raises(HomeAssistantError, match=message):
        await hass.services.async_call("script", "open_door", blocking=True)
    assert _state(hass, REACHED) == STATE_OFF

    # An automation has no caller: the failure is logged as an error, its trace ends in the
    # error, and the step after the open does not run.
    caplog.clear()
    hass.bus.async_fire(OPEN_EVENT)
    await hass.async_block_till_done()
    assert _state(hass, REACHED) == STATE_OFF
    errors = [
        record
        for record in caplog.records
        if record.levelno >= logging.ERROR and re.search(message, record.getMessage())
    ]
    assert errors, f"no error logged: {[r.getMessage() for r in caplog.records]}"
    client = await hass_ws_client(hass)
    await client.send_json_auto_id(
        {"type": "trace/list", "domain": "automation", "item_id": "open_door"}
    )
    response = await client.receive_json()
    assert response["success"]
    last = response["result"][-1]
    assert last["script_execution"] == "error"
    assert re.search(message, last["error"])


async def test_command_to_offline_device_fails_on_every_path(
    hass: HomeAssistant,
    hass_ws_client: Any,
    caplog: pytest.LogCaptureFixture,
    own_broker: Broker,
    prefix: str,
    locker: MqttDeviceSimulator,
) -> None:
    """The device's Last Will says offline: every path fails with "is offline", nothing sent."""
    await _setup_hub(hass, own_broker, prefix)
    await hass.async_add_executor_job(locker.start)
    await wait_for(lambda: _state(hass, CONNECTIVITY) == STATE_ON, what="locker online")
    await _setup_every_path(hass)

    await hass.async_add_executor_job(locker.crash)  # the broker publishes the Last Will
    await wait_for(lambda: _state(hass, CONNECTIVITY) == STATE_OFF, what="Last Will")
    # The lock stays available, so the action reaches IoT Bridge instead of being skipped.
    assert _state(hass, LOCK_2) == STATE_UNKNOWN

    await _assert_every_path_fails(hass, hass_ws_client, caplog, OFFLINE)
    assert locker.received == []


async def test_command_while_broker_down_fails_on_every_path(
    hass: HomeAssistant,
    hass_ws_client: Any,
    caplog: pytest.LogCaptureFixture,
    own_broker: Broker,
    prefix: str,
    locker: MqttDeviceSimulator,
) -> None:
    """The broker is gone: every path fails with "not connected to the MQTT broker"."""
    entry = await _setup_hub(hass, own_broker, prefix)
    await hass.async_add_executor_job(locker.start)
    await wait_for(lambda: _state(hass, CONNECTIVITY) == STATE_ON, what="locker online")
    await _setup_every_path(hass)

    await hass.async_add_executor_job(own_broker.stop)
    await wait_for(lambda: not entry.runtime_data.connected, what="connection loss")
    assert _state(hass, LOCK_2) == STATE_UNKNOWN
    assert _state(hass, CONNECTIVITY) == STATE_OFF

    await _assert_every_path_fails(hass, hass_ws_client, caplog, NOT_CONNECTED)
    assert locker.received == []
