"""Confirmed command round trip: IoT Bridge in Home Assistant against a raw paho client.

    .venv/bin/python -m pytest benchmarks/bench_commands.py -s -p no:cacheprovider

One local mosquitto, one simulated parcel locker (iot_bridge_sim, MQTT 5, in its own
process, TCP_NODELAY on its socket: see benchmarks/peers.py). Measured, sequentially, each command changing the lock's state:

- raw: a plain paho-mqtt MQTT 5 client (TCP_NODELAY) publishes the profile's command with
  Response Topic, Correlation Data and Message Expiry, and waits for the answer;
- iot_bridge.send_command (blocking, return_response) until the confirmed response;
- lock.open / lock.lock service calls until the lock entity shows the confirmed state;
- for the breakdown only: IoT Bridge's own MqttConnection (aiomqtt) doing the raw client's
  request/response on Home Assistant's loop, without engine, entities or services.

Twice: with the broker's `set_tcp_nodelay true`, and with mosquitto's default (Nagle on).
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from itertools import cycle
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from homeassistant.components.lock.const import LockState
from homeassistant.const import ATTR_ENTITY_ID
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from custom_components.iot_bridge.const import DOMAIN, EVENT_COMMAND
from custom_components.iot_bridge.core.mqtt.connection import MqttConnection, MqttSettings
from custom_components.iot_bridge.core.mqtt.receive import Inbound

from .common import (
    Latency,
    Peer,
    header,
    machine,
    markdown_table,
    profiled,
    require,
    setup_hub,
    start_broker,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("socket_enabled")

COMMANDS = 1000  # per series, broker with set_tcp_nodelay
COMMANDS_NAGLE = 200  # per series, default broker: ~40 ms hops make 1,000 take minutes
WARMUP = 20  # commands per series before the clock counts
PREFIX = "benchcmd"
DEVICE = "locker1"
COMMAND_TOPIC = f"{PREFIX}/{DEVICE}/command"
LOCK_ENTITY = "lock.parcel_locker_door_2"  # door2_lock, driven by lock services
SERVICE_CAPABILITY = "door1_lock"  # driven by iot_bridge.send_command
RAW_CAPABILITY = "door3_lock"  # driven by the raw client and the bare connection
DEADLINE = 10.0  # seconds, the hub's default
# Alternating actions, so that every command really changes the lock.
ACTIONS = ("open", "lock")
SHOWN = {"open": LockState.OPEN, "lock": LockState.LOCKED}


# -- raw baselines ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandMessage:
    """One command on the wire: payload, MQTT 5 properties, and the correlation they carry."""

    payload: bytes
    properties: Properties
    correlation: bytes


def command_message(capability: str, action: str, reply_topic: str) -> CommandMessage:
    """A command exactly as docs/protocols/mqtt.md describes it, with its MQTT 5 properties."""
    command_id = uuid.uuid4().hex
    payload = {
        "id": command_id,
        "capability": capability,
        "action": action,
        "params": {},
        "deadline": time.time() + DEADLINE,
        "reply_to": reply_topic,
    }
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.ResponseTopic = reply_topic
    properties.CorrelationData = command_id.encode()
    properties.MessageExpiryInterval = math.ceil(DEADLINE)
    return CommandMessage(json.dumps(payload).encode(), properties, command_id.encode())


def check_answer(answer: dict[str, Any], capability: str, action: str) -> None:
    require(answer.get("status") == "ok", f"command failed: {answer}")
    require(answer["state"][capability] == SHOWN[action], f"wrong state: {answer}")


class RawRequester:
    """What a program without Home Assistant does: paho's network thread, one Event per answer."""

    def __init__(self, port: int) -> None:
        self.reply_topic = f"{PREFIX}/_bridge/bench-raw/reply"
        self._ready = threading.Event()
        self._answered = threading.Event()
        self._waiting_for: bytes | None = None
        self._answer: dict[str, Any] = {}
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"bench-raw-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=60, clean_start=True)
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            # paho leaves Nagle on; a latency-minded client turns it off (IoT Bridge does).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.loop_start()
        require(self._ready.wait(10), "raw client: no SUBACK")

    def _on_connect(self, client: mqtt.Client, *_args: Any) -> None:
        client.subscribe(self.reply_topic, qos=1)

    def _on_subscribe(self, *_args: Any) -> None:
        self._ready.set()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if getattr(msg.properties, "CorrelationData", None) == self._waiting_for:
            self._answer = json.loads(msg.payload)
            self._answered.set()

    def request(self, capability: str, action: str) -> tuple[float, dict[str, Any]]:
        """One command as the profile describes it; seconds until its answer, and the answer."""
        message = command_message(capability, action, self.reply_topic)
        self._waiting_for = message.correlation
        self._answered.clear()
        start = time.perf_counter()
        self.client.publish(COMMAND_TOPIC, message.payload, qos=1, properties=message.properties)
        require(self._answered.wait(DEADLINE), f"raw client: no answer to {message.payload!r}")
        return time.perf_counter() - start, self._answer

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def measure_raw(port: int, count: int) -> list[float]:
    """Runs in an executor thread: Home Assistant's loop is idle meanwhile (no hub yet)."""
    requester = RawRequester(port)
    try:
        times: list[float] = []
        for index, action in zip(range(WARMUP + count), cycle(ACTIONS), strict=False):
            seconds, answer = requester.request(RAW_CAPABILITY, action)
            check_answer(answer, RAW_CAPABILITY, action)
            if index >= WARMUP:
                times.append(seconds)
        return times
    finally:
        requester.close()


async def measure_connection(port: int, count: int) -> list[float]:
    """IoT Bridge's own MqttConnection (aiomqtt) on Home Assistant's loop, nothing above it.

    Not one of the brief's two sides: it splits "ours minus raw" into transport and the rest.
    """
    reply_topic = f"{PREFIX}/_bridge/bench-connection/reply"
    answers: dict[bytes, asyncio.Future[dict[str, Any]]] = {}

    def on_reply(message: Inbound) -> None:
        correlation = getattr(message.properties, "CorrelationData", None)
        future = answers.pop(correlation, None) if isinstance(correlation, bytes) else None
        if future is not None and not future.done() and isinstance(message.payload, bytes):
            future.set_result(json.loads(message.payload))

    connection = MqttConnection(MqttSettings("127.0.0.1", port, "bench-connection"))
    connection.add_subscription(reply_topic, on_reply)
    await connection.start()
    try:
        times: list[float] = []
        for index, action in zip(range(WARMUP + count), cycle(ACTIONS), strict=False):
            command = command_message(RAW_CAPABILITY, action, reply_topic)
            future = asyncio.get_running_loop().create_future()
            answers[command.correlation] = future
            start = time.perf_counter()
            # PUBACK always precedes the answer (the device only sees the command after the
            # broker took it), so this ends at the answer, as the engine does.
            await connection.publish(
                COMMAND_TOPIC, command.payload, qos=1, properties=command.properties
            )
            answer = await asyncio.wait_for(future, DEADLINE)
            seconds = time.perf_counter() - start
            check_answer(answer, RAW_CAPABILITY, action)
            if index >= WARMUP:
                times.append(seconds)
        return times
    finally:
        await connection.stop()


# -- through Home Assistant ---------------------------------------------------------------


@dataclass(slots=True)
class Series:
    """Round trips seen by the caller, and the engine's own publish-to-answer latency."""

    total: list[float]
    engine: list[float]


def record_engine_latency(hass: HomeAssistant) -> list[float]:
    """Engine latencies (s) from the iot_bridge_command event every outcome fires."""
    latencies: list[float] = []

    @callback
    def record(event: Event) -> None:
        latencies.append(event.data["latency_ms"] / 1000)

    hass.bus.async_listen(EVENT_COMMAND, record)
    return latencies


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
        require(response["state"][SERVICE_CAPABILITY] == SHOWN[action], f"state: {response}")
        if index >= WARMUP:
            series.total.append(seconds)
            series.engine.append(response["latency_ms"] / 1000)
    return series


async def measure_lock_service(hass: HomeAssistant, count: int) -> Series:
    engine = record_engine_latency(hass)
    total: list[float] = []
    for index, action in zip(range(WARMUP + count), cycle(ACTIONS), strict=False):
        start = time.perf_counter()
        await hass.services.async_call("lock", action, {ATTR_ENTITY_ID: LOCK_ENTITY}, blocking=True)
        seconds = time.perf_counter() - start
        state = hass.states.get(LOCK_ENTITY)
        require(state is not None and state.state == SHOWN[action], f"{action}: {state}")
        if index >= WARMUP:
            total.append(seconds)
    return Series(total, engine[WARMUP:])


def locker_device_id(hass: HomeAssistant, entry_id: str) -> str:
    device = dr.async_get(hass).async_get_device(identifiers={(DOMAIN, f"{entry_id}_{DEVICE}")})
    if device is None:
        raise RuntimeError("the locker is not in the device registry")
    return device.id


# -- the benchmark --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodelay", "count"),
    [
        pytest.param(True, COMMANDS, id="broker-nodelay"),
        pytest.param(False, COMMANDS_NAGLE, id="broker-default"),
    ],
)
async def test_command_round_trip(
    hass: HomeAssistant, request: pytest.FixtureRequest, nodelay: bool, count: int
) -> None:
    machine_line = await hass.async_add_executor_job(machine)
    broker = await hass.async_add_executor_job(lambda: start_broker(nodelay=nodelay))
    peer = Peer("locker", "--port", str(broker.port), "--prefix", PREFIX)
    try:
        await peer.expect(hass, "ready")
        raw = await hass.async_add_executor_job(measure_raw, broker.port, count)
        connection = await measure_connection(broker.port, count)
        entry = await setup_hub(hass, broker, PREFIX)
        await wait_until(lambda: hass.states.get(LOCK_ENTITY) is not None, "the locker's lock")
        device_id = locker_device_id(hass, entry.entry_id)
        with profiled("iot_bridge.send_command"):
            service = await measure_send_command(hass, device_id, count)
        with profiled("lock services"):
            lock = await measure_lock_service(hass, count)
        await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await hass.async_add_executor_job(peer.close)
        await hass.async_add_executor_job(broker.close)
    broker_setting = "set_tcp_nodelay true" if nodelay else "mosquitto default (Nagle on)"
    title = f"Confirmed command round trip, broker: {broker_setting}"
    print(header(request.config, title, machine_line))
    print(report(raw, connection, service, lock))


def report(raw: list[float], connection: list[float], service: Series, lock: Series) -> str:
    base = Latency.of("raw paho MQTT 5 request/response", raw)
    rows = [
        base,
        Latency.of("(IoT Bridge MqttConnection alone)", connection),
        Latency.of("iot_bridge.send_command → response", service.total),
        Latency.of("  of which engine publish → answer", service.engine),
        Latency.of("lock.open/lock.lock → confirmed state", lock.total),
        Latency.of("  of which engine publish → answer", lock.engine),
    ]
    table = markdown_table(
        ["path", "N", "p50 ms", "p90 ms", "p99 ms", "mean ms"], [row.row() for row in rows]
    )
    ratios = [
        f"{row.label.split(' →')[0]} / raw: p50 {row.p50 / base.p50:.2f}x, "
        f"p99 {row.p99 / base.p99:.2f}x"
        for row in (rows[2], rows[4])
    ]
    return "\n".join([table, "", *ratios])
