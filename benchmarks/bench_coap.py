"""CoAP: confirmed commands through Home Assistant against a raw aiocoap request, and
Observe notifications into entity states.

    .venv/bin/python -m pytest benchmarks/bench_coap.py -s -p no:cacheprovider

The simulated device (iot_bridge_sim's CoAP transport, an aiocoap server) runs in its own
process (benchmarks/coap_peer.py), so its Python work does not compete with Home
Assistant's loop.

Commands, sequentially, every command changing the lock (open, locked, open, ...):
- raw: a plain aiocoap client context sends the profile's confirmable PUT (with `id` and
  `dl` queries) to /door3_lock and waits for the 2.04, on Home Assistant's loop before any
  entry is loaded (so the loop is idle);
- iot_bridge.send_command (blocking, return_response) on door1_lock until the confirmed
  response;
- lock.open / lock.lock on door2_lock until the entity shows the confirmed state.

Notifications: a meter with 10 observable sensors changes all of them ROUNDS times as fast
as its loop allows (one notification per sensor per round, confirmable, so at most one in
flight to Home Assistant at a time, as RFC 7252 asks). The clock runs from the "flood"
command until every sensor entity shows the last value.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from itertools import cycle
from typing import Any

import pytest
from aiocoap import Context, Message, Reliable
from aiocoap.numbers.codes import Code
from aiocoap.transports.udp6 import UDP6EndpointAddress
from homeassistant.const import ATTR_ENTITY_ID, CONF_HOST, CONF_PORT, EVENT_STATE_CHANGED
from homeassistant.core import Event, HomeAssistant, callback
from pytest_homeassistant_custom_component.common import (  # type: ignore[import-untyped]
    MockConfigEntry,
)

from custom_components.iot_bridge.const import (
    CONF_DEVICE_ID,
    CONF_PROTOCOL,
    DOMAIN,
    EVENT_COMMAND,
    PROTOCOL_COAP,
)

from .common import ROOT, Latency, header, machine, markdown_table, profiled, require, wait_until

pytestmark = pytest.mark.usefixtures("socket_enabled")

COMMANDS = int(os.environ.get("BENCH_COMMANDS", "1000"))
WARMUP = 20
ROUNDS = 2000  # x 10 sensors = 20,000 notifications
DEADLINE = 10.0  # the entry's default
TARGET = {"open": "open", "lock": "locked"}
ACTIONS = ("open", "lock")
LOCK_ENTITY = "lock.parcel_locker_door_2"
SERVICE_CAPABILITY = "door1_lock"
RAW_PATH = "door3_lock"


class CoapPeer:
    """`python -m benchmarks.coap_peer KIND`: stdin commands, stdout replies."""

    def __init__(self, kind: str) -> None:
        env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "simulator")])}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.coap_peer", kind],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.port = int(self.read("ready")[1])

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def read(self, expected: str) -> list[str]:
        assert self.process.stdout is not None
        words = self.process.stdout.readline().split()
        require(bool(words) and words[0] == expected, f"peer said {words!r}")
        return words

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def _entry(port: int, device_id: str, title: str) -> MockConfigEntry:
    # The entry the flow creates, default options (10 s deadline, 2 retries, 30 s polling).
    return MockConfigEntry(
        domain=DOMAIN,
        title=title,
        data={
            CONF_PROTOCOL: PROTOCOL_COAP,
            CONF_HOST: "127.0.0.1",
            CONF_PORT: port,
            CONF_DEVICE_ID: device_id,
        },
        unique_id=f"coap:{device_id}",
    )


async def _setup(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    entry.add_to_hass(hass)
    require(await hass.config_entries.async_setup(entry.entry_id), "IoT Bridge did not load")
    await hass.async_block_till_done()


# -- commands -----------------------------------------------------------------------------


async def measure_raw(port: int, count: int) -> list[float]:
    """The profile's request from a bare aiocoap client, nothing above it."""
    context = await Context.create_client_context(transports=["udp6"])
    interface = context.request_interfaces[0].token_interface.message_interface
    # Addressed directly: the test harness refuses aiocoap's route check (a UDP connect).
    remote = UDP6EndpointAddress(("::ffff:127.0.0.1", port, 0, 0), interface)
    try:
        times: list[float] = []
        for index, action in zip(range(WARMUP + count), cycle(ACTIONS), strict=False):
            message = Message(
                code=Code.PUT,
                uri_path=(RAW_PATH,),
                uri_query=(f"id={uuid.uuid4().hex}", f"dl={time.time() + DEADLINE:.3f}"),
                payload=TARGET[action].encode(),
                content_format=0,
                transport_tuning=Reliable(),
            )
            message.remote = remote
            start = time.perf_counter()
            response = await context.request(message, handle_blockwise=False).response
            seconds = time.perf_counter() - start
            require(response.code == Code.CHANGED, f"raw: {response.code} {response.payload!r}")
            require(response.payload == TARGET[action].encode(), f"raw: {response.payload!r}")
            if index >= WARMUP:
                times.append(seconds)
        return times
    finally:
        await context.shutdown()


@dataclass(slots=True)
class Series:
    total: list[float]
    engine: list[float]


async def measure_send_command(hass: HomeAssistant, device_id: str, count: int) -> Series:
    series = Series([], [])
    for index, action in zip(range(WARMUP + count), cycle(ACTIONS), strict=False):
        data = {"device_id": device_id, "capability": SERVICE_CAPABILITY, "action": action}
        start = time.perf_counter()
        reply = await hass.services.async_call(
            DOMAIN, "send_command", data, blocking=True, return_response=True
        )
        seconds = time.perf_counter() - start
        response: dict[str, Any] = dict(reply or {})
        require(response.get("status") == "confirmed", f"send_command: {response}")
        require(response["state"][SERVICE_CAPABILITY] == TARGET[action], f"{response}")
        if index >= WARMUP:
            series.total.append(seconds)
            series.engine.append(response["latency_ms"] / 1000)
    return series


async def measure_lock_service(hass: HomeAssistant, count: int) -> Series:
    engine: list[float] = []

    @callback
    def record(event: Event) -> None:
        engine.append(event.data["latency_ms"] / 1000)

    hass.bus.async_listen(EVENT_COMMAND, record)
    total: list[float] = []
    for index, action in zip(range(WARMUP + count), cycle(ACTIONS), strict=False):
        start = time.perf_counter()
        await hass.services.async_call("lock", action, {ATTR_ENTITY_ID: LOCK_ENTITY}, blocking=True)
        seconds = time.perf_counter() - start
        state = hass.states.get(LOCK_ENTITY)
        require(state is not None and state.state == TARGET[action], f"{action}: {state}")
        if index >= WARMUP:
            total.append(seconds)
    return Series(total, engine[WARMUP:])


async def test_coap_command_round_trip(hass: HomeAssistant, request: pytest.FixtureRequest) -> None:
    machine_line = await hass.async_add_executor_job(machine)
    peer = await hass.async_add_executor_job(CoapPeer, "locker")
    try:
        raw = await measure_raw(peer.port, COMMANDS)
        entry = _entry(peer.port, "locker1", "Parcel locker")
        await _setup(hass, entry)
        await wait_until(
            lambda: (s := hass.states.get(LOCK_ENTITY)) is not None and s.state == "locked",
            "the locker's lock",
        )
        device_id = entry.runtime_data.device_registry_id("locker1")
        with profiled("iot_bridge.send_command (CoAP)"):
            service = await measure_send_command(hass, device_id, COMMANDS)
        with profiled("lock services (CoAP)"):
            lock = await measure_lock_service(hass, COMMANDS)
        await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await hass.async_add_executor_job(peer.close)
    print(header(request.config, "CoAP confirmed command round trip", machine_line))
    base = Latency.of("raw aiocoap CON PUT → 2.04", raw)
    rows = [
        base,
        Latency.of("iot_bridge.send_command → response", service.total),
        Latency.of("  of which engine request → answer", service.engine),
        Latency.of("lock.open/lock.lock → confirmed state", lock.total),
        Latency.of("  of which engine request → answer", lock.engine),
    ]
    print(
        markdown_table(
            ["path", "N", "p50 ms", "p90 ms", "p99 ms", "mean ms"], [row.row() for row in rows]
        )
    )
    for row in (rows[1], rows[3]):
        print(
            f"\n{row.label.split(' →')[0]} / raw: p50 {row.p50 / base.p50:.2f}x, "
            f"p99 {row.p99 / base.p99:.2f}x"
        )


# -- notifications -------------------------------------------------------------------------


async def test_coap_notifications(hass: HomeAssistant, request: pytest.FixtureRequest) -> None:
    machine_line = await hass.async_add_executor_job(machine)
    peer = await hass.async_add_executor_job(CoapPeer, "meter")
    sensors = [f"sensor.meter_s{index}" for index in range(10)]
    try:
        entry = _entry(peer.port, "meter1", "Meter")
        await _setup(hass, entry)
        await wait_until(
            lambda: all((s := hass.states.get(e)) is not None and s.state == "0" for e in sensors),
            "the meter's sensors",
        )
        # A short warm-up flood, so the measured one starts from steady state.
        await hass.async_add_executor_job(peer.send, "flood 20")
        await hass.async_add_executor_job(peer.read, "flooded")
        await wait_until(lambda: all(hass.states.get(e).state == "20" for e in sensors), "warm-up")
        seen = 0

        @callback
        def count(event: Event) -> None:
            nonlocal seen
            if event.data["entity_id"] in sensors:
                seen += 1

        unsubscribe = hass.bus.async_listen(EVENT_STATE_CHANGED, count)
        last = str(ROUNDS)
        with profiled("CoAP notifications"):
            start = time.perf_counter()
            await hass.async_add_executor_job(peer.send, f"flood {ROUNDS}")
            await wait_until(
                lambda: all(hass.states.get(e).state == last for e in sensors),
                "the last value on every sensor",
                timeout=300,
            )
            seconds = time.perf_counter() - start
        unsubscribe()
        device_seconds = float((await hass.async_add_executor_job(peer.read, "flooded"))[1])
        diagnostics = entry.runtime_data.bridge.diagnostics()
        received = sum(r.get("notifications", 0) for r in diagnostics["resources"])
        await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await hass.async_add_executor_job(peer.close)
    sent = ROUNDS * len(sensors)
    print(header(request.config, "CoAP Observe notifications into entity states", machine_line))
    print(
        markdown_table(
            [
                "notifications sent",
                "device seconds",
                "received by IoT Bridge (incl. warm-up)",
                "entity updates seen",
                "seconds to last value",
                "notifications/s",
                "entity updates/s",
            ],
            [
                [
                    str(sent),
                    f"{device_seconds:.2f}",
                    str(received),
                    str(seen),
                    f"{seconds:.2f}",
                    f"{sent / seconds:,.0f}",
                    f"{seen / seconds:,.0f}",
                ]
            ],
        )
    )
