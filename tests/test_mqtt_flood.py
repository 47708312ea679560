"""One chatty device must not starve the others (issue 8 item 3).

A separate process floods state for one device (A) as fast as the broker takes it while a
lock on another device (B) is opened: B's answer must arrive on time, A ends at the flood's
last value, and one warning names A.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncGenerator, Generator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from homeassistant.components.lock import DOMAIN as LOCK_DOMAIN
from homeassistant.components.lock.const import LockState
from homeassistant.const import ATTR_ENTITY_ID
from homeassistant.core import HomeAssistant

from custom_components.iot_bridge.const import CONF_DEADLINE, CONF_RETRIES
from custom_components.iot_bridge.core.flood import StateFloodGate
from iot_bridge_sim.devices import climate_node, parcel_locker
from iot_bridge_sim.mqtt import MqttDeviceSimulator

from .common import mqtt_entry, setup_entry, wait_for
from .mosquitto import Broker

pytestmark = pytest.mark.usefixtures("socket_enabled")
_LOGGER = logging.getLogger(__name__)

LOCK_B = "lock.parcel_locker_door_2"
TEMPERATURE_A = "sensor.climate_node_temperature"
FLOOD_PEER = Path(__file__).with_name("flood_peer.py")
# Bounded either way: at most this many messages, or this many seconds of flooding.
FLOOD_MESSAGES = 150_000
FLOOD_SECONDS = 5.0
COMMAND_AFTER = 2.5
DEADLINE = 10.0
# Well within the deadline: an idle broker answers in a few milliseconds.
ON_TIME = 2.0


def _state(hass: HomeAssistant, entity_id: str) -> str | None:
    state = hass.states.get(entity_id)
    return None if state is None else state.state


@pytest.fixture
def flood_broker() -> Generator[Broker]:
    """A broker that queues everything for a slow subscriber, like the reporter's.

    mosquitto's default drops messages beyond 1000 queued per client, which hides a
    subscriber falling behind; with no limit the backlog is all in front of Home Assistant.
    """
    broker = Broker()
    with broker.config.open("a") as config:
        config.write("max_queued_messages 0\n")
    broker.start()
    yield broker
    broker.close()


@pytest.fixture
async def devices(
    hass: HomeAssistant, flood_broker: Broker
) -> AsyncGenerator[tuple[str, list[MqttDeviceSimulator]]]:
    """A hub with a 10 s deadline, the climate node (A) and the parcel locker (B)."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    entry = mqtt_entry(
        flood_broker, options={CONF_DEADLINE: DEADLINE, CONF_RETRIES: 2}, prefix=prefix
    )
    await setup_entry(hass, entry)
    sims = [
        MqttDeviceSimulator(model, port=flood_broker.port, prefix=prefix)
        for model in (climate_node(), parcel_locker())
    ]
    try:
        for sim in sims:
            await hass.async_add_executor_job(sim.start)
        await wait_for(lambda: _state(hass, LOCK_B) == LockState.LOCKED, what="locker")
        await wait_for(lambda: _state(hass, TEMPERATURE_A) == "21.0", what="climate node")
        yield prefix, sims
    finally:
        for sim in sims:
            await hass.async_add_executor_job(sim.stop)
        assert await hass.config_entries.async_unload(entry.entry_id)


async def test_flooding_device_does_not_delay_another_devices_answer(
    hass: HomeAssistant,
    flood_broker: Broker,
    devices: tuple[str, list[MqttDeviceSimulator]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """B's lock opens on time during A's flood; A ends at its last value; one warning."""
    prefix, _sims = devices
    caplog.set_level(logging.INFO)
    flood_started = time.monotonic()
    flood = await hass.async_add_executor_job(
        partial(
            subprocess.Popen,
            [
                sys.executable,
                str(FLOOD_PEER),
                flood_broker.host,
                str(flood_broker.port),
                f"{prefix}/climate1/state",
                "temperature",
                str(FLOOD_MESSAGES),
                str(FLOOD_SECONDS),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    )
    try:
        # The command goes out a few seconds into the flood, when a subscriber that
        # cannot keep up has a backlog in front of it.
        await wait_for(lambda: _state(hass, TEMPERATURE_A) != "21.0", what="the flood")
        await asyncio.sleep(COMMAND_AFTER - (time.monotonic() - flood_started))
        started = time.monotonic()
        await hass.services.async_call(LOCK_DOMAIN, "open", {ATTR_ENTITY_ID: LOCK_B}, blocking=True)
        latency = time.monotonic() - started
        assert _state(hass, LOCK_B) == LockState.OPEN
        out, err = await hass.async_add_executor_job(flood.communicate, None, 30)
    finally:
        if flood.poll() is None:
            flood.kill()
            await hass.async_add_executor_job(flood.wait)
    assert flood.returncode == 0, err.decode()
    result = json.loads(out)
    rate = result["sent"] / result["seconds"]
    assert latency < ON_TIME, f"B answered after {latency:.1f} s during a {rate:.0f}/s flood"
    await wait_for(
        lambda: _state(hass, TEMPERATURE_A) in (f"{result['last']}.0", str(result["last"])),
        timeout=60,
        what=lambda: f"A's last value {result['last']}, have {_state(hass, TEMPERATURE_A)}",
    )
    # Numbers for the report (run with -rA or -s to see them).
    _LOGGER.info(
        "flood: %s messages at %.0f/s in %.1f s; lock.open on B took %.3f s; A's last value "
        "shown %.1f s after the flood started",
        result["sent"],
        rate,
        result["seconds"],
        latency,
        time.monotonic() - flood_started,
    )
    warnings = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING
        and "climate1" in r.getMessage()
        and "state" in r.getMessage()
    ]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]


# The gate on its own: exact counts with a clock the test moves --------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_gate_coalesces_only_above_the_limit_and_calms_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Within the limit every message applies; above it the newest per key, once a tick."""
    caplog.set_level(logging.INFO)
    applied: list[tuple[str, dict[str, Any]]] = []
    clock = _Clock()
    gate = StateFloodGate(
        lambda device, values: applied.append((device, dict(values))),
        limit=3,
        interval=0.01,
        clock=clock,
    )
    try:
        assert all(gate.admit("quiet", {"t": n}) for n in range(3))
        assert all(gate.admit("loud", {"t": n}) for n in range(3))
        assert not gate.admit("loud", {"t": 3, "h": 1})
        assert not gate.admit("loud", {"t": 4})
        assert gate.admit("loud2", {"t": 0})  # another device is not affected
        assert gate.flooding == ["loud"]
        await wait_for(lambda: ("loud", {"t": 4, "h": 1}) in applied, timeout=2)
        assert gate.held == 2
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "loud" in warnings[0].getMessage()

        # A second window within the limit: the device calms down, one info line.
        clock.now += 1.0
        assert not gate.admit("loud", {"t": 5})  # counted in the new window, still held
        clock.now += 1.0
        await wait_for(lambda: not gate.flooding, timeout=2)
        assert applied[-1] == ("loud", {"t": 5})
        assert gate.admit("loud", {"t": 6})
        calmed = [r for r in caplog.records if "calmed down" in r.getMessage()]
        assert len(calmed) == 1
    finally:
        gate.stop()


async def test_gate_slot_is_bounded() -> None:
    """A flooding device inventing keys cannot grow its pending slot without limit."""
    applied: list[dict[str, Any]] = []
    gate = StateFloodGate(lambda _device, values: applied.append(dict(values)), limit=0)
    try:
        for n in range(1000):
            gate.admit("loud", {f"k{n}": n})
        assert len(gate._pending["loud"]) == 64
    finally:
        gate.stop()
    assert not gate.flooding
