"""State ingestion: MQTT messages per second turned into entity states, and fleet start-up.

    .venv/bin/python -m pytest benchmarks/bench_ingestion.py -s -p no:cacheprovider
    BENCH_TRIALS=3 BENCH_SCALE=0.2 .venv/bin/python -m pytest benchmarks/bench_ingestion.py -s -p no:cacheprovider

Every measurement ("case": one shape, one side, one trial) runs in a Python process of its
own (pytest on `test_case`), so each side gets a fresh Home Assistant, a fresh mosquitto and
a resident memory figure of its own. Trials alternate the sides (IoT Bridge first in even
trials, HA MQTT first in odd ones), so a machine that gets busier or quieter during the run
weighs on both. The table shows per case the median over BENCH_TRIALS trials (default 5)
and the spread (lowest-highest).

A publisher in its own process (benchmarks/peers.py) announces the devices (retained), then
floods QoS 0 state messages as fast as it can. The clock runs from the "flood" command until
every sensor entity shows its last value; `state_changed` events of those entities are
counted on the way and must equal one per value sent (no coalescing).

- IoT Bridge: devices follow docs/protocols/mqtt.md; state JSON on <prefix>/<id>/state.
- HA MQTT: Home Assistant's own `mqtt` integration, sensors from MQTT discovery
  (`homeassistant/sensor/<id>/config`, state_topic + value_template). The same payload bytes.

Shapes:
- "all": one device, 10 sensors, every message carries all 10 values, on one topic (the HA
  sensors share it, each picking its key with `{{ value_json.sN }}`).
- "one": one device, 10 sensors, every message carries one value. IoT Bridge still has one
  state topic per device; each HA sensor has a topic of its own.
- "fleet": 1,000 devices x 5 sensors, one value per message, message i for device i % 1000.
  Its set-up is measured too: the devices' configs are retained on the broker before the
  integration starts, and "start-up" runs from the config entry's set-up until all 5,000
  sensor entities exist.

BENCH_SCALE (default 1) scales the message counts and the fleet's device count, for quick
iterations. BENCH_PROFILE=1 prints each case's cProfile (see common.profiled) and CPU time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Generator
from dataclasses import asdict, dataclass
from pathlib import Path
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
    ROOT,
    Peer,
    header,
    machine,
    markdown_table,
    profiled,
    require,
    rss,
    setup_hub,
    start_broker,
    wait_until,
)
from .peers import FloodPlan, Shape, Style

pytestmark = pytest.mark.usefixtures("socket_enabled")

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
TRIALS = int(os.environ.get("BENCH_TRIALS", "5"))
# Long enough that each side works for several seconds even at IoT Bridge's speed.
MESSAGES: dict[Shape, int] = {
    "all": int(40_000 * SCALE),
    "one": int(150_000 * SCALE),
    "fleet": int(100_000 * SCALE),
}
SENSORS: dict[Shape, int] = {"all": 10, "one": 10, "fleet": 5}
DEVICES: dict[Shape, int] = {"all": 1, "one": 1, "fleet": max(2, int(1000 * SCALE))}
SHAPES: list[Shape] = ["one", "all", "fleet"]
SIDES: list[Style] = ["iot_bridge", "ha_mqtt"]
PREFIXES: dict[Style, str] = {"iot_bridge": "benchiot", "ha_mqtt": "bench"}
SIDE_NAMES: dict[Style, str] = {"iot_bridge": "IoT Bridge", "ha_mqtt": "HA MQTT"}
SETUP_TIMEOUT = 600.0  # seconds; only a broken run gets near these
FLOOD_TIMEOUT = 300.0
CASE_TIMEOUT = 1800.0
PROBE_ATTEMPTS = 30
MIB = 1024 * 1024
# Set for a child process: run one case and write its result here as JSON.
CASE_OUT = "BENCH_CASE_OUT"


@dataclass(frozen=True, slots=True)
class Result:
    """One case, as its process saw it."""

    shape: Shape
    style: Style
    messages: int
    entities: int
    updates: int  # state_changed events of the watched entities during the flood
    expected: int  # one per value sent
    startup_seconds: float  # config entry set-up -> every sensor entity exists
    seconds: float  # "flood" sent -> last sentinel value seen
    cpu_seconds: float  # this process's CPU time over the same span (all its threads)
    publisher_seconds: float  # how long the publisher needed to hand everything over
    rss_mib: float  # resident memory at the end of the flood

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_us_per_message(self) -> float:
        return self.cpu_seconds / self.messages * 1e6


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
    # "one" and "all" have a single device send the whole stream: the flood gate (newest
    # value wins above 200 messages/s per device, docs/reliability.md) would merge it, and
    # this benchmark measures every message becoming a state. A fleet's rate per device is
    # far below the limit: the gate stays on there.
    gate = (
        patch("custom_components.iot_bridge.core.flood.FLOOD_LIMIT", 10**9)
        if plan.devices == 1
        else contextlib.nullcontext()
    )
    with gate:
        entry = await setup_hub(hass, broker, plan.prefix)
    await _all_sensors(hass, plan)
    uids = [f"{entry.entry_id}_{device}_{key}" for device, key in plan.targets()]
    return _entity_ids(hass, DOMAIN, uids)


async def setup_ha_mqtt(hass: HomeAssistant, broker: Broker, plan: FloodPlan) -> list[str]:
    await start_ha_mqtt(hass, broker)
    await _all_sensors(hass, plan)
    uids = [plan.ha_unique_id(device, key) for device, key in plan.targets()]
    return _entity_ids(hass, "mqtt", uids)


async def _all_sensors(hass: HomeAssistant, plan: FloodPlan) -> None:
    """Until every sensor of the plan exists in the state machine (none other is there)."""
    expected = plan.devices * plan.sensors
    await wait_until(
        lambda: len(hass.states.async_entity_ids("sensor")) >= expected,
        f"{expected} sensors",
        SETUP_TIMEOUT,
    )


def _entity_ids(hass: HomeAssistant, platform: str, unique_ids: list[str]) -> list[str]:
    registry = er.async_get(hass)
    ids = [registry.async_get_entity_id("sensor", platform, uid) for uid in unique_ids]
    found = [entity_id for entity_id in ids if entity_id is not None]
    require(len(found) == len(unique_ids), f"{len(unique_ids) - len(found)} sensors missing")
    return found


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
            await asyncio.wait_for(watch.done.wait(), 2.0)
        except TimeoutError:
            continue
        return
    raise RuntimeError(f"sensors did not follow the probe after {PROBE_ATTEMPTS} tries")


def plan_of(shape: Shape, style: Style) -> FloodPlan:
    return FloodPlan(style, shape, PREFIXES[style], f"m{shape}", SENSORS[shape], DEVICES[shape])


# -- one case, in a process of its own ---------------------------------------------------


@pytest.fixture
def broker() -> Generator[Broker]:
    broker = start_broker(unlimited_queue=True)
    yield broker
    broker.close()


@pytest.mark.skipif(CASE_OUT not in os.environ, reason="run by test_ingestion, one per process")
@pytest.mark.parametrize("style", SIDES)
@pytest.mark.parametrize("shape", SHAPES)
async def test_case(broker: Broker, hass: HomeAssistant, shape: Shape, style: Style) -> None:
    plan = plan_of(shape, style)
    messages = MESSAGES[shape]
    peer = Peer(
        "flood",
        *("--port", str(broker.port), "--prefix", plan.prefix, "--style", style),
        *("--shape", shape, "--device", plan.device, "--sensors", str(plan.sensors)),
        *("--devices", str(plan.devices), "--messages", str(messages)),
    )
    try:
        await peer.expect(hass, "ready")  # its announcements are retained on the broker now
        setup = setup_iot_bridge if style == "iot_bridge" else setup_ha_mqtt
        started = time.perf_counter()
        entities = await setup(hass, broker, plan)
        startup = time.perf_counter() - started
        watch = StateWatch(hass, entities)
        await probe_until_live(hass, peer, watch, entities)
        finals = plan.final_values(messages)
        watch.arm(
            {
                entity: finals[target]
                for entity, target in zip(entities, plan.targets(), strict=True)
            }
        )
        with profiled(f"{shape}-{style}"):
            cpu = time.process_time()
            start = time.perf_counter()
            peer.send("flood")
            await asyncio.wait_for(watch.done.wait(), FLOOD_TIMEOUT)
            cpu = time.process_time() - cpu
        publisher = float((await peer.expect(hass, "sent"))[1])
        watch.close()
    finally:
        await hass.async_add_executor_job(peer.close)
    result = Result(
        shape=shape,
        style=style,
        messages=messages,
        entities=len(entities),
        updates=watch.count,
        expected=messages * plan.updates_per_message(),
        startup_seconds=startup,
        seconds=watch.done_at - start,
        cpu_seconds=cpu,
        publisher_seconds=publisher,
        rss_mib=rss() / MIB,
    )
    Path(os.environ[CASE_OUT]).write_text(json.dumps(asdict(result)), encoding="utf-8")


# -- the benchmark: every case, trials alternating ----------------------------------------


def run_case(shape: Shape, style: Style) -> Result:
    """`test_case` for one shape and side in a fresh process; its result."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        done = subprocess.run(
            [
                sys.executable,
                *("-m", "pytest", f"{Path(__file__)}::test_case[{shape}-{style}]"),
                *("-q", "-s", "-p", "no:cacheprovider"),
            ],
            cwd=ROOT,
            env=os.environ | {CASE_OUT: str(out)},
            capture_output=True,
            text=True,
            timeout=CASE_TIMEOUT,
            check=False,
        )
        if done.returncode != 0 or not out.exists():
            print(done.stdout[-5000:], done.stderr[-5000:])
            raise RuntimeError(f"case {shape}-{style} failed (exit code {done.returncode})")
        if os.environ.get("BENCH_PROFILE"):
            print(done.stdout)
        data = json.loads(out.read_text(encoding="utf-8"))
    return Result(**data)


@pytest.mark.skipif(CASE_OUT in os.environ, reason="the cases' own process")
def test_ingestion(request: pytest.FixtureRequest) -> None:
    machine_line = machine()
    results: list[Result] = []
    for trial in range(TRIALS):
        sides = SIDES if trial % 2 == 0 else SIDES[::-1]
        for shape in SHAPES:
            for style in sides:
                result = run_case(shape, style)
                require(
                    result.updates == result.expected,
                    f"{shape}-{style}: {result.updates} state changes for {result.expected} values",
                )
                results.append(result)
                print(
                    f"trial {trial + 1}/{TRIALS} {shape:5} {SIDE_NAMES[style]:10} "
                    f"{result.rate:9,.0f} msgs/s  {result.cpu_us_per_message:6.1f} us CPU/msg  "
                    f"start-up {result.startup_seconds:6.2f} s",
                    flush=True,
                )
    print(header(request.config, "State ingestion: messages/s into entity states", machine_line))
    print(report(results))


def _median_spread(values: list[float], form: str) -> str:
    """Median (lowest-highest) of a few trials."""
    median = statistics.median(values)
    if len(values) == 1:
        return format(median, form)
    return f"{median:{form}} ({min(values):{form}}-{max(values):{form}})"


def report(results: list[Result]) -> str:
    headers = [
        "shape",
        "side",
        "entities",
        "messages",
        "trials",
        "msgs/s",
        "first message -> last state, s",
        "CPU us/msg",
        "start-up s",
        "RSS MiB",
        "publisher msgs/s",
    ]
    rows: list[list[str]] = []
    medians: dict[tuple[Shape, Style], tuple[float, float]] = {}
    for shape in SHAPES:
        for style in SIDES:
            runs = [r for r in results if r.shape == shape and r.style == style]
            if not runs:
                continue
            rates = [r.rate for r in runs]
            cpu = [r.cpu_us_per_message for r in runs]
            medians[shape, style] = (statistics.median(rates), statistics.median(cpu))
            rows.append(
                [
                    shape,
                    SIDE_NAMES[style],
                    str(runs[0].entities),
                    f"{runs[0].messages:,}",
                    str(len(runs)),
                    _median_spread(rates, ",.0f"),
                    _median_spread([r.seconds for r in runs], ".2f"),
                    _median_spread(cpu, ".1f"),
                    _median_spread([r.startup_seconds for r in runs], ".2f")
                    if shape == "fleet"
                    else "-",
                    _median_spread([r.rss_mib for r in runs], ".0f"),
                    f"{statistics.median(r.messages / r.publisher_seconds for r in runs):,.0f}",
                ]
            )
    lines = [markdown_table(headers, rows), ""]
    lines.append("Every value sent became one state_changed event on both sides (checked).")
    lines.append(
        "A side whose msgs/s is near the publisher's is limited by the publisher: "
        "CPU us/msg (this process, all threads) is the steadier comparison on a busy machine."
    )
    for shape in SHAPES:
        ours, theirs = medians.get((shape, "iot_bridge")), medians.get((shape, "ha_mqtt"))
        if ours and theirs:
            lines.append(
                f"{shape}: IoT Bridge / HA MQTT = {ours[0] / theirs[0]:.2f}x msgs/s, "
                f"{theirs[1] / ours[1]:.2f}x less CPU per message (medians)"
            )
    return "\n".join(lines)
