"""Faults with a real mosquitto: offline devices, a broker that goes away, reconnects.

A command that cannot reach its device must fail loudly with a translated reason through
every way Home Assistant can send it (entity action, iot_bridge.send_command, automation,
script), and a command whose deadline outlasts an outage must still be confirmed, carried
out once (docs/reliability.md).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any

import pytest
from homeassistant.components.lock import DOMAIN as LOCK_DOMAIN
from homeassistant.components.lock.const import LockState
from homeassistant.const import ATTR_ENTITY_ID, STATE_OFF, STATE_ON, STATE_UNKNOWN
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.iot_bridge.const import CONF_DEADLINE, CONF_RETRIES, DOMAIN
from iot_bridge_sim.devices import parcel_locker
from iot_bridge_sim.mqtt import MqttDeviceSimulator

from .common import mqtt_entry, record_command_events, registry_device, setup_entry, wait_for
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


# Reconnects: a command whose deadline outlasts the outage is confirmed, carried out once ---


def _open(hass: HomeAssistant) -> Any:
    return hass.async_create_task(
        hass.services.async_call(LOCK_DOMAIN, "open", {ATTR_ENTITY_ID: LOCK_2}, blocking=True)
    )


def _assert_confirmed_once(
    outcomes: list[dict[str, Any]], locker: MqttDeviceSimulator, min_attempts: int = 2
) -> None:
    """One outcome, CONFIRMED after more than one attempt; the device acted once."""
    assert [(o["outcome"], o["capability"]) for o in outcomes] == [("confirmed", "door2_lock")]
    assert outcomes[0]["attempts"] >= min_attempts
    command_id = outcomes[0]["command_id"]
    assert locker.executed == [command_id]
    assert {r.payload["id"] for r in locker.received if r.payload} == {command_id}
    assert len(locker.received) >= 2


async def _start_silent(hass: HomeAssistant, locker: MqttDeviceSimulator) -> None:
    """Start the locker acting on commands but not answering (its answer is "lost")."""
    locker.behaviour.silent = True
    await hass.async_add_executor_job(locker.start)
    await wait_for(lambda: _state(hass, LOCK_2) == LockState.LOCKED, what="locker entities")


async def _acted_unanswered(entry: MockConfigEntry, locker: MqttDeviceSimulator) -> None:
    """The device got attempt 1, opened (its state message says so) and sent no answer."""
    await wait_for(lambda: len(locker.executed) == 1, what="attempt 1 carried out")
    hub = entry.runtime_data

    def opened() -> bool:
        device = hub.device("locker1")
        return device is not None and device.state.get("door2_lock") == "open"

    await wait_for(opened, what="state message after the open")


async def test_broker_restart_mid_command_is_confirmed_after_reconnect(
    hass: HomeAssistant, own_broker: Broker, prefix: str, locker: MqttDeviceSimulator
) -> None:
    """The broker restarts while lock.open waits; no retry slot is left (retries 0), so only
    a resend after the outage can save it: confirmed, and the door opened once.

    The hub's own reconnect resend usually reaches the broker before the device has
    subscribed again (no persistent session) and is lost; the resend that arrives is the
    one its live "online" triggers.
    """
    entry = await _setup_hub(hass, own_broker, prefix, **{CONF_DEADLINE: 8.0, CONF_RETRIES: 0})
    await _start_silent(hass, locker)
    outcomes = record_command_events(hass)
    task = _open(hass)
    await _acted_unanswered(entry, locker)

    await hass.async_add_executor_job(own_broker.stop)
    locker.behaviour.silent = False  # answers again (a repeat: re-sends, does not act)
    await hass.async_add_executor_job(own_broker.start)
    await task  # no error: confirmed within the deadline

    _assert_confirmed_once(outcomes, locker)
    assert _state(hass, LOCK_2) == LockState.OPEN


async def test_device_back_online_resends_pending_command(
    hass: HomeAssistant, own_broker: Broker, prefix: str, locker: MqttDeviceSimulator
) -> None:
    """The device drops off (Last Will) while lock.open waits and comes back: its "online"
    sends the pending command again at once; the hub's own link never dropped."""
    entry = await _setup_hub(hass, own_broker, prefix, **{CONF_DEADLINE: 8.0, CONF_RETRIES: 0})
    await _start_silent(hass, locker)
    outcomes = record_command_events(hass)
    task = _open(hass)
    await _acted_unanswered(entry, locker)
    reconnects = entry.runtime_data.bridge.connection.reconnects

    await hass.async_add_executor_job(locker.crash)
    await wait_for(lambda: _state(hass, CONNECTIVITY) == STATE_OFF, what="Last Will")
    assert not task.done()
    locker.behaviour.silent = False
    started = time.monotonic()
    await hass.async_add_executor_job(locker.start)
    await task

    assert time.monotonic() - started < 4.0  # at once, not at the 8 s deadline
    assert entry.runtime_data.bridge.connection.reconnects == reconnects
    _assert_confirmed_once(outcomes, locker)


async def test_link_lost_while_waiting_for_puback_does_not_block_resend(
    hass: HomeAssistant, own_broker: Broker, prefix: str, locker: MqttDeviceSimulator
) -> None:
    """The broker freezes (no PUBACK for the command), then dies and comes back.

    aiomqtt would keep the publish waiting for its PUBACK until its own 10 s timeout,
    past this 6 s deadline; the publish must end when the link drops so the reconnect can
    send the command again: confirmed, carried out once.
    """
    entry = await _setup_hub(hass, own_broker, prefix, **{CONF_DEADLINE: 6.0, CONF_RETRIES: 0})
    await hass.async_add_executor_job(locker.start)
    await wait_for(lambda: _state(hass, LOCK_2) == LockState.LOCKED, what="locker entities")
    outcomes = record_command_events(hass)

    await hass.async_add_executor_job(own_broker.pause)
    task = _open(hass)
    engine = entry.runtime_data.engine
    await wait_for(lambda: bool(engine.pending_ids), what="command pending")
    await hass.async_add_executor_job(time.sleep, 0.3)  # published, no PUBACK coming
    assert not task.done()
    await hass.async_add_executor_job(own_broker.kill)
    await hass.async_add_executor_job(own_broker.start)
    await task

    assert len(outcomes) == 1
    assert outcomes[0]["outcome"] == "confirmed"
    assert outcomes[0]["attempts"] >= 2
    assert locker.executed == [outcomes[0]["command_id"]]
    assert _state(hass, LOCK_2) == LockState.OPEN
