"""Repairs raised from IoT Bridge's own traffic: each names its fix and goes away by itself."""

from __future__ import annotations

import asyncio
from collections.abc import Generator

import pytest
from homeassistant.components.lock import DOMAIN as LOCK_DOMAIN
from homeassistant.const import ATTR_ENTITY_ID
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import issue_registry as ir
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.iot_bridge.const import CONF_DEADLINE, CONF_RETRIES, DOMAIN
from custom_components.iot_bridge.core.bridge import PROBLEM_BROKER_NAGLE
from custom_components.iot_bridge.core.health import DAY
from custom_components.iot_bridge.hub import IotBridgeHub
from custom_components.iot_bridge.issues import device_timeouts_issue_id, problem_issue_id
from iot_bridge_sim.behaviour import Behaviour
from iot_bridge_sim.devices import parcel_locker

from .common import mqtt_entry, setup_entry, wait_for
from .mosquitto import Broker
from .mqtt_peers import StartSim, prefix, start_sim

__all__ = ["prefix", "start_sim"]  # the fixtures, imported for pytest

pytestmark = pytest.mark.usefixtures("socket_enabled")

LOCK_2 = "lock.parcel_locker_door_2"


@pytest.fixture
def nagle_broker() -> Generator[Broker]:
    """mosquitto as installed: without `set_tcp_nodelay true`."""
    broker = Broker(nodelay=False)
    broker.start()
    yield broker
    broker.close()


async def _hub(
    hass: HomeAssistant, broker: Broker, prefix: str, deadline: float = 2.0
) -> MockConfigEntry:
    entry = mqtt_entry(broker, options={CONF_DEADLINE: deadline, CONF_RETRIES: 0}, prefix=prefix)
    await setup_entry(hass, entry)
    # A probe after every slow command, not at most every 30 s: the test needs a few quickly.
    entry.runtime_data.bridge.stall.interval = 0
    return entry


async def _toggle(hass: HomeAssistant, times: int) -> None:
    """Unlock door 2 (a confirmed command each time, whatever its state)."""
    for _ in range(times):
        await hass.services.async_call(
            LOCK_DOMAIN, "unlock", {ATTR_ENTITY_ID: LOCK_2}, blocking=True
        )


def _issue(hass: HomeAssistant, issue_id: str) -> ir.IssueEntry | None:
    return ir.async_get(hass).async_get_issue(DOMAIN, issue_id)


async def _probe_done(hub: IotBridgeHub) -> None:
    """Wait for the broker probe a command may have set off."""
    stall = hub.bridge.stall  # type: ignore[attr-defined]
    await wait_for(lambda: not stall.busy, what="the broker probe")


async def _locker_ready(hass: HomeAssistant) -> None:
    await wait_for(lambda: hass.states.get(LOCK_2) is not None, what="the locker's door 2")


async def test_broker_without_nodelay_raises_a_repair_until_fixed(
    hass: HomeAssistant, nagle_broker: Broker, prefix: str, start_sim: StartSim
) -> None:
    """Real round trips through a broker with Nagle on show its stall; fixing it clears it."""
    entry = await _hub(hass, nagle_broker, prefix)
    await start_sim(parcel_locker(), broker=nagle_broker)
    await _locker_ready(hass)
    hub: IotBridgeHub = entry.runtime_data
    issue_id = problem_issue_id(entry.entry_id, PROBLEM_BROKER_NAGLE)
    for _ in range(12):
        await _toggle(hass, 1)
        if _issue(hass, issue_id) is not None:
            break
        await _probe_done(hub)
    issue = _issue(hass, issue_id)
    assert issue is not None, hub.bridge.diagnostics()["broker_stall"]
    assert issue.translation_key == PROBLEM_BROKER_NAGLE
    assert issue.translation_placeholders == {
        "hub": entry.title,
        "target": f"MQTT broker 127.0.0.1:{nagle_broker.port}",
    }
    assert issue.severity is ir.IssueSeverity.WARNING

    # The user adds set_tcp_nodelay true and restarts the broker on the same port.
    port = nagle_broker.port
    nagle_broker.close()
    fixed = Broker(port=port, nodelay=True)
    fixed.start()
    try:
        # Commands fail until the hub and the locker are back; each success probes again.
        async with asyncio.timeout(30):
            while _issue(hass, issue_id) is not None:
                try:
                    await _toggle(hass, 1)
                except HomeAssistantError:
                    await asyncio.sleep(0.2)
                    continue
                await _probe_done(hub)
        assert _issue(hass, issue_id) is None
    finally:
        await hass.config_entries.async_unload(entry.entry_id)
        fixed.close()


async def test_slow_device_is_no_broker_stall(
    hass: HomeAssistant, mqtt_broker: Broker, prefix: str, start_sim: StartSim
) -> None:
    """A device that takes 60 ms per command sets off probes, but they find the broker fine."""
    entry = await _hub(hass, mqtt_broker, prefix)
    await start_sim(parcel_locker(), behaviour=Behaviour(answer_delay=0.06))
    await _locker_ready(hass)
    hub: IotBridgeHub = entry.runtime_data
    stall = hub.bridge.stall  # type: ignore[attr-defined]
    for _ in range(8):
        await _toggle(hass, 1)
        await _probe_done(hub)
    assert stall.probes >= 5
    assert max(stall.gaps) < 25, stall.gaps
    assert _issue(hass, problem_issue_id(entry.entry_id, PROBLEM_BROKER_NAGLE)) is None


async def test_device_that_timed_out_for_a_day_gets_a_repair(
    hass: HomeAssistant, mqtt_broker: Broker, prefix: str, start_sim: StartSim
) -> None:
    """Only time-outs for 24 h raise the repair; the next answer clears it."""
    entry = await _hub(hass, mqtt_broker, prefix, deadline=0.5)
    behaviour = Behaviour(silent=True)
    await start_sim(parcel_locker(), behaviour=behaviour)
    await _locker_ready(hass)
    hub: IotBridgeHub = entry.runtime_data
    now = hub.clock()
    hub.clock = lambda: now
    issue_id = device_timeouts_issue_id(entry.entry_id, "locker1")

    with pytest.raises(HomeAssistantError):
        await _toggle(hass, 1)
    assert _issue(hass, issue_id) is None  # one time-out is no pattern

    hub.clock = lambda: now + DAY + 60
    with pytest.raises(HomeAssistantError):
        await _toggle(hass, 1)
    issue = _issue(hass, issue_id)
    assert issue is not None
    assert issue.translation_key == "device_timeouts"
    assert issue.translation_placeholders == {"device": "Parcel locker"}

    behaviour.silent = False
    await _toggle(hass, 1)
    assert _issue(hass, issue_id) is None
