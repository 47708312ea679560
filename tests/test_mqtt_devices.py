"""MQTT devices end to end: real mosquitto, simulated devices speaking the profile."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from homeassistant.components.lock import DOMAIN as LOCK_DOMAIN
from homeassistant.components.lock.const import LockState
from homeassistant.const import ATTR_ENTITY_ID, STATE_OFF, STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pytest_homeassistant_custom_component.common import MockConfigEntry
from syrupy.assertion import SnapshotAssertion

from custom_components.iot_bridge.const import (
    CONF_AUTO_DISCOVERY,
    CONF_DEADLINE,
    CONF_RETRIES,
    DOMAIN,
)
from custom_components.iot_bridge.core.devices import MAX_EARLY_BYTES
from iot_bridge_sim.behaviour import Behaviour
from iot_bridge_sim.devices import DeviceModel, climate_node, parcel_locker
from iot_bridge_sim.mqtt import MqttDeviceSimulator

from .common import (
    mqtt_entry,
    record_command_events,
    registry_device,
    remove_device,
    setup_entry,
    wait_for,
)
from .mosquitto import Broker
from .mqtt_peers import StartSim, prefix, start_sim

__all__ = ["prefix", "start_sim"]  # the fixtures, imported for pytest

pytestmark = pytest.mark.usefixtures("socket_enabled")

ENTRY_ID = "01JTESTENTRY0000000000000"
LOCK_2 = "lock.parcel_locker_door_2"
CONNECTIVITY = "binary_sensor.parcel_locker_connectivity"
DOOR_2 = "binary_sensor.parcel_locker_door_2_open"


def gadget() -> DeviceModel:
    """A device with the remaining kinds: optimistic light and switch, confirmed button."""
    return DeviceModel(
        device_id="gadget1",
        name="Gadget",
        manufacturer="IoT Bridge tests",
        capabilities=[
            {"kind": "light", "key": "lamp", "name": "Lamp"},
            {"kind": "switch", "key": "fan", "name": "Fan"},
            {"kind": "button", "key": "reboot", "device_class": "restart", "confirmable": True},
            {"kind": "sensor", "key": "mode", "name": "Mode", "options": ["eco", "boost"]},
            # An unknown device class is ignored; a number sent as text is still a number.
            {"kind": "sensor", "key": "flux", "device_class": "flux", "state_class": "measurement"},
        ],
        state={"lamp": {"on": False, "brightness": 0}, "fan": False, "mode": "eco", "flux": "4.5"},
    )


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
    return entry


@pytest.fixture
async def hub(hass: HomeAssistant, mqtt_broker: Broker, prefix: str) -> MockConfigEntry:
    """A loaded hub on the test broker with a 2 s deadline and 2 retries."""
    return await _setup_hub(hass, mqtt_broker, prefix)


@pytest.fixture
async def locker(
    start_sim: StartSim, hub: MockConfigEntry, hass: HomeAssistant
) -> MqttDeviceSimulator:
    """The parcel locker (MQTT 5), discovered by the hub."""
    sim = await start_sim(parcel_locker())
    await wait_for(lambda: _state(hass, LOCK_2) == LockState.LOCKED, what="locker entities")
    return sim


def _state(hass: HomeAssistant, entity_id: str) -> str | None:
    state = hass.states.get(entity_id)
    return None if state is None else state.state


def _record_lock_states(hass: HomeAssistant, entity_id: str) -> list[str]:
    states: list[str] = []

    @callback
    def record(event: Event) -> None:
        if event.data["entity_id"] == entity_id and event.data["new_state"] is not None:
            states.append(event.data["new_state"].state)

    hass.bus.async_listen("state_changed", record)
    return states


# Discovery and entities -------------------------------------------------------------


async def test_discovery_creates_devices_and_entities(
    hass: HomeAssistant,
    start_sim: StartSim,
    mqtt_broker: Broker,
    prefix: str,
    entity_registry: er.EntityRegistry,
    device_registry: dr.DeviceRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    """Retained announcements at start-up become devices and entities (registry snapshot)."""
    await start_sim(parcel_locker())
    await start_sim(climate_node(), protocol="3.1.1")
    await start_sim(gadget())
    entry = await _setup_hub(hass, mqtt_broker, prefix)
    await wait_for(
        lambda: len(er.async_entries_for_config_entry(entity_registry, entry.entry_id))
        == 31  # 19 + 4 health sensors each
    )

    device = registry_device(hass, ENTRY_ID, "locker1")
    assert device is not None
    assert (device.name, device.manufacturer, device.model) == (
        "Parcel locker",
        "IoT Bridge demo",
        "PL-3",
    )
    assert (device.sw_version, device.hw_version) == ("1.0.0", "sim")

    entities = sorted(
        er.async_entries_for_config_entry(entity_registry, entry.entry_id),
        key=lambda e: e.entity_id,
    )
    registry_view = [
        {
            "entity_id": e.entity_id,
            "unique_id": e.unique_id,
            "original_name": e.original_name,
            "original_device_class": e.original_device_class,
            "unit": e.unit_of_measurement,
            "translation_key": e.translation_key,
            "supported_features": e.supported_features,
            "state": _state(hass, e.entity_id),
        }
        for e in entities
    ]
    assert registry_view == snapshot


async def test_live_discovery_state_and_availability(
    hass: HomeAssistant, locker: MqttDeviceSimulator
) -> None:
    """A device announced after start-up appears; state and availability follow the device."""
    assert _state(hass, LOCK_2) == LockState.LOCKED
    assert _state(hass, DOOR_2) == "off"
    assert _state(hass, "sensor.parcel_locker_temperature") == "21.5"

    await hass.async_add_executor_job(locker.publish_state, {"temperature": 23.25})
    await wait_for(lambda: _state(hass, "sensor.parcel_locker_temperature") == "23.25")

    await hass.async_add_executor_job(locker.crash)  # the broker publishes the Last Will
    await wait_for(
        lambda: _state(hass, "sensor.parcel_locker_temperature") == STATE_UNAVAILABLE,
        what="Last Will",
    )
    # A lock stays available (so commands reach IoT Bridge and fail loudly) with its state
    # unknown; the device's connectivity sensor says why.
    assert _state(hass, LOCK_2) == STATE_UNKNOWN
    assert _state(hass, CONNECTIVITY) == STATE_OFF


async def test_mqtt311_device(
    hass: HomeAssistant, hub: MockConfigEntry, start_sim: StartSim
) -> None:
    """An MQTT 3.1.1 device answers on the reply topic from the payload; commands confirm."""
    sim = await start_sim(climate_node(), protocol="3.1.1")
    await wait_for(lambda: hass.states.get("switch.climate_node_relay") is not None)
    await hass.services.async_call(
        "switch", "turn_on", {ATTR_ENTITY_ID: "switch.climate_node_relay"}, blocking=True
    )
    assert _state(hass, "switch.climate_node_relay") == "on"
    await hass.services.async_call(
        "number",
        "set_value",
        {ATTR_ENTITY_ID: "number.climate_node_setpoint", "value": 23.5},
        blocking=True,
    )
    assert _state(hass, "number.climate_node_setpoint") == "23.5"
    # 3.1.1 subscribers get no MQTT 5 properties: the id and reply topic came in the payload.
    assert sim.received[0].correlation_data is None
    assert sim.received[0].payload is not None
    assert sim.received[0].payload["reply_to"].endswith("/reply")
    assert hass.states.get("switch.climate_node_relay").attributes.get("assumed_state") is None


async def test_description_change_updates_entities(
    hass: HomeAssistant, locker: MqttDeviceSimulator, entity_registry: er.EntityRegistry
) -> None:
    """A new retained config adds, changes and removes entities without a restart."""
    model = locker.model
    model.capabilities = [c for c in model.capabilities if c["key"] != "door3_lock"]
    temperature = next(c for c in model.capabilities if c["key"] == "temperature")
    temperature["unit"] = "°F"
    model.capabilities.append(
        {"kind": "sensor", "key": "parcels", "name": "Parcels", "state_class": "measurement"}
    )
    model.state["parcels"] = 2
    await hass.async_add_executor_job(
        locker.publish_raw, "config", json.dumps(model.config_payload()), True
    )
    await hass.async_add_executor_job(locker.publish_state, {"parcels": 2})

    await wait_for(lambda: _state(hass, "sensor.parcel_locker_parcels") == "2")
    await wait_for(lambda: entity_registry.async_get("lock.parcel_locker_door_3") is None)
    assert hass.states.get("lock.parcel_locker_door_3") is None
    await hass.async_add_executor_job(locker.publish_state, {"temperature": 70})
    # The device now reports °F; Home Assistant converts to the system's °C.
    await wait_for(
        lambda: abs(float(_state(hass, "sensor.parcel_locker_temperature") or 0) - 21.1) < 0.2,
        what=lambda: hass.states.get("sensor.parcel_locker_temperature"),
    )


async def test_cleared_config_removes_device(
    hass: HomeAssistant, locker: MqttDeviceSimulator, device_registry: dr.DeviceRegistry
) -> None:
    """An empty retained config removes the device and its entities."""
    await hass.async_add_executor_job(locker.publish_raw, "config", b"", True)
    await wait_for(lambda: registry_device(hass, ENTRY_ID, "locker1") is None)
    await wait_for(lambda: hass.states.get(LOCK_2) is None)


async def test_user_deletes_device(
    hass: HomeAssistant,
    locker: MqttDeviceSimulator,
    hub: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
    hass_ws_client: Any,
) -> None:
    """Deleting a device in the UI clears its retained config so it does not come back."""
    assert await async_setup_component(hass, "config", {})
    device = registry_device(hass, ENTRY_ID, "locker1")
    assert device is not None
    client = await hass_ws_client(hass)
    response = await remove_device(client, device.id, hub.entry_id)
    assert response["success"]
    await hass.async_block_till_done()
    assert device_registry.async_get(device.id) is None
    assert "locker1" not in hub.runtime_data.bridge.devices
    # A hub restarting now finds no retained announcement for the deleted device.
    await hass.config_entries.async_reload(hub.entry_id)
    await hass.async_block_till_done()
    assert registry_device(hass, ENTRY_ID, "locker1") is None


async def test_auto_discovery_off_ignores_new_devices(
    hass: HomeAssistant, mqtt_broker: Broker, prefix: str, start_sim: StartSim
) -> None:
    """With discovery off, a newly announced device is not added."""
    entry = await _setup_hub(hass, mqtt_broker, prefix, **{CONF_AUTO_DISCOVERY: False})
    await start_sim(parcel_locker())
    await start_sim(climate_node(), protocol="3.1.1")
    await hass.async_block_till_done()
    assert entry.runtime_data.bridge.devices == {}
    assert hass.states.get(LOCK_2) is None


# Bad input ---------------------------------------------------------------------------


async def test_malformed_and_oversized_payloads_are_dropped(
    hass: HomeAssistant,
    hub: MockConfigEntry,
    locker: MqttDeviceSimulator,
    start_sim: StartSim,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Bad discovery/state payloads are logged once with the device id; others keep working."""
    broken = await start_sim(DeviceModel(device_id="broken1", name="Broken"))
    caplog.clear()
    await hass.async_add_executor_job(broken.publish_raw, "config", b"{not json", True)
    await hass.async_add_executor_job(broken.publish_raw, "config", b"{not json either", True)
    await hass.async_add_executor_job(locker.publish_raw, "state", b"x" * 20000, False)
    await hass.async_add_executor_job(locker.publish_raw, "state", b"[1, 2]", False)
    await hass.async_add_executor_job(locker.publish_raw, "availability", b"maybe", False)
    await hass.async_add_executor_job(locker.publish_state, {"temperature": 19.0})
    await wait_for(lambda: _state(hass, "sensor.parcel_locker_temperature") == "19.0")

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("config of device broken1" in w and "not valid JSON" in w for w in warnings) == 1
    assert sum("state of device locker1" in w and "limit is 16384" in w for w in warnings) == 1
    assert any("availability of device locker1" in w for w in warnings)
    dropped = hub.runtime_data.bridge.rejects.counts
    assert dropped["config"] == 2
    assert dropped["state"] == 2
    # The last good description stays in force: a bad message corrupts nothing.
    assert hub.runtime_data.bridge.devices["broken1"].name == "Broken"
    assert _state(hass, LOCK_2) == LockState.LOCKED  # the locker still works


async def test_bad_capability_description_is_rejected(
    hass: HomeAssistant, hub: MockConfigEntry, start_sim: StartSim, caplog: pytest.LogCaptureFixture
) -> None:
    """An unknown capability kind rejects that config with a reason naming it."""
    model = DeviceModel(
        device_id="odd1", name="Odd", capabilities=[{"kind": "toaster", "key": "t"}]
    )
    await start_sim(model)
    await wait_for(lambda: "unknown kind 'toaster'" in caplog.text)
    assert "odd1" not in hub.runtime_data.bridge.devices


async def test_hostile_config_fields_are_logged_once_without_traceback(
    hass: HomeAssistant,
    hub: MockConfigEntry,
    locker: MqttDeviceSimulator,
    start_sim: StartSim,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A capability field of the wrong JSON type (a list as kind: unhashable) and nesting as
    deep as 16 KiB allows are one warning per cause, without a traceback; the device keeps
    its last good description and other devices keep working."""
    hostile = await start_sim(DeviceModel(device_id="hostile1", name="Hostile"))
    caplog.clear()
    wrong_type = json.dumps(
        {"id": "hostile1", "name": "H", "capabilities": [{"kind": ["sensor"], "key": "k"}]}
    )
    deep = '{"id": "hostile1", "name": "H", "capabilities": [], "x": %s}' % (
        "[" * 8000 + "]" * 8000
    )
    for payload in (wrong_type, wrong_type, deep, deep):
        await hass.async_add_executor_job(hostile.publish_raw, "config", payload, False)
    bridge = hub.runtime_data.bridge
    await wait_for(lambda: bridge.rejects.counts["config"] == 4, what=lambda: bridge.rejects.counts)
    await hass.async_add_executor_job(locker.publish_state, {"temperature": 18.5})
    await wait_for(lambda: _state(hass, "sensor.parcel_locker_temperature") == "18.5")

    ours = [r for r in caplog.records if r.name.startswith("custom_components.iot_bridge")]
    assert [r for r in ours if r.exc_info or r.levelno >= logging.ERROR] == []
    warnings = [r.getMessage() for r in ours if r.levelno == logging.WARNING]
    hostile_warnings = [w for w in warnings if "hostile1" in w]
    assert len(hostile_warnings) == 2, hostile_warnings
    assert "unknown kind a JSON array" in hostile_warnings[0]
    assert "nested deeper than 16 levels" in hostile_warnings[1]
    assert all(len(w) < 300 for w in hostile_warnings)
    assert bridge.devices["hostile1"].name == "Hostile"


async def test_kind_change_drops_the_old_value(
    hass: HomeAssistant, hub: MockConfigEntry, start_sim: StartSim
) -> None:
    """A capability re-announced with another kind starts unknown: a sensor's 1 must not
    become a switch's "on" just because a switch would accept it."""
    model = DeviceModel(
        device_id="morph1",
        name="Morph",
        capabilities=[{"kind": "sensor", "key": "level", "name": "Level"}],
        state={"level": 1},
    )
    sim = await start_sim(model)
    await wait_for(lambda: _state(hass, "sensor.morph_level") == "1")
    model.capabilities = [{"kind": "switch", "key": "level", "name": "Level"}]
    await hass.async_add_executor_job(
        sim.publish_raw, "config", json.dumps(model.config_payload()), True
    )
    await wait_for(lambda: hass.states.get("switch.morph_level") is not None)
    await hass.async_block_till_done()
    assert _state(hass, "switch.morph_level") == STATE_UNKNOWN
    assert "level" not in hub.runtime_data.bridge.devices["morph1"].state
    # The device's next report sets it.
    await hass.async_add_executor_job(sim.publish_state, {"level": False})
    await wait_for(lambda: _state(hass, "switch.morph_level") == STATE_OFF)


async def test_early_state_is_bounded_by_bytes(
    hass: HomeAssistant, hub: MockConfigEntry, locker: MqttDeviceSimulator
) -> None:
    """State for devices not announced yet is kept within 16 KiB per device and 1 MiB in all
    (64 keys of 16 KiB each used to pass the key limit); the newest is still applied when
    its device is announced."""
    store = hub.runtime_data.bridge.store
    prefix = hub.runtime_data.bridge.topics.prefix
    client = locker._client
    # 100 devices x 63 keys x 200 characters: about 1.3 MiB of state.
    payload = json.dumps({f"k{i}": "x" * 200 for i in range(63)})
    oversized = json.dumps({"big": "y" * 15000})

    def publish() -> None:
        infos = [client.publish(f"{prefix}/early{n}/state", payload, qos=1) for n in range(100)]
        # A 64th key (within the key limit) would take this device past 16 KiB.
        infos.append(client.publish(f"{prefix}/early99/state", oversized, qos=1))
        for info in infos:
            info.wait_for_publish(5)

    await hass.async_add_executor_job(publish)
    counts = hub.runtime_data.bridge.rejects.counts
    await wait_for(lambda: counts["early_state_dropped"] >= 1, what=lambda: counts)
    assert counts["early_state_evicted"] >= 1
    assert 0 < store.early_bytes <= MAX_EARLY_BYTES
    announced = json.dumps(
        {"id": "early99", "name": "Early", "capabilities": [{"kind": "sensor", "key": "k0"}]}
    )
    await hass.async_add_executor_job(
        lambda: client.publish(f"{prefix}/early99/config", announced, qos=1).wait_for_publish(5)
    )
    await wait_for(lambda: "early99" in hub.runtime_data.bridge.devices)
    assert hub.runtime_data.bridge.devices["early99"].state == {"k0": "x" * 200}


async def test_debug_log_never_writes_a_whole_large_payload(
    hass: HomeAssistant,
    hub: MockConfigEntry,
    locker: MqttDeviceSimulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With debug logging on, a 15 KB payload shows as its first 200 characters and its size."""
    caplog.set_level(logging.DEBUG, logger="custom_components.iot_bridge")
    big = json.dumps({"temperature": "z" * 15000})
    await hass.async_add_executor_job(locker.publish_raw, "state", big, False)
    await hass.async_add_executor_job(locker.publish_raw, "state", big, False)
    await wait_for(lambda: "(again)" in caplog.text)
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("custom_components")]
    received = [m for m in ours if m.startswith("Received") and "/state" in m]
    assert received
    assert all(m.endswith(f"... ({len(big)} bytes)") for m in received)
    assert max(len(m) for m in ours) < 400
    assert not any("z" * 250 in m for m in ours)


# Confirmed commands --------------------------------------------------------------------


async def test_lock_open_confirmed(hass: HomeAssistant, locker: MqttDeviceSimulator) -> None:
    """Opening shows 'opening' while in flight and 'open' only after the device confirms."""
    states = _record_lock_states(hass, LOCK_2)
    events = record_command_events(hass)
    await hass.services.async_call(LOCK_DOMAIN, "open", {ATTR_ENTITY_ID: LOCK_2}, blocking=True)
    assert states[:2] == [LockState.OPENING, LockState.OPEN]
    assert _state(hass, LOCK_2) == LockState.OPEN
    await wait_for(lambda: _state(hass, DOOR_2) == "on")
    received = locker.received[0]
    assert received.payload is not None
    assert received.payload["action"] == "open"
    assert received.correlation_data == received.payload["id"].encode()
    assert received.response_topic == received.payload["reply_to"]
    assert 0 < received.message_expiry <= 2
    assert locker.executed == [received.payload["id"]]
    assert events[0]["outcome"] == "confirmed"
    assert events[0]["capability"] == "door2_lock"
    assert events[0]["latency_ms"] < 2000


async def test_unlock_and_lock_show_their_transitions(
    hass: HomeAssistant, locker: MqttDeviceSimulator
) -> None:
    """Unlocking and locking show while in flight; each new state only on confirmation."""
    states = _record_lock_states(hass, LOCK_2)
    for service in ("unlock", "lock"):
        await hass.services.async_call(
            LOCK_DOMAIN, service, {ATTR_ENTITY_ID: LOCK_2}, blocking=True
        )
    assert states == [
        LockState.UNLOCKING,
        LockState.UNLOCKED,
        LockState.LOCKING,
        LockState.LOCKED,
    ]
    assert [r.payload["action"] for r in locker.received if r.payload] == ["unlock", "lock"]
    assert len(locker.executed) == 2


async def test_lock_rejected(hass: HomeAssistant, locker: MqttDeviceSimulator) -> None:
    """A refusal raises a translated error naming device and reason; state stays."""
    locker.behaviour.refuse = "door blocked"
    states = _record_lock_states(hass, LOCK_2)
    with pytest.raises(HomeAssistantError) as err:
        await hass.services.async_call(LOCK_DOMAIN, "open", {ATTR_ENTITY_ID: LOCK_2}, blocking=True)
    assert str(err.value) == "Parcel locker refused to open Door 2: door blocked"
    assert err.value.translation_key == "command_rejected"
    assert states == [LockState.OPENING, LockState.LOCKED]
    assert locker.executed == []


async def test_lock_jammed(hass: HomeAssistant, locker: MqttDeviceSimulator) -> None:
    """A device reporting jammed leaves the lock jammed."""
    locker.behaviour.jam = {"door2_lock"}
    with pytest.raises(HomeAssistantError, match="jammed"):
        await hass.services.async_call(LOCK_DOMAIN, "lock", {ATTR_ENTITY_ID: LOCK_2}, blocking=True)
    assert _state(hass, LOCK_2) == LockState.JAMMED


async def test_silent_device_times_out_within_deadline(
    hass: HomeAssistant, locker: MqttDeviceSimulator
) -> None:
    """No answer: the call fails at the deadline, retries reused one id, state unchanged."""
    locker.behaviour.silent = True
    locker.behaviour.report_state = False
    loop = hass.loop
    started = loop.time()
    with pytest.raises(HomeAssistantError, match="did not confirm open of Door 2 in time"):
        await hass.services.async_call(LOCK_DOMAIN, "open", {ATTR_ENTITY_ID: LOCK_2}, blocking=True)
    elapsed = loop.time() - started
    assert 1.9 < elapsed < 2.6
    ids = {r.payload["id"] for r in locker.received if r.payload}
    assert len(locker.received) == 3  # first try + 2 retries
    assert len(ids) == 1
    assert locker.executed == list(ids)  # performed once, however often it was sent
    assert _state(hass, LOCK_2) == LockState.LOCKED


async def test_late_answer_is_ignored(
    hass: HomeAssistant, mqtt_broker: Broker, prefix: str, start_sim: StartSim
) -> None:
    """An answer after the deadline does not flip the state; it is counted as late."""
    entry = await _setup_hub(hass, mqtt_broker, prefix, **{CONF_DEADLINE: 1.0, CONF_RETRIES: 0})
    sim = await start_sim(
        parcel_locker(), behaviour=Behaviour(answer_delay=1.5, report_state=False)
    )
    await wait_for(lambda: hass.states.get(LOCK_2) is not None)
    with pytest.raises(HomeAssistantError, match="in time"):
        await hass.services.async_call(LOCK_DOMAIN, "open", {ATTR_ENTITY_ID: LOCK_2}, blocking=True)
    engine = entry.runtime_data.engine
    await wait_for(lambda: engine.stats["late"] == 1, timeout=3, what="late answer")
    assert len(sim.answers) == 1
    assert sim.answers[0]["status"] == "ok"
    assert _state(hass, LOCK_2) == LockState.LOCKED


async def test_retry_reuses_id_and_device_acts_once(
    hass: HomeAssistant, locker: MqttDeviceSimulator
) -> None:
    """The first delivery is lost; the retry carries the same id and confirms."""
    locker.behaviour.drop_first = 1
    response = await _send_command(
        hass,
        {"device_id": _device_id(hass), "capability": "door1_lock", "action": "open"},
    )
    assert response is not None
    assert response["status"] == "confirmed"
    assert response["attempts"] == 2
    ids = [r.payload["id"] for r in locker.received if r.payload]
    assert ids == [response["id"], response["id"]]
    assert locker.executed == [response["id"]]


async def test_duplicate_and_foreign_answers_are_ignored(
    hass: HomeAssistant, hub: MockConfigEntry, locker: MqttDeviceSimulator
) -> None:
    """A repeated answer and an answer with an unknown correlation id change nothing."""
    await hass.services.async_call(LOCK_DOMAIN, "unlock", {ATTR_ENTITY_ID: LOCK_2}, blocking=True)
    assert _state(hass, LOCK_2) == LockState.UNLOCKED
    first = locker.received[0]
    assert first.payload is not None
    reply_topic = first.payload["reply_to"]
    await _publish_answer(hass, locker, reply_topic, first.payload["id"], {"door2_lock": "open"})
    await _publish_answer(hass, locker, reply_topic, "f" * 26, {"door2_lock": "open"})
    engine = hub.runtime_data.engine
    await wait_for(lambda: engine.stats["duplicate"] == 1 and engine.stats["foreign"] == 1)
    assert _state(hass, LOCK_2) == LockState.UNLOCKED

    # A malformed answer is dropped and counted; commands keep working afterwards.
    await hass.async_add_executor_job(
        lambda: locker._client.publish(reply_topic, b"{oops", qos=1).wait_for_publish(2)
    )
    await wait_for(lambda: hub.runtime_data.bridge.rejects.counts["answer"] == 1)
    await hass.services.async_call(LOCK_DOMAIN, "lock", {ATTR_ENTITY_ID: LOCK_2}, blocking=True)
    assert _state(hass, LOCK_2) == LockState.LOCKED


async def test_bad_answers_on_the_reply_topic_are_logged_once_per_cause(
    hass: HomeAssistant,
    hub: MockConfigEntry,
    locker: MqttDeviceSimulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every device answers on the hub's one reply topic: a good answer from one device must
    not re-arm the warning for another's bad ones, so each cause is logged once."""
    reply_topic = hub.runtime_data.bridge.topics.reply

    async def publish_bad(payload: bytes) -> None:
        await hass.async_add_executor_job(
            lambda: locker._client.publish(reply_topic, payload, qos=1).wait_for_publish(2)
        )

    caplog.clear()
    await publish_bad(b"{oops")
    await hass.services.async_call(LOCK_DOMAIN, "unlock", {ATTR_ENTITY_ID: LOCK_2}, blocking=True)
    assert _state(hass, LOCK_2) == LockState.UNLOCKED  # a good answer came in between
    await publish_bad(b"{oops again")
    await publish_bad(b'{"status": "ok"}')
    await publish_bad(b'{"status": "ok", "reason": "no id either"}')
    counts = hub.runtime_data.bridge.rejects.counts
    await wait_for(lambda: counts["answer"] == 4, what=lambda: counts)

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    answers = [w for w in warnings if "(reply topic)" in w]
    assert len(answers) == 2, answers
    assert "not valid JSON" in answers[0]
    assert "no command id" in answers[1]


async def _publish_answer(
    hass: HomeAssistant,
    sim: MqttDeviceSimulator,
    topic: str,
    command_id: str,
    state: dict[str, Any],
) -> None:
    """Publish an answer as the device would (MQTT 5 correlation data)."""
    properties = Properties(PacketTypes.PUBLISH)
    properties.CorrelationData = command_id.encode()
    payload = json.dumps({"id": command_id, "status": "ok", "state": state})

    def publish() -> None:
        sim._client.publish(topic, payload, qos=1, properties=properties).wait_for_publish(2)

    await hass.async_add_executor_job(publish)


async def test_broker_stops_mid_command(
    hass: HomeAssistant, own_broker: Broker, prefix: str
) -> None:
    """The broker dies while a command waits: clear failure, entities unavailable, recovery."""
    entry = await _setup_hub(hass, own_broker, prefix)
    entry.runtime_data.bridge.connection._reconnect_min = 0.1
    sim = MqttDeviceSimulator(
        parcel_locker(), port=own_broker.port, prefix=prefix, behaviour=Behaviour(answer_delay=5)
    )
    await hass.async_add_executor_job(sim.start)
    try:
        await wait_for(lambda: hass.states.get(LOCK_2) is not None)
        task = hass.async_create_task(
            hass.services.async_call(LOCK_DOMAIN, "open", {ATTR_ENTITY_ID: LOCK_2}, blocking=True)
        )
        await wait_for(lambda: len(sim.received) == 1)
        await hass.async_add_executor_job(own_broker.stop)
        with pytest.raises(HomeAssistantError, match="in time") as err:
            await task
        assert "connection" in str(err.value) or "broker" in str(err.value)
        assert _state(hass, "sensor.parcel_locker_temperature") == STATE_UNAVAILABLE
        assert _state(hass, LOCK_2) == STATE_UNKNOWN  # still available: commands fail loudly
        not_connected = "was not sent: IoT Bridge is not connected to the MQTT broker"
        with pytest.raises(HomeAssistantError, match=not_connected):
            await hass.services.async_call(
                LOCK_DOMAIN, "lock", {ATTR_ENTITY_ID: LOCK_2}, blocking=True
            )
        with pytest.raises(HomeAssistantError, match=not_connected):
            await _send_command(
                hass,
                {"device_id": _device_id(hass), "capability": "door1_lock", "action": "lock"},
            )

        await hass.async_add_executor_job(own_broker.start)
        sim.behaviour.answer_delay = 0
        await wait_for(lambda: entry.runtime_data.connected, timeout=10)
        # Retained messages died with the broker; the device re-announces on reconnect.
        await hass.async_add_executor_job(sim.stop)
        await hass.async_add_executor_job(sim.start)
        await wait_for(lambda: _state(hass, LOCK_2) not in (STATE_UNKNOWN, STATE_UNAVAILABLE))
        await hass.services.async_call(LOCK_DOMAIN, "lock", {ATTR_ENTITY_ID: LOCK_2}, blocking=True)
        assert _state(hass, LOCK_2) == LockState.LOCKED
        await hass.services.async_call(LOCK_DOMAIN, "open", {ATTR_ENTITY_ID: LOCK_2}, blocking=True)
        assert _state(hass, LOCK_2) == LockState.OPEN
    finally:
        await hass.async_add_executor_job(sim.stop)


# Other platforms ---------------------------------------------------------------------


async def test_optimistic_and_confirmed_platforms(
    hass: HomeAssistant, hub: MockConfigEntry, start_sim: StartSim
) -> None:
    """Non-confirmable light and switch are assumed; the confirmable button waits."""
    sim = await start_sim(gadget())
    await wait_for(lambda: hass.states.get("light.gadget_lamp") is not None)
    events = record_command_events(hass)
    lamp = hass.states.get("light.gadget_lamp")
    assert lamp.attributes.get("assumed_state") is True
    # Not answering shows the optimistic path (an answer, when one comes, is used).
    sim.behaviour.silent = True
    await hass.services.async_call(
        "light", "turn_on", {ATTR_ENTITY_ID: "light.gadget_lamp", "brightness": 128}, blocking=True
    )
    assert _state(hass, "light.gadget_lamp") == "on"
    assert hass.states.get("light.gadget_lamp").attributes["brightness"] == 128
    await hass.services.async_call(
        "switch", "turn_on", {ATTR_ENTITY_ID: "switch.gadget_fan"}, blocking=True
    )
    assert _state(hass, "switch.gadget_fan") == "on"
    sim.behaviour.silent = False
    await hass.services.async_call(
        "button", "press", {ATTR_ENTITY_ID: "button.gadget_restart"}, blocking=True
    )
    assert [e["outcome"] for e in events] == ["delivered", "delivered", "confirmed"]
    await wait_for(lambda: len(sim.executed) == 3)
    assert _state(hass, "sensor.gadget_mode") == "eco"
    assert _state(hass, "sensor.gadget_flux") == "4.5"
    # Values a capability cannot hold are dropped at the edge: the last good value stays.
    await hass.async_add_executor_job(sim.publish_state, {"flux": "n/a", "mode": "turbo"})
    await hass.async_add_executor_job(sim.publish_state, {"flux": 5})
    await wait_for(lambda: _state(hass, "sensor.gadget_flux") == "5")
    assert _state(hass, "sensor.gadget_mode") == "eco"  # "turbo" is not a declared option
    await hass.services.async_call(
        "light", "turn_off", {ATTR_ENTITY_ID: "light.gadget_lamp"}, blocking=True
    )
    assert _state(hass, "light.gadget_lamp") == "off"


# The action --------------------------------------------------------------------------


async def _send_command(hass: HomeAssistant, data: dict[str, Any]) -> Any:
    """Call iot_bridge.send_command and return its response."""
    return await hass.services.async_call(
        DOMAIN, "send_command", data, blocking=True, return_response=True
    )


def _device_id(hass: HomeAssistant, device: str = "locker1") -> str:
    entry = registry_device(hass, ENTRY_ID, device)
    assert entry is not None
    return entry.id


async def test_send_command_response_and_errors(
    hass: HomeAssistant, locker: MqttDeviceSimulator
) -> None:
    """The action returns the outcome; bad targets are validation errors."""
    device_id = _device_id(hass)
    response = await _send_command(
        hass,
        {"device_id": device_id, "capability": "door3_lock", "action": "open", "deadline": 3},
    )
    assert response is not None
    assert response["status"] == "confirmed"
    assert response["state"]["door3_lock"] == "open"
    assert 0 < response["latency_ms"] < 3000
    assert response["attempts"] == 1
    assert locker.received[-1].message_expiry == 3
    assert _state(hass, "lock.parcel_locker_door_3") == LockState.OPEN

    with pytest.raises(ServiceValidationError, match='no capability "nope"'):
        await _send_command(
            hass,
            {"device_id": device_id, "capability": "nope", "action": "open"},
        )
    with pytest.raises(ServiceValidationError, match='does not accept "fly"'):
        await _send_command(
            hass,
            {"device_id": device_id, "capability": "door1_lock", "action": "fly"},
        )
    with pytest.raises(ServiceValidationError, match="takes no parameter speed"):
        await _send_command(
            hass,
            {
                "device_id": device_id,
                "capability": "door1_lock",
                "action": "open",
                "params": {"speed": 3},
            },
        )
    with pytest.raises(ServiceValidationError, match="not an IoT Bridge device"):
        await _send_command(
            hass,
            {"device_id": "missing", "capability": "x", "action": "open"},
        )
    locker.behaviour.refuse = "out of order"
    with pytest.raises(HomeAssistantError, match="out of order"):
        await _send_command(
            hass,
            {"device_id": device_id, "capability": "door1_lock", "action": "open"},
        )

    # The device stays in the registry while its hub is unloaded: say so, do not crash.
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    assert await hass.config_entries.async_unload(entry.entry_id)
    with pytest.raises(ServiceValidationError, match="hub of Parcel locker is not loaded"):
        await _send_command(
            hass,
            {"device_id": device_id, "capability": "door1_lock", "action": "open"},
        )


async def test_automations_branch_on_confirmation(
    hass: HomeAssistant, locker: MqttDeviceSimulator
) -> None:
    """A script stops on an unconfirmed open; another reads status and latency_ms."""
    device_id = _device_id(hass)
    assert await async_setup_component(
        hass,
        "script",
        {
            "script": {
                "open_door": {
                    "sequence": [
                        {"action": "lock.open", "target": {"entity_id": LOCK_2}},
                        {
                            "action": "input_boolean.turn_on",
                            "target": {"entity_id": "input_boolean.reached"},
                        },
                    ]
                },
                # The README's example: carry on after a failed open and branch on the state.
                "open_and_branch": {
                    "sequence": [
                        {
                            "action": "lock.open",
                            "target": {"entity_id": LOCK_2},
                            "continue_on_error": True,
                        },
                        {
                            "if": [{"condition": "state", "entity_id": LOCK_2, "state": "open"}],
                            "then": [_set_outcome("opened")],
                            "else": [_set_outcome("did not open")],
                        },
                    ]
                },
                "open_with_response": {
                    "sequence": [
                        {
                            "action": "iot_bridge.send_command",
                            "data": {
                                "device_id": device_id,
                                "capability": "door1_lock",
                                "action": "open",
                            },
                            "response_variable": "result",
                        },
                        {
                            "action": "input_text.set_value",
                            "target": {"entity_id": "input_text.outcome"},
                            "data": {"value": "{{ result.status }} {{ result.latency_ms > 0 }}"},
                        },
                    ]
                },
            }
        },
    )
    assert await async_setup_component(hass, "input_boolean", {"input_boolean": {"reached": {}}})
    assert await async_setup_component(hass, "input_text", {"input_text": {"outcome": {}}})

    locker.behaviour.refuse = "parcel stuck"
    with pytest.raises(HomeAssistantError, match="parcel stuck"):
        await hass.services.async_call("script", "open_door", blocking=True)
    assert _state(hass, "input_boolean.reached") == "off"

    await hass.services.async_call("script", "open_and_branch", blocking=True)
    assert _state(hass, "input_text.outcome") == "did not open"

    locker.behaviour.refuse = None
    await hass.services.async_call("script", "open_and_branch", blocking=True)
    assert _state(hass, "input_text.outcome") == "opened"
    await hass.services.async_call("script", "open_with_response", blocking=True)
    assert _state(hass, "input_text.outcome") == "confirmed True"


def _set_outcome(value: str) -> dict[str, Any]:
    return {
        "action": "input_text.set_value",
        "target": {"entity_id": "input_text.outcome"},
        "data": {"value": value},
    }
