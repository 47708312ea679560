"""CoAP devices end to end: Home Assistant and the simulated CoAP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any

import pytest
from homeassistant.components.device_automation import DeviceAutomationType
from homeassistant.components.lock import DOMAIN as LOCK_DOMAIN
from homeassistant.components.lock.const import LockState
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import ATTR_ENTITY_ID, STATE_OFF, STATE_ON
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_get_device_automations,
)
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
    get_diagnostics_for_device,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator
from syrupy.assertion import SnapshotAssertion

from custom_components.iot_bridge.const import DOMAIN
from custom_components.iot_bridge.core.coap.bridge import CoapBridge
from custom_components.iot_bridge.logbook import describe_outcome
from iot_bridge_sim.behaviour import Behaviour
from iot_bridge_sim.coap import CoapDeviceSimulator
from iot_bridge_sim.devices import DeviceModel, climate_node, parcel_locker

from .coap_peers import StartSim, coap_entry, restartable_udp_port, start_coap_sim
from .common import record_command_events, registry_device, remove_device, setup_entry, wait_for

pytestmark = pytest.mark.usefixtures("socket_enabled")

__all__ = ["start_coap_sim"]  # the fixture, imported for pytest

ENTRY_ID = "01JCOAPENTRY000000000000"
LOCK_2 = "lock.parcel_locker_door_2"
DOOR_2 = "binary_sensor.parcel_locker_door_2_open"
TEMPERATURE = "sensor.parcel_locker_temperature"
CONNECTIVITY = "binary_sensor.parcel_locker_connectivity"


def _state(hass: HomeAssistant, entity_id: str) -> str | None:
    state = hass.states.get(entity_id)
    return None if state is None else state.state


def _record_states(hass: HomeAssistant, entity_id: str) -> list[str]:
    states: list[str] = []

    @callback
    def record(event: Event) -> None:
        if event.data["entity_id"] == entity_id and event.data["new_state"] is not None:
            states.append(event.data["new_state"].state)

    hass.bus.async_listen("state_changed", record)
    return states


async def _hub(hass: HomeAssistant, sim: CoapDeviceSimulator, **options: Any) -> MockConfigEntry:
    entry = coap_entry(sim.port, sim.device_id, entry_id=ENTRY_ID, **options)
    await setup_entry(hass, entry)
    return entry


@pytest.fixture
async def locker(start_coap_sim: StartSim) -> CoapDeviceSimulator:
    """The parcel locker as a CoAP server (text/plain, short Max-Age), on a port it can
    restart on."""
    return await start_coap_sim(parcel_locker(), max_age=2, port=restartable_udp_port())


@pytest.fixture
async def locker_hub(hass: HomeAssistant, locker: CoapDeviceSimulator) -> MockConfigEntry:
    """A loaded entry for the locker, its values read."""
    entry = await _hub(hass, locker)
    # Every value read and every observation in place, not only the first: on a busy machine
    # they arrive one by one.
    await wait_for(
        lambda: (
            _state(hass, LOCK_2) == LockState.LOCKED
            and _state(hass, TEMPERATURE) == "21.5"
            and locker.observers() == 7
        ),
        what="locker entities, values and observations",
    )
    return entry


def _bridge(entry: MockConfigEntry) -> CoapBridge:
    bridge = entry.runtime_data.bridge
    assert isinstance(bridge, CoapBridge)
    return bridge


async def _open(hass: HomeAssistant, entity_id: str = LOCK_2) -> None:
    await hass.services.async_call(LOCK_DOMAIN, "open", {ATTR_ENTITY_ID: entity_id}, blocking=True)


# Entities ---------------------------------------------------------------------------------


async def test_entities_from_the_description(
    hass: HomeAssistant,
    locker_hub: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    """/.well-known/core and /oic/d become a device with one entity per resource."""
    device = registry_device(hass, ENTRY_ID, "locker1")
    assert device is not None
    assert (device.name, device.manufacturer, device.model, device.sw_version) == (
        "Parcel locker",
        "IoT Bridge demo",
        "PL-3",
        "1.0.0",
    )
    entities = sorted(
        er.async_entries_for_config_entry(entity_registry, ENTRY_ID), key=lambda e: e.entity_id
    )
    view = [
        {
            "entity_id": e.entity_id,
            "unique_id": e.unique_id,
            "original_name": e.original_name,
            "original_device_class": e.original_device_class,
            "unit": e.unit_of_measurement,
            "entity_category": e.entity_category,
            "disabled_by": e.disabled_by,
            "state": _state(hass, e.entity_id),
        }
        for e in entities
    ]
    assert view == snapshot
    assert _state(hass, TEMPERATURE) == "21.5"


async def test_observed_values_update_entities(
    hass: HomeAssistant, locker: CoapDeviceSimulator, locker_hub: MockConfigEntry
) -> None:
    """A value the device changes arrives by Observe, without polling."""
    await hass.async_add_executor_job(locker.publish_state, {"temperature": 23.25, "door2": True})
    await wait_for(lambda: _state(hass, TEMPERATURE) == "23.25", what="temperature notification")
    await wait_for(lambda: _state(hass, DOOR_2) == STATE_ON)
    assert locker.observers() == 7
    assert _bridge(locker_hub).diagnostics()["polls"]["count"] == 0


async def test_unobservable_resources_are_polled(
    hass: HomeAssistant, start_coap_sim: StartSim
) -> None:
    """Resources without `obs` are read at the poll interval (an option)."""
    model = DeviceModel(
        device_id="meter1",
        name="Meter",
        capabilities=[{"kind": "sensor", "key": "power", "device_class": "carbon_dioxide"}],
        state={"power": 400},
    )
    sim = await start_coap_sim(model)
    for resource in sim._resources.values():  # this device does not offer Observe
        resource.get_link_description = _without_obs(resource.get_link_description)
    entry = await _hub(hass, sim, poll_interval=1.0)
    entity = "sensor.meter_carbon_dioxide"
    await wait_for(
        lambda: _state(hass, entity) == "400",
        what=lambda: (_state(hass, entity), _bridge(entry).diagnostics()),
    )
    await hass.async_add_executor_job(sim.publish_state, {"power": 415})
    await wait_for(lambda: _state(hass, entity) == "415", timeout=4, what="the next poll")
    diagnostics = _bridge(entry).diagnostics()
    assert diagnostics["resources"][0]["follow"] == "poll"
    assert sim.observers() == 0


def _without_obs(describe: Any) -> Any:
    def link() -> dict[str, Any]:
        description = dict(describe())
        description.pop("obs", None)
        return dict(description)

    return link


async def test_sensor_node_over_cbor(hass: HomeAssistant, start_coap_sim: StartSim) -> None:
    """A CBOR device: sensors, a confirmed switch and a settable temperature (number)."""
    sim = await start_coap_sim(climate_node(), content_format="cbor")
    await _hub(hass, sim)
    await wait_for(lambda: _state(hass, "sensor.climate_node_humidity") == "45.0")
    await wait_for(lambda: _state(hass, "number.climate_node_setpoint") == "21.0")
    await hass.services.async_call(
        "switch", "turn_on", {ATTR_ENTITY_ID: "switch.climate_node_relay"}, blocking=True
    )
    assert _state(hass, "switch.climate_node_relay") == STATE_ON
    await hass.services.async_call(
        "number",
        "set_value",
        {ATTR_ENTITY_ID: "number.climate_node_setpoint", "value": 22.5},
        blocking=True,
    )
    assert _state(hass, "number.climate_node_setpoint") == "22.5"
    with pytest.raises(HomeAssistantError, match=r"outside 5\.\.30 \(4\.00 Bad Request\)"):
        await hass.services.async_call(
            "number",
            "set_value",
            {ATTR_ENTITY_ID: "number.climate_node_setpoint", "value": 40},
            blocking=True,
        )
    assert sim.model.state["setpoint"] == 22.5
    assert [
        request.query.get("id") is not None for request in sim.received if request.method == "PUT"
    ] == [True] * 3


# Confirmed commands ---------------------------------------------------------------------------


async def test_confirmed_open(
    hass: HomeAssistant, locker: CoapDeviceSimulator, locker_hub: MockConfigEntry
) -> None:
    """lock.open shows opening, then open only on the device's 2.04; the door follows."""
    states = _record_states(hass, LOCK_2)
    events = record_command_events(hass)
    await _open(hass)
    assert states[:2] == [LockState.OPENING, LockState.OPEN]
    await wait_for(lambda: _state(hass, DOOR_2) == STATE_ON, what="door notification")
    assert events[0]["outcome"] == "confirmed"
    assert events[0]["attempts"] == 1
    put = [r for r in locker.received if r.method == "PUT"]
    assert len(put) == 1
    assert put[0].path == "/door2_lock"
    assert put[0].payload == b"open"
    assert put[0].query["id"] == events[0]["command_id"]
    assert float(put[0].query["dl"]) == pytest.approx(time.time() + 2, abs=1.5)
    assert locker.executed == [events[0]["command_id"]]


async def test_unlock_and_lock_show_their_transitions(
    hass: HomeAssistant, locker: CoapDeviceSimulator, locker_hub: MockConfigEntry
) -> None:
    """unlock shows unlocking, lock shows locking; each new state only on the device's answer."""
    states = _record_states(hass, LOCK_2)
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
    assert [r.payload for r in locker.received if r.method == "PUT"] == [
        b"unlocked",
        b"locked",
    ]
    assert locker.model.state["door2_lock"] == "locked"


async def test_send_command_response(
    hass: HomeAssistant, locker: CoapDeviceSimulator, locker_hub: MockConfigEntry
) -> None:
    """iot_bridge.send_command works for CoAP devices and returns the outcome."""
    device = registry_device(hass, ENTRY_ID, "locker1")
    assert device is not None
    response = await hass.services.async_call(
        DOMAIN,
        "send_command",
        {"device_id": device.id, "capability": "door1_lock", "action": "unlock"},
        blocking=True,
        return_response=True,
    )
    assert response is not None
    assert response["status"] == "confirmed"
    assert response["state"] == {"door1_lock": "unlocked"}
    assert _state(hass, "lock.parcel_locker_door_1") == LockState.UNLOCKED


async def test_send_command_without_capability_is_refused_clearly(
    hass: HomeAssistant, locker: CoapDeviceSimulator, locker_hub: MockConfigEntry
) -> None:
    """Path-addressed operations are LwM2M's: a CoAP device refuses them before sending."""
    device = registry_device(hass, ENTRY_ID, "locker1")
    assert device is not None
    sent = len(locker.received)
    with pytest.raises(ServiceValidationError, match="no path-addressed operations") as err:
        await hass.services.async_call(
            DOMAIN,
            "send_command",
            {"device_id": device.id, "action": "read", "params": {"path": "/3/0/0"}},
            blocking=True,
            return_response=True,
        )
    assert err.value.translation_key == "operations_not_supported"
    assert len(locker.received) == sent


async def test_refused(
    hass: HomeAssistant, locker: CoapDeviceSimulator, locker_hub: MockConfigEntry
) -> None:
    """4.03 with a diagnostic payload: rejected, the reason shown, the lock unchanged."""
    locker.behaviour = Behaviour(refuse="door blocked")
    events = record_command_events(hass)
    with pytest.raises(HomeAssistantError, match=r"door blocked \(4\.03 Forbidden\)"):
        await _open(hass)
    assert _state(hass, LOCK_2) == LockState.LOCKED
    assert events[0]["outcome"] == "rejected"
    assert locker.executed == []
    # Automations and the logbook see a CoAP refusal as they see any other.
    assert describe_outcome(events[0]) == "Door 2 open: refused — door blocked (4.03 Forbidden)"
    device = registry_device(hass, locker_hub.entry_id, "locker1")
    assert device is not None
    assert events[0]["device_id"] == device.id
    triggers = await async_get_device_automations(hass, DeviceAutomationType.TRIGGER, device.id)
    assert {t["type"] for t in triggers if t["domain"] == DOMAIN} == {
        "command_confirmed",
        "command_rejected",
        "command_timeout",
        "command_not_delivered",
    }


async def test_jammed_reports_the_state(
    hass: HomeAssistant, locker: CoapDeviceSimulator, locker_hub: MockConfigEntry
) -> None:
    """A jammed lock refuses with 5.00 and its notification shows jammed."""
    locker.behaviour = Behaviour(jam={"door2_lock"})
    with pytest.raises(HomeAssistantError, match=r"jammed \(5\.00 Internal Server Error\)"):
        await _open(hass)
    await hass.async_add_executor_job(locker.publish_state, {})
    await wait_for(lambda: _state(hass, LOCK_2) == LockState.JAMMED, what="jammed notification")


async def test_silent_device_times_out_and_retries_act_once(
    hass: HomeAssistant, locker: CoapDeviceSimulator, locker_hub: MockConfigEntry
) -> None:
    """ACKed but never answered: each retry is a new request with the same id, done once."""
    locker.behaviour = Behaviour(silent=True)
    events = record_command_events(hass)
    started = time.monotonic()
    with pytest.raises(HomeAssistantError, match="did not confirm"):
        await _open(hass)
    assert 1.9 < time.monotonic() - started < 2.6
    assert events[0]["outcome"] == "timeout"
    assert events[0]["attempts"] == 3
    puts = [r for r in locker.received if r.method == "PUT"]
    assert len(puts) == 3
    assert len({r.mid for r in puts}) == 3  # three CoAP requests ...
    assert {r.query["id"] for r in puts} == {events[0]["command_id"]}  # ... one command
    assert locker.executed == [events[0]["command_id"]]
    # Not confirmed, but the device did open and says so through its notification.
    await wait_for(lambda: _state(hass, LOCK_2) == LockState.OPEN)


async def test_late_answer_is_ignored(
    hass: HomeAssistant, locker: CoapDeviceSimulator, locker_hub: MockConfigEntry
) -> None:
    """An answer after the deadline does not confirm anything."""
    locker.behaviour = Behaviour(answer_delay=3.0)
    events = record_command_events(hass)
    with pytest.raises(HomeAssistantError, match="did not confirm"):
        await _open(hass)
    assert events[0]["outcome"] == "timeout"
    engine = locker_hub.runtime_data.engine
    assert engine.stats["confirmed"] == 0
    # The device acted on the first attempt; the retries that followed (same id) did not
    # make it act again.
    assert locker.executed == [events[0]["command_id"]]
    assert len([r for r in locker.received if r.method == "PUT"]) >= 2


async def test_separate_response_confirms(hass: HomeAssistant, start_coap_sim: StartSim) -> None:
    """Empty ACK first (delivered), the response later is the outcome."""
    sim = await start_coap_sim(parcel_locker(), separate_response=True)
    entry = await _hub(hass, sim)
    await wait_for(lambda: _state(hass, LOCK_2) == LockState.LOCKED)
    bridge = _bridge(entry)
    engine = entry.runtime_data.engine
    command = engine.new_command("locker1", "door2_lock", "open", deadline=2.0)
    started = time.monotonic()
    await bridge.send_command(command, attempt=1, expires_in=2.0)
    acknowledged = time.monotonic() - started
    assert acknowledged < 0.25  # the empty ACK (~0.1 s), not the response (0.3 s)
    await _open(hass)
    assert _state(hass, LOCK_2) == LockState.OPEN


async def test_lost_request_is_retransmitted_and_done_once(
    hass: HomeAssistant, locker: CoapDeviceSimulator, locker_hub: MockConfigEntry
) -> None:
    """The first datagram is lost: CoAP sends the same message again; the door opens once."""
    locker.behaviour = Behaviour(drop_first=1)
    events = record_command_events(hass)
    await _open(hass)
    assert _state(hass, LOCK_2) == LockState.OPEN
    puts = [r for r in locker.received if r.method == "PUT"]
    assert [r.dropped for r in puts] == [True, False]
    assert puts[0].mid == puts[1].mid  # a retransmission, not a new request
    assert events[0]["attempts"] == 1
    assert len(locker.executed) == 1


async def test_duplicate_datagram_gets_the_same_answer(locker: CoapDeviceSimulator) -> None:
    """A device built to the profile answers a duplicated request again without acting."""
    from aiocoap import Message
    from aiocoap.numbers.codes import Code
    from aiocoap.numbers.types import CON

    from .coap_peers import _socket

    request = Message(code=Code.PUT, uri_path=("door1_lock",), payload=b"open")
    request.opt.uri_query = ("id=dup-1", f"dl={time.time() + 5:.3f}")
    request.mtype, request.mid, request.token = CON, 4242, b"\x01\x02"
    with _socket(__import__("socket").AF_INET, __import__("socket").SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(request.encode(), ("127.0.0.1", locker.port))
        first = Message.decode(sock.recv(1500))
        sock.sendto(request.encode(), ("127.0.0.1", locker.port))
        second = Message.decode(sock.recv(1500))
    assert first.code == second.code == Code.CHANGED
    assert first.payload == second.payload == b"open"
    assert locker.executed == ["dup-1"]


async def test_expired_command_is_refused(locker: CoapDeviceSimulator) -> None:
    """A request whose deadline has passed is not carried out (4.12 'expired')."""
    from aiocoap import Message
    from aiocoap.numbers.codes import Code
    from aiocoap.numbers.types import CON

    from .coap_peers import _socket

    request = Message(code=Code.PUT, uri_path=("door1_lock",), payload=b"open")
    request.opt.uri_query = ("id=late-1", f"dl={time.time() - 1:.3f}")
    request.mtype, request.mid, request.token = CON, 4343, b"\x03"
    with _socket(__import__("socket").AF_INET, __import__("socket").SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(request.encode(), ("127.0.0.1", locker.port))
        answer = Message.decode(sock.recv(1500))
    assert answer.code == Code.PRECONDITION_FAILED
    assert answer.payload == b"expired"
    assert locker.executed == []


# Reachability, restarts, bad input -------------------------------------------------------------


async def test_unreachable_then_recovers(
    hass: HomeAssistant,
    locker: CoapDeviceSimulator,
    locker_hub: MockConfigEntry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Device gone: unavailable (one warning), commands refused; back: available (one line)."""
    caplog.set_level(logging.INFO)
    await hass.async_add_executor_job(locker.stop)
    await wait_for(lambda: _state(hass, CONNECTIVITY) == STATE_OFF, timeout=15, what="offline")
    assert _state(hass, TEMPERATURE) == "unavailable"
    with pytest.raises(HomeAssistantError, match="is offline"):
        await _open(hass)
    await asyncio.sleep(2)  # several failed attempts in between
    await hass.async_add_executor_job(locker.start)
    await wait_for(lambda: _state(hass, CONNECTIVITY) == STATE_ON, timeout=15, what="back")
    await wait_for(lambda: locker.observers() == 7, timeout=15, what="observations back")
    await hass.async_add_executor_job(locker.publish_state, {"temperature": 18.0})
    await wait_for(lambda: _state(hass, TEMPERATURE) == "18.0")
    lost = [r for r in caplog.records if r.getMessage().startswith("Lost CoAP device")]
    back = [r for r in caplog.records if r.getMessage().endswith("answers again")]
    assert len(lost) == 1
    assert lost[0].levelno == logging.WARNING
    assert len(back) == 1
    await _open(hass)
    assert _state(hass, LOCK_2) == LockState.OPEN


async def test_restart_brings_observations_back(
    hass: HomeAssistant, locker: CoapDeviceSimulator, locker_hub: MockConfigEntry
) -> None:
    """A device that restarts forgets its observers; notifications stopping past Max-Age
    makes IoT Bridge register again, without any request failing in between."""
    locker.max_age = 1
    await hass.async_add_executor_job(locker.stop)
    await hass.async_add_executor_job(locker.start)
    assert locker.observers() == 0
    await wait_for(lambda: locker.observers() == 7, timeout=15, what="re-registration")
    await hass.async_add_executor_job(locker.publish_state, {"temperature": 19.5})
    await wait_for(lambda: _state(hass, TEMPERATURE) == "19.5")
    stale = [r["stale"] for r in _bridge(locker_hub).diagnostics()["resources"]]
    assert all(count >= 1 for count in stale)


async def test_malformed_payload_logged_once(
    hass: HomeAssistant,
    start_coap_sim: StartSim,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A payload that cannot be read is logged once and dropped; good ones still apply."""
    sim = await start_coap_sim(climate_node(), content_format="json")
    await _hub(hass, sim)
    humidity = "sensor.climate_node_humidity"
    await wait_for(lambda: _state(hass, humidity) == "45.0")
    resource = sim._resources["humidity"]
    resource.representation = _broken(resource.representation)
    for value in (46.0, 47.0, 48.0):
        await hass.async_add_executor_job(sim.publish_state, {"humidity": value})
        await asyncio.sleep(0.2)
    await hass.async_add_executor_job(sim.publish_state, {"temperature": 25.5})
    await wait_for(lambda: _state(hass, "sensor.climate_node_temperature") == "25.5")
    dropped = [
        r
        for r in caplog.records
        if "Dropped payload of /humidity" in r.getMessage() and r.levelno >= logging.WARNING
    ]
    assert len(dropped) == 1
    assert "not valid JSON" in dropped[0].getMessage()
    assert _state(hass, humidity) == "45.0"


def _broken(representation: Any) -> Any:
    def broken(*args: Any, **kwargs: Any) -> Any:
        message = representation(*args, **kwargs)
        message.payload = b'{"humidity": 4'
        return message

    return broken


async def test_unload_cancels_observations_on_the_wire(
    hass: HomeAssistant, locker: CoapDeviceSimulator, locker_hub: MockConfigEntry
) -> None:
    """Unload sends GET Observe=1 for every registration and leaves nothing running."""
    bridge = _bridge(locker_hub)
    assert locker.observers() == 7
    assert await hass.config_entries.async_unload(locker_hub.entry_id)
    await hass.async_block_till_done()
    assert locker_hub.state is ConfigEntryState.NOT_LOADED
    await wait_for(lambda: locker.observers() == 0, what="observers gone on the device")
    cancels = [r for r in locker.received if r.observe == 1]
    assert sorted(r.path for r in cancels) == sorted(
        f"/{key}" for key in bridge.description.resources
    )
    assert not bridge.endpoint.started
    assert not bridge._tasks
    # The test plugin also fails the test on lingering tasks, timers or threads.


async def test_other_device_at_the_address_is_refused(
    hass: HomeAssistant, start_coap_sim: StartSim
) -> None:
    """The entry is for locker1: another device answering there is not taken for it."""
    sim = await start_coap_sim(parcel_locker("locker9"))
    entry = coap_entry(sim.port, "locker1")
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_RETRY
    assert "is device 'locker9', not 'locker1'" in (entry.reason or "")


async def test_diagnostics(
    hass: HomeAssistant, locker_hub: MockConfigEntry, hass_client: ClientSessionGenerator
) -> None:
    """Diagnostics show the address, how each resource is followed, and command stats."""
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, locker_hub)
    bridge = diagnostics["bridge"]
    assert bridge["device"]["reachable"] is True
    assert {r["follow"] for r in bridge["resources"]} == {"observe"}
    assert {r["rt"] for r in bridge["resources"]} == {
        "oic.r.lock.status",
        "oic.r.door",
        "oic.r.temperature",
    }
    assert diagnostics["devices"]["locker1"]["available"] is True
    assert bridge["device"]["host"] == "**REDACTED**"

    # The device's own download: its resources and which of them are observed.
    device = registry_device(hass, locker_hub.entry_id, "locker1")
    assert device is not None
    device_diagnostics = await get_diagnostics_for_device(hass, hass_client, locker_hub, device)
    resources = device_diagnostics["protocol"]["resources"]
    assert {r["follow"] for r in resources} == {"observe"}
    assert device_diagnostics["protocol"]["device"]["host"] == "**REDACTED**"
    assert device_diagnostics["command_health"]["commands_24h"] == 0


async def test_older_notification_does_not_undo_a_confirmation(
    hass: HomeAssistant, start_coap_sim: StartSim
) -> None:
    """A notification sent before a command can arrive after its response (confirmable
    ones queue on the device behind unacknowledged ones; this one lags 0.2 s): it must not
    show the old state after the confirmed one."""
    sim = await start_coap_sim(parcel_locker(), notification_delay=0.2)
    entry = await _hub(hass, sim)
    await wait_for(lambda: _state(hass, LOCK_2) == LockState.LOCKED)
    states = _record_states(hass, LOCK_2)
    for _ in range(3):
        for action in ("open", "lock"):
            await hass.services.async_call(
                LOCK_DOMAIN, action, {ATTR_ENTITY_ID: LOCK_2}, blocking=True
            )
    await asyncio.sleep(1)  # let every notification in flight arrive
    transitions = set(itertools.pairwise(states))
    assert (LockState.LOCKED, LockState.OPEN) not in transitions, states
    assert (LockState.OPEN, LockState.LOCKED) not in transitions, states
    assert states[-1] == LockState.LOCKED
    assert _bridge(entry).diagnostics()["notifications_held_after_commands"] >= 6


async def test_change_right_after_a_confirmation_still_shows(
    hass: HomeAssistant, locker: CoapDeviceSimulator, locker_hub: MockConfigEntry
) -> None:
    """A device that re-locks itself just after opening: the held-back notification
    differs from the confirmed value, so the resource is read again and shows it."""
    await _open(hass)
    assert _state(hass, LOCK_2) == LockState.OPEN
    await hass.async_add_executor_job(locker.publish_state, {"door2_lock": "locked"})
    await wait_for(lambda: _state(hass, LOCK_2) == LockState.LOCKED, what="the re-lock")
    gets = [r for r in locker.received if r.method == "GET" and r.path == "/door2_lock"]
    assert [r.observe for r in gets][-1] is None  # the re-read, not a registration
    assert _bridge(locker_hub).diagnostics()["notifications_held_after_commands"] >= 1


async def test_another_device_at_the_address_is_not_taken_for_it(
    hass: HomeAssistant,
    start_coap_sim: StartSim,
    locker: CoapDeviceSimulator,
    locker_hub: MockConfigEntry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The locker goes away and another device gets its address: the locker's entities go
    offline (one warning) and show nothing of the other device; when it is back, so are they."""
    await hass.async_add_executor_job(locker.stop)
    other_model = parcel_locker("locker9")
    other_model.state["temperature"] = 99.0
    other = await start_coap_sim(other_model, port=locker.port)
    await wait_for(lambda: _state(hass, CONNECTIVITY) == STATE_OFF, timeout=15, what="offline")
    await asyncio.sleep(2.5)  # a few poll cycles with the other device answering
    assert _state(hass, CONNECTIVITY) == STATE_OFF
    assert _bridge(locker_hub).diagnostics()["device"]["wrong_device"] is not None
    warnings = [r for r in caplog.records if "is device 'locker9'" in r.getMessage()]
    assert len(warnings) == 1
    await hass.async_add_executor_job(other.stop)
    await hass.async_add_executor_job(locker.start)
    await wait_for(lambda: _state(hass, CONNECTIVITY) == STATE_ON, timeout=15, what="back")
    await wait_for(lambda: _state(hass, TEMPERATURE) == "21.5", what="its value back")


async def test_bad_description_after_restart_is_logged_once(
    hass: HomeAssistant,
    locker: CoapDeviceSimulator,
    locker_hub: MockConfigEntry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A device that comes back with a /.well-known/core IoT Bridge cannot read keeps its
    entities (as described before) and gets one warning, not one per attempt."""
    await hass.async_add_executor_job(locker.stop)
    await wait_for(lambda: _state(hass, CONNECTIVITY) == STATE_OFF, timeout=15, what="offline")
    locker.describe_badly = True
    await hass.async_add_executor_job(locker.start)
    await wait_for(lambda: _state(hass, CONNECTIVITY) == STATE_ON, timeout=15, what="back")
    bridge = _bridge(locker_hub)
    for _ in range(2):  # more re-reads of the description
        await bridge._refresh_description()
    warnings = [
        r
        for r in caplog.records
        if "describes itself badly" in r.getMessage() and r.levelno >= logging.WARNING
    ]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    await _open(hass)
    assert _state(hass, LOCK_2) == LockState.OPEN


async def test_deleted_device_is_no_longer_followed(
    hass: HomeAssistant,
    locker: CoapDeviceSimulator,
    locker_hub: MockConfigEntry,
    hass_ws_client: Any,
) -> None:
    """Deleting the device in the UI ends its observations on the device and its entities."""
    assert await async_setup_component(hass, "config", {})
    device = registry_device(hass, ENTRY_ID, "locker1")
    assert device is not None
    client = await hass_ws_client(hass)
    response = await remove_device(client, device.id, locker_hub.entry_id)
    assert response["success"]
    await wait_for(lambda: locker.observers() == 0, what="observations cancelled")
    assert "locker1" not in _bridge(locker_hub).devices
    assert registry_device(hass, ENTRY_ID, "locker1") is None
    assert not er.async_entries_for_config_entry(er.async_get(hass), locker_hub.entry_id)
