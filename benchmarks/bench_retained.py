"""Retained state at fleet size: start-up against a default mosquitto holding N devices.

    .venv/bin/python -m pytest benchmarks/bench_retained.py -s -p no:cacheprovider
    BENCH_DEVICES=600 .venv/bin/python -m pytest benchmarks/bench_retained.py -s -p no:cacheprovider

One mosquitto with its DEFAULT settings (20 messages in flight, max_queued_messages 1000,
no set_tcp_nodelay). Before either side starts, a publisher process (benchmarks/peers.py
`fleet`) announces N devices (BENCH_DEVICES, default 5,000) with three retained QoS 1
messages each: a config with one sensor, its state `{"level": i}` and its availability
(every 7th device `offline`). Then each side, in a fresh Home Assistant of its own, is set
up and the clock runs from the config entry's set-up until:

- "entities": every device's sensor exists in the state machine;
- "all correct": every sensor shows its device's value, or `unavailable` for the offline ones.

"lost" counts sensors that never got there (missing or wrong) within TIMEOUT seconds. RSS
growth is the process's resident memory at "all correct" (or at the timeout) minus before
the set-up. Both sides run in one process, IoT Bridge first: memory the first side freed
is reused by the second, so the second side's RSS growth (HA MQTT's) tends to be flattered,
never IoT Bridge's. `-k iot_bridge` or `-k ha_mqtt` runs one side alone.

- IoT Bridge: the devices follow docs/protocols/mqtt.md (`<prefix>/<id>/config|state|availability`).
- HA MQTT: Home Assistant's own `mqtt` integration, one sensor per device from MQTT discovery
  (`homeassistant/sensor/<id>/config` with state_topic, value_template, availability_topic).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import pytest
from homeassistant.const import EVENT_STATE_CHANGED, STATE_UNAVAILABLE
from homeassistant.core import Event, HomeAssistant, callback
from pytest_homeassistant_custom_component.common import (  # type: ignore[import-untyped]
    MockConfigEntry,
)

from iot_bridge_sim.broker import Broker
from tests.common import mqtt_entry, setup_ha_mqtt

from .common import Peer, header, machine, markdown_table, profiled, require, rss, start_broker
from .peers import FleetPlan, Style

pytestmark = pytest.mark.usefixtures("socket_enabled")

DEVICES = int(os.environ.get("BENCH_DEVICES", "5000"))
TIMEOUT = float(os.environ.get("BENCH_TIMEOUT", "120"))  # seconds; a lossy side ends here
PREFIXES: dict[Style, str] = {"iot_bridge": "benchiot", "ha_mqtt": "bench"}
SIDES: list[Style] = ["iot_bridge", "ha_mqtt"]
SIDE_NAMES: dict[Style, str] = {"iot_bridge": "IoT Bridge", "ha_mqtt": "HA MQTT"}
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Result:
    """One side's start-up, as the benchmark saw it."""

    style: Style
    devices: int
    entities_seconds: float | None  # set-up -> every sensor exists
    correct_seconds: float | None  # set-up -> every sensor shows its retained truth
    present: int
    correct: int
    rss_growth: int
    stall: float  # longest time Home Assistant's loop did not come round, seconds
    cpu_seconds: float  # CPU time of this process (all threads) from set-up to the end

    def row(self) -> list[str]:
        def seconds(value: float | None) -> str:
            return f"{value:.2f}" if value is not None else f"> {TIMEOUT:.0f}"

        return [
            SIDE_NAMES[self.style],
            str(self.devices),
            seconds(self.entities_seconds),
            seconds(self.correct_seconds),
            f"{self.present}/{self.devices}",
            f"{self.correct}/{self.devices}",
            str(self.devices - self.correct),
            f"{self.rss_growth / MIB:+.0f}",
            f"{self.stall * 1000:.0f}",
            f"{self.cpu_seconds:.2f}",
        ]


class FleetWatch:
    """Follows every sensor's state; notes when all exist and when all are right."""

    def __init__(self, hass: HomeAssistant, plan: FleetPlan) -> None:
        self.expected = {
            f"sensor.{plan.name(index)}_level": (
                STATE_UNAVAILABLE if plan.offline(index) else str(index)
            )
            for index in range(plan.devices)
        }
        self.present: set[str] = set()
        self.wrong = set(self.expected)
        self.start = time.perf_counter()
        self.entities_at: float | None = None
        self.correct_at: float | None = None
        self.done = asyncio.Event()
        # A @callback listener runs in the event loop; a plain one would go to the executor.
        self._unsubscribe = hass.bus.async_listen(EVENT_STATE_CHANGED, self._on_state)

    @callback
    def _on_state(self, event: Event[Any]) -> None:
        entity_id = event.data["entity_id"]
        expected = self.expected.get(entity_id)
        if expected is None:
            return
        new_state = event.data["new_state"]
        if new_state is None:
            self.present.discard(entity_id)
            self.wrong.add(entity_id)
            return
        if entity_id not in self.present:
            self.present.add(entity_id)
            if len(self.present) == len(self.expected) and self.entities_at is None:
                self.entities_at = time.perf_counter() - self.start
        if new_state.state == expected:
            self.wrong.discard(entity_id)
            if not self.wrong and self.correct_at is None:
                self.correct_at = time.perf_counter() - self.start
                self.done.set()
        else:
            self.wrong.add(entity_id)

    def close(self) -> None:
        self._unsubscribe()


class StallWatch:
    """The longest gap between two turns of a 5 ms sleep: how long the loop was blocked."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            self.longest = max(self.longest, time.perf_counter() - before - 0.005)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


# -- setting up each side ---------------------------------------------------------------


async def setup_iot_bridge(hass: HomeAssistant, broker: Broker) -> MockConfigEntry:
    entry = mqtt_entry(broker, client_id="bench-hub", prefix=PREFIXES["iot_bridge"])
    entry.add_to_hass(hass)
    require(await hass.config_entries.async_setup(entry.entry_id), "IoT Bridge did not load")
    return entry


# -- the benchmark --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broker() -> Generator[Broker]:
    """mosquitto's defaults, with both sides' fleets retained before anything starts."""
    broker = start_broker(nodelay=False)
    for style in SIDES:
        peer = Peer(
            "fleet",
            *("--port", str(broker.port), "--prefix", PREFIXES[style]),
            *("--style", style, "--devices", str(DEVICES)),
        )
        words = peer.read("published")
        peer.close()
        require(int(words[1]) == 3 * DEVICES, f"publisher said {words!r}")
    yield broker
    broker.close()


@pytest.fixture(scope="module")
def results(request: pytest.FixtureRequest) -> Generator[list[Result]]:
    """Collects both sides; prints the table once all have run."""
    machine_line = machine()
    collected: list[Result] = []
    yield collected
    title = f"Retained start-up: {DEVICES:,} devices x 3 retained topics, default mosquitto"
    print(header(request.config, title, machine_line))
    print(report(collected))


@pytest.mark.parametrize("style", SIDES)
async def test_retained_startup(
    hass: HomeAssistant, broker: Broker, results: list[Result], style: Style
) -> None:
    plan = FleetPlan(style, PREFIXES[style], DEVICES)
    setup = setup_iot_bridge if style == "iot_bridge" else setup_ha_mqtt
    gc.collect()
    before = rss()
    watch = FleetWatch(hass, plan)
    stalls = StallWatch()
    cpu = time.process_time()
    with profiled(style):
        watch.start = time.perf_counter()
        entry = await setup(hass, broker)
        with contextlib.suppress(TimeoutError):  # what never arrived is reported as lost
            await asyncio.wait_for(watch.done.wait(), TIMEOUT)
    cpu = time.process_time() - cpu
    after = rss()
    watch.close()
    await stalls.close()
    results.append(
        Result(
            style,
            DEVICES,
            watch.entities_at,
            watch.correct_at,
            len(watch.present),
            DEVICES - len(watch.wrong),
            after - before,
            stalls.longest,
            cpu,
        )
    )
    await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()


def report(results: list[Result]) -> str:
    headers = [
        "side",
        "devices",
        "s to all entities",
        "s to all correct",
        "entities",
        "correct",
        "lost",
        "RSS MiB",
        "longest loop stall ms",
        "CPU s",
    ]
    lines = [markdown_table(headers, [result.row() for result in results]), ""]
    by_side = {result.style: result for result in results}
    ours, theirs = by_side.get("iot_bridge"), by_side.get("ha_mqtt")
    if ours and theirs and ours.correct_seconds and theirs.correct_seconds:
        lines.append(
            "all correct: IoT Bridge / HA MQTT = "
            f"{ours.correct_seconds / theirs.correct_seconds:.2f}x time, "
            f"{ours.cpu_seconds / theirs.cpu_seconds:.2f}x CPU"
        )
        lines.append(
            "RSS: both sides ran in this process, and the second (HA MQTT) reused memory the "
            "first freed; compare RSS from one side per process (-k iot_bridge, -k ha_mqtt)."
        )
    return "\n".join(lines)
