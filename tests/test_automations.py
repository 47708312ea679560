"""Device triggers and logbook lines for command outcomes, against a real broker and device."""

from __future__ import annotations

import re
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from homeassistant.components import automation
from homeassistant.components.device_automation import DeviceAutomationType
from homeassistant.components.lock import DOMAIN as LOCK_DOMAIN
from homeassistant.const import ATTR_ENTITY_ID, STATE_UNKNOWN, EntityCategory
from homeassistant.core import HomeAssistant, State
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_capture_events,
    async_get_device_automations,
)
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
    get_diagnostics_for_device,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator, WebSocketGenerator

from custom_components.iot_bridge import logbook
from custom_components.iot_bridge.const import CONF_DEADLINE, CONF_RETRIES, DOMAIN, EVENT_COMMAND
from custom_components.iot_bridge.hub import IotBridgeHub
from iot_bridge_sim.behaviour import Behaviour
from iot_bridge_sim.devices import parcel_locker

from .common import mqtt_entry, record_command_events, registry_device, setup_entry, wait_for
from .mosquitto import Broker
from .mqtt_peers import StartSim, prefix, start_sim

__all__ = ["prefix", "start_sim"]  # the fixtures, imported for pytest

pytestmark = pytest.mark.usefixtures("socket_enabled")

LOCK_1 = "lock.parcel_locker_door_1"
LOCK_2 = "lock.parcel_locker_door_2"
TRIGGER_TYPES = {
    "command_confirmed",
    "command_rejected",
    "command_timeout",
    "command_not_delivered",
}


@pytest.fixture
async def locker_hub(
    hass: HomeAssistant, mqtt_broker: Broker, prefix: str, start_sim: StartSim
) -> tuple[MockConfigEntry, Behaviour]:
    """A hub with the parcel locker (whose behaviour the test may change)."""
    entry = mqtt_entry(mqtt_broker, options={CONF_DEADLINE: 0.6, CONF_RETRIES: 2}, prefix=prefix)
    await setup_entry(hass, entry)
    behaviour = Behaviour()
    await start_sim(parcel_locker(), behaviour=behaviour)
    await wait_for(lambda: hass.states.get(LOCK_2) is not None, what="the locker's door 2")
    return entry, behaviour


def _locker_device_id(hass: HomeAssistant, entry: MockConfigEntry) -> str:
    device = registry_device(hass, entry.entry_id, "locker1")
    assert device is not None
    return device.id


async def _unlock(hass: HomeAssistant, entity_id: str) -> None:
    await hass.services.async_call(
        LOCK_DOMAIN, "unlock", {ATTR_ENTITY_ID: entity_id}, blocking=True
    )


async def test_every_device_offers_the_four_outcomes(
    hass: HomeAssistant,
    hass_ws_client: WebSocketGenerator,
    locker_hub: tuple[MockConfigEntry, Behaviour],
) -> None:
    """The automation editor lists four triggers, narrowable to a capability and action."""
    device_id = _locker_device_id(hass, locker_hub[0])
    triggers = await async_get_device_automations(hass, DeviceAutomationType.TRIGGER, device_id)
    ours = [trigger for trigger in triggers if trigger["domain"] == DOMAIN]
    assert {trigger["type"] for trigger in ours} == TRIGGER_TYPES
    assert all(trigger["device_id"] == device_id for trigger in ours)

    # What the editor asks for when the user picks a trigger.
    assert await async_setup_component(hass, "device_automation", {})
    client = await hass_ws_client(hass)
    trigger = {key: ours[0][key] for key in ("platform", "domain", "device_id", "type")}
    await client.send_json_auto_id(
        {"type": "device_automation/trigger/capabilities", "trigger": trigger}
    )
    response = await client.receive_json()
    assert response["success"], response
    fields = {field["name"]: field for field in response["result"]["extra_fields"]}
    assert fields["capability"]["optional"] is True
    # Only capabilities that take commands: the three doors, not the temperature sensor.
    assert [option[0] for option in fields["capability"]["options"]] == [
        "door1_lock",
        "door2_lock",
        "door3_lock",
    ]
    assert [option[0] for option in fields["action"]["options"]] == ["lock", "open", "unlock"]


async def _automation(
    hass: HomeAssistant, device_id: str, trigger_type: str, **narrow: str
) -> list[Any]:
    """An automation on one of our device triggers; returns the events its action fires."""
    fired = async_capture_events(hass, "outcome_seen")
    assert await async_setup_component(
        hass,
        automation.DOMAIN,
        {
            automation.DOMAIN: {
                "alias": trigger_type,
                "triggers": {
                    "platform": "device",
                    "domain": DOMAIN,
                    "device_id": device_id,
                    "type": trigger_type,
                    **narrow,
                },
                "actions": {
                    "event": "outcome_seen",
                    "event_data": {
                        "capability": "{{ trigger.event.data.capability }}",
                        "reason": "{{ trigger.event.data.reason }}",
                        "latency_ms": "{{ trigger.event.data.latency_ms }}",
                        "attempts": "{{ trigger.event.data.attempts }}",
                    },
                },
            }
        },
    )
    return fired


async def test_rejected_trigger_fires_with_the_reason(
    hass: HomeAssistant, locker_hub: tuple[MockConfigEntry, Behaviour]
) -> None:
    """A real refusal from the device runs the automation, which sees reason and attempts."""
    entry, behaviour = locker_hub
    fired = await _automation(
        hass,
        _locker_device_id(hass, entry),
        "command_rejected",
        capability="door2_lock",
        action="unlock",
    )
    await _unlock(hass, LOCK_1)  # confirmed, and another door: no run
    behaviour.refuse = "door blocked"
    with pytest.raises(HomeAssistantError):
        await _unlock(hass, LOCK_1)  # refused, but another door: no run
    with pytest.raises(HomeAssistantError):
        await _unlock(hass, LOCK_2)
    await wait_for(lambda: len(fired) >= 1, what="the automation's run")
    await hass.async_block_till_done()
    assert len(fired) == 1
    data = fired[0].data
    assert data["capability"] == "door2_lock"
    assert data["reason"] == "door blocked"
    assert data["attempts"] == 1
    assert data["latency_ms"] > 0


async def test_timeout_trigger_fires_after_every_attempt(
    hass: HomeAssistant, locker_hub: tuple[MockConfigEntry, Behaviour]
) -> None:
    """A device that never answers runs the time-out automation once, after all attempts."""
    entry, behaviour = locker_hub
    device_id = _locker_device_id(hass, entry)
    fired = await _automation(hass, device_id, "command_timeout")
    behaviour.silent = True
    with pytest.raises(HomeAssistantError):
        await _unlock(hass, LOCK_2)
    await wait_for(lambda: len(fired) >= 1, what="the automation's run")
    assert fired[0].data["attempts"] == 3
    assert fired[0].data["latency_ms"] >= 600


async def test_logbook_lines_on_the_device(
    hass: HomeAssistant, locker_hub: tuple[MockConfigEntry, Behaviour]
) -> None:
    """Each real outcome becomes one readable line, filed under the locker's device."""
    entry, behaviour = locker_hub
    events = record_command_events(hass)
    await _unlock(hass, LOCK_2)
    behaviour.refuse = "door blocked"
    with pytest.raises(HomeAssistantError):
        await _unlock(hass, LOCK_2)
    behaviour.refuse = None
    behaviour.silent = True
    with pytest.raises(HomeAssistantError):
        await _unlock(hass, LOCK_2)

    # The logbook's path: our platform registers a describer for the event type, and the
    # logbook calls it with each recorded event (an object with the event's data).
    describers: dict[str, tuple[str, Callable[[Any], dict[str, str]]]] = {}
    logbook.async_describe_events(
        hass,
        lambda domain, event_type, describe: describers.update({event_type: (domain, describe)}),
    )
    domain, describe = describers[EVENT_COMMAND]
    assert domain == DOMAIN
    lines = [describe(SimpleNamespace(data=data)) for data in events]
    assert all(line["name"] == "Parcel locker" for line in lines)
    confirmed, refused, timed_out = (line["message"] for line in lines)
    assert re.fullmatch(r"Door 2 unlock: confirmed in [\d.]+ ms", confirmed), confirmed
    assert refused == "Door 2 unlock: refused — door blocked"
    assert timed_out == "Door 2 unlock: no answer within 0.6 s after 3 attempts"
    # The logbook files an event under the device its data names.
    assert {data["device_id"] for data in events} == {_locker_device_id(hass, entry)}


def test_logbook_wording_of_the_other_outcomes() -> None:
    """Not delivered, optimistic sends and one attempt read naturally too."""
    base = {"capability_name": "Door 2", "action": "open"}
    assert (
        logbook.describe_outcome(base | {"outcome": "not_delivered", "reason": "device offline"})
        == "Door 2 open: not delivered — device offline"
    )
    assert (
        logbook.describe_outcome(base | {"outcome": "timeout", "deadline_s": 10.0, "attempts": 1})
        == "Door 2 open: no answer within 10 s after 1 attempt"
    )
    assert (
        logbook.describe_outcome(base | {"outcome": "confirmed", "latency_ms": 43.4})
        == "Door 2 open: confirmed in 43 ms"
    )
    assert logbook.describe_outcome(base | {"outcome": "delivered"}).startswith("Door 2 open: sent")
    operation = {"capability": None, "capability_name": None, "path": "/3/0/4"}
    assert (
        logbook.describe_outcome(
            operation | {"action": "execute", "outcome": "rejected", "reason": "4.05"}
        )
        == "/3/0/4 execute: refused — 4.05"
    )


async def test_command_health_sensors(
    hass: HomeAssistant, locker_hub: tuple[MockConfigEntry, Behaviour]
) -> None:
    """Four diagnostic sensors, off by default, follow the device's real outcomes."""
    entry, behaviour = locker_hub
    registry = er.async_get(hass)
    keys = (
        "commands_24h",
        "command_success_rate",
        "command_median_latency",
        "last_command_failure",
    )
    entity_ids = {}
    for key in keys:
        entity_id = registry.async_get_entity_id(
            "sensor", DOMAIN, f"{entry.entry_id}_locker1:{key}"
        )
        assert entity_id is not None, key
        registry_entry = registry.async_get(entity_id)
        assert registry_entry is not None
        assert registry_entry.disabled_by is er.RegistryEntryDisabler.INTEGRATION
        assert registry_entry.entity_category is EntityCategory.DIAGNOSTIC
        registry.async_update_entity(entity_id, disabled_by=None)
        entity_ids[key] = entity_id
    assert await hass.config_entries.async_reload(entry.entry_id)
    await wait_for(lambda: hass.states.get(LOCK_2) is not None, what="the locker again")
    assert hass.states.get(entity_ids["commands_24h"]).state == "0"
    assert hass.states.get(entity_ids["command_success_rate"]).state == STATE_UNKNOWN

    await _unlock(hass, LOCK_2)
    behaviour.refuse = "door blocked"
    with pytest.raises(HomeAssistantError):
        await _unlock(hass, LOCK_1)

    def state(key: str) -> State:
        current = hass.states.get(entity_ids[key])
        assert current is not None
        return current

    assert state("commands_24h").state == "2"
    assert float(state("command_success_rate").state) == 50.0
    assert state("command_success_rate").attributes["unit_of_measurement"] == "%"
    assert float(state("command_median_latency").state) > 0
    failure = state("last_command_failure")
    assert dt_util.parse_datetime(failure.state) is not None
    assert failure.attributes["reason"] == "door blocked"
    assert failure.attributes["outcome"] == "rejected"
    assert failure.attributes["capability"] == "door1_lock"


async def test_device_and_hub_diagnostics(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    locker_hub: tuple[MockConfigEntry, Behaviour],
) -> None:
    """A device's download: recent outcomes, topics with QoS; hub: stray answer counters."""
    entry, behaviour = locker_hub
    await _unlock(hass, LOCK_2)
    behaviour.refuse = "door blocked"
    with pytest.raises(HomeAssistantError):
        await _unlock(hass, LOCK_1)
    # An answer after the deadline: the engine counts it as late and drops it.
    behaviour.refuse = None
    behaviour.answer_delay = 0.9
    with pytest.raises(HomeAssistantError):
        await _unlock(hass, LOCK_1)
    hub: IotBridgeHub = entry.runtime_data
    await wait_for(lambda: hub.engine.stats["late"] >= 1, what="the late answer")

    device = registry_device(hass, entry.entry_id, "locker1")
    assert device is not None
    diagnostics = await get_diagnostics_for_device(hass, hass_client, entry, device)
    assert diagnostics["device"]["name"] == "Parcel locker"
    recent = diagnostics["command_health"]["recent"]
    assert [(o["capability"], o["outcome"], o["reason"]) for o in recent] == [
        ("door2_lock", "confirmed", None),
        ("door1_lock", "rejected", "door blocked"),
        ("door1_lock", "timeout", "no answer within 0.6 s"),
    ]
    assert diagnostics["command_health"]["commands_24h"] == 3
    topics = diagnostics["protocol"]["topics"]
    prefix = entry.data["discovery_prefix"]
    assert topics["command"] == {
        "topic": f"{prefix}/locker1/command",
        "qos": 1,
        "response_topic": f"{prefix}/_bridge/{entry.data['client_id']}/reply",
    }
    assert topics["state"] == {"topic": f"{prefix}/locker1/state", "qos": 1}

    hub_diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    stats = hub_diagnostics["commands"]["stats"]
    assert stats["late"] >= 1
    assert {"duplicate", "foreign"} <= set(stats)
    assert hub_diagnostics["entry"]["data"]["host"] == "**REDACTED**"
    assert "127.0.0.1" not in str(hub_diagnostics)
