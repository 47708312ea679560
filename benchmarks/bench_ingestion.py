"""State ingestion: MQTT messages per second turned into entity state changes.

    .venv/bin/python -m pytest benchmarks/bench_ingestion.py -s -p no:cacheprovider

One local mosquitto. A publisher in its own process (benchmarks/peers.py) announces a meter
with 10 numeric sensors, then floods MESSAGES QoS 0 state messages as fast as it can. The
clock runs from the "flood" command until the last value has arrived on every sensor
entity; `state_changed` events of those entities are counted on the way.

- IoT Bridge: the meter follows docs/protocols/mqtt.md; state JSON on <prefix>/<id>/state.
- HA MQTT: Home Assistant's own `mqtt` integration, 10 sensors from MQTT discovery
  (`homeassistant/sensor/<id>/config`, state_topic + value_template).

Two message shapes, the same bytes for both sides:
- "all": every message carries all 10 values (10 entity updates per message), on one topic;
  the HA sensors share that topic, each picking its key with `{{ value_json.sN }}`.
- "one": every message carries one value (1 entity update per message). IoT Bridge still
  has one state topic per device; each HA sensor gets a topic of its own (with a shared
  topic the other nine templates would render an undefined key on every message).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any
from unittest.mock import patch

import pytest
from homeassistant.const import EVENT_STATE_CHANGED
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers import entity_registry as er

from custom_components.iot_bridge.const import DOMAIN
from iot_bridge_sim.broker import Broker
from tests.common import setup_ha_mqtt as start_ha_mqtt

from .common import (
    Peer,
    header,
    machine,
    markdown_table,
    profiled,
    setup_hub,
    start_broker,
    wait_until,
)
from .peers import FloodPlan, Shape, Style

pytestmark = pytest.mark.usefixtures("socket_enabled")

# Per case. The brief: enough for 5 s of work or 20,000 messages, whichever is smaller;
# "all" takes 6-8 s here, "one" 2-6 s (there 20,000 is the smaller).
MESSAGES = 20_000
SENSORS = 10
PREFIXES: dict[Style, str] = {"iot_bridge": "benchiot", "ha_mqtt": "bench"}
FLOOD_TIMEOUT = 300.0  # seconds; only a broken run gets near it
PROBE_ATTEMPTS = 30
CASES: list[tuple[Shape, Style]] = [
    ("all", "iot_bridge"),
    ("all", "ha_mqtt"),
    ("one", "iot_bridge"),
    ("one", "ha_mqtt"),
]
SIDE_NAMES: dict[Style, str] = {"iot_bridge": "IoT Bridge", "ha_mqtt": "HA MQTT"}


@dataclass(frozen=True, slots=True)
class Result:
    """One flood, as the benchmark saw it."""

    plan: FloodPlan
    messages: int
    updates: int  # state_changed events of the meter's entities during the flood
    seconds: float  # "flood" sent -> last sentinel value seen
    publisher_seconds: float  # how long the publisher needed to hand everything over

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def row(self) -> list[str]:
        expected = self.messages * self.plan.updates_per_message()
        return [
            self.plan.shape,
            SIDE_NAMES[self.plan.style],
            str(self.messages),
            f"{self.updates}/{expected}",
            f"{self.seconds:.2f}",
            f"{self.rate:,.0f}",
            f"{self.updates / self.seconds:,.0f}",
            f"{self.messages / self.publisher_seconds:,.0f}",
        ]


class StateWatch:
    """Counts state_changed events of some entities; notes when each shows its target."""

    def __init__(self, hass: HomeAssistant, entity_ids: list[str]) -> None:
        self.watched = frozenset(entity_ids)
        self.count = 0
        self.done = asyncio.Event()
        self.done_at = 0.0
        self._pending: dict[str, float] = {}
        # A @callback listener runs in the event loop; a plain one would go to the executor.
        self._unsubscribe = hass.bus.async_listen(EVENT_STATE_CHANGED, self._on_state)

    def arm(self, targets: dict[str, float]) -> None:
        """Start counting afresh and wait for every entity to show its target value."""
        self.count = 0
        self._pending = dict(targets)
        self.done.clear()

    @callback
    def _on_state(self, event: Event[Any]) -> None:
        entity_id = event.data["entity_id"]
        if entity_id not in self.watched:
            return
        self.count += 1
        new_state = event.data["new_state"]
        target = self._pending.get(entity_id)
        if target is None or new_state is None or _number(new_state.state) != target:
            return
        del self._pending[entity_id]
        if not self._pending:
            self.done_at = time.perf_counter()
            self.done.set()

    def close(self) -> None:
        self._unsubscribe()


def _number(state: str) -> float | None:
    try:
        return float(state)
    except ValueError:
        return None  # "unknown" before the first value


# -- setting up each side ---------------------------------------------------------------


async def setup_iot_bridge(hass: HomeAssistant, broker: Broker, plan: FloodPlan) -> list[str]:
    # One device sends the whole stream here: the flood gate (newest value wins above 200
    # messages/s per device, docs/reliability.md) would merge it, and this benchmark
    # measures every message becoming a state. Real fleets spread the rate over devices.
    with patch("custom_components.iot_bridge.core.flood.FLOOD_LIMIT", 10**9):
        entry = await setup_hub(hass, broker, plan.prefix)
    unique_ids = [f"{entry.entry_id}_{plan.device}_{key}" for key in plan.keys]
    return await entity_ids(hass, DOMAIN, unique_ids)


async def setup_ha_mqtt(hass: HomeAssistant, broker: Broker, plan: FloodPlan) -> list[str]:
    await start_ha_mqtt(hass, broker)
    await hass.async_block_till_done()
    return await entity_ids(hass, "mqtt", [plan.ha_unique_id(key) for key in plan.keys])


async def entity_ids(hass: HomeAssistant, platform: str, unique_ids: list[str]) -> list[str]:
    """The sensors' entity ids, once discovery has created all of them."""
    registry = er.async_get(hass)

    def found() -> list[str]:
        ids = [registry.async_get_entity_id("sensor", platform, uid) for uid in unique_ids]
        return [entity_id for entity_id in ids if entity_id is not None]

    await wait_until(lambda: len(found()) == len(unique_ids), f"{platform} sensors")
    return found()


async def probe_until_live(
    hass: HomeAssistant, peer: Peer, watch: StateWatch, entity_ids: list[str]
) -> None:
    """Set every sensor to a fresh negative value until one round arrives on all of them.

    HA MQTT subscribes behind a cooldown after discovery: a flood sent before its
    subscriptions are live would go nowhere.
    """
    for attempt in range(1, PROBE_ATTEMPTS + 1):
        watch.arm(dict.fromkeys(entity_ids, -attempt))
        peer.send(f"probe {-attempt}")
        await peer.expect(hass, "ok")
        try:
            await asyncio.wait_for(watch.done.wait(), 1.0)
        except TimeoutError:
            continue
        return
    raise RuntimeError(f"sensors did not follow the probe after {PROBE_ATTEMPTS} tries")


# -- the benchmark --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broker() -> Generator[Broker]:
    broker = start_broker(unlimited_queue=True)
    yield broker
    broker.close()


@pytest.fixture(scope="module")
def results(request: pytest.FixtureRequest) -> Generator[list[Result]]:
    """Collects every case; prints the table once all have run."""
    machine_line = machine()
    collected: list[Result] = []
    yield collected
    print(header(request.config, "State ingestion: messages/s into entity states", machine_line))
    print(report(collected))


@pytest.mark.parametrize(("shape", "style"), CASES, ids=[f"{s}-{t}" for s, t in CASES])
async def test_ingestion(
    hass: HomeAssistant, broker: Broker, results: list[Result], shape: Shape, style: Style
) -> None:
    plan = FloodPlan(style, shape, PREFIXES[style], f"meter_{shape}", SENSORS)
    peer = Peer(
        "flood",
        *("--port", str(broker.port), "--prefix", plan.prefix, "--style", style),
        *("--shape", shape, "--device", plan.device, "--sensors", str(SENSORS)),
        *("--messages", str(MESSAGES)),
    )
    try:
        await peer.expect(hass, "ready")
        setup = setup_iot_bridge if style == "iot_bridge" else setup_ha_mqtt
        entities = await setup(hass, broker, plan)
        watch = StateWatch(hass, entities)
        await probe_until_live(hass, peer, watch, entities)
        finals = plan.final_values(MESSAGES)
        watch.arm({entity: finals[key] for entity, key in zip(entities, plan.keys, strict=True)})
        with profiled(f"{shape}-{style}"):
            start = time.perf_counter()
            peer.send("flood")
            await asyncio.wait_for(watch.done.wait(), FLOOD_TIMEOUT)
        publisher = float((await peer.expect(hass, "sent"))[1])
        watch.close()
    finally:
        await hass.async_add_executor_job(peer.close)
    results.append(Result(plan, MESSAGES, watch.count, watch.done_at - start, publisher))


def report(results: list[Result]) -> str:
    headers = [
        "shape",
        "side",
        "messages",
        "entity updates seen/expected",
        "seconds",
        "msgs/s",
        "updates/s",
        "publisher msgs/s",
    ]
    lines = [markdown_table(headers, [result.row() for result in results]), ""]
    by_case = {(r.plan.shape, r.plan.style): r for r in results}
    for shape in ("all", "one"):
        ours, theirs = by_case.get((shape, "iot_bridge")), by_case.get((shape, "ha_mqtt"))
        if ours and theirs:
            lines.append(f"{shape}: IoT Bridge / HA MQTT = {ours.rate / theirs.rate:.2f}x msgs/s")
    return "\n".join(lines)
