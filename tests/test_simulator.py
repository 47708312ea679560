"""The device simulators against a real mosquitto broker and a real MQTT 5 client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from iot_bridge_sim import (
    Behaviour,
    DeviceModel,
    MqttDeviceSimulator,
    climate_node,
    parcel_locker,
)
from iot_bridge_sim.fleet import build_fleet

from .conftest import BROKER_PASSWORD, BROKER_USER
from .mosquitto import Broker

SIMULATOR_DIR = Path(__file__).resolve().parent.parent / "simulator"
HOST = "127.0.0.1"  # pytest-socket only lets tests reach this address
QUIET = 0.4  # how long "no answer" is awaited


@dataclass(frozen=True)
class Msg:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    correlation_data: bytes | None

    def json(self) -> Any:
        return json.loads(self.payload)


class Hub:
    """Stands in for Home Assistant: an MQTT 5 client that watches a prefix and sends commands."""

    def __init__(self, port: int, prefix: str) -> None:
        self.prefix = prefix
        self.reply_topic = f"{prefix}/_bridge/test-{uuid.uuid4().hex[:6]}/reply"
        self._messages: list[Msg] = []
        self._changed = threading.Condition()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"hub-{uuid.uuid4().hex}", protocol=mqtt.MQTTv5
        )
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.connect(HOST, port)
        self._client.loop_start()
        self._client.subscribe(f"{prefix}/#", qos=1)
        assert self._subscribed.wait(5)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        msg = Msg(
            message.topic,
            message.payload,
            bool(message.retain),
            message.qos,
            getattr(message.properties, "CorrelationData", None),
        )
        with self._changed:
            self._messages.append(msg)
            self._changed.notify_all()

    def messages(self, topic: str) -> list[Msg]:
        with self._changed:
            return [msg for msg in self._messages if msg.topic == topic]

    def wait_for(
        self, topic: str, match: Callable[[Msg], bool] = lambda _: True, timeout: float = 3.0
    ) -> Msg:
        def found() -> Msg | None:
            return next((m for m in self._messages if m.topic == topic and match(m)), None)

        with self._changed:
            assert self._changed.wait_for(lambda: found() is not None, timeout), topic
            msg = found()
        assert msg is not None
        return msg

    def answer(self, command_id: str, timeout: float = 3.0) -> Msg:
        return self.wait_for(self.reply_topic, lambda m: m.json()["id"] == command_id, timeout)

    def answers(self, command_id: str) -> list[Msg]:
        return [m for m in self.messages(self.reply_topic) if m.json()["id"] == command_id]

    def send(
        self,
        device_id: str,
        capability: str,
        action: str,
        params: dict[str, Any] | None = None,
        *,
        command_id: str | None = None,
        deadline_in: float = 10.0,
    ) -> str:
        """Publish a command the way the hub does: payload reply_to plus MQTT 5 properties."""
        command_id = command_id or uuid.uuid4().hex
        command = {
            "id": command_id,
            "capability": capability,
            "action": action,
            "params": params or {},
            "deadline": time.time() + deadline_in,
            "reply_to": self.reply_topic,
        }
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = self.reply_topic
        props.CorrelationData = command_id.encode()
        props.MessageExpiryInterval = max(1, int(deadline_in))
        self.publish(f"{self.prefix}/{device_id}/command", json.dumps(command), props)
        return command_id

    def publish(self, topic: str, payload: bytes | str, props: Properties | None = None) -> None:
        self._client.publish(topic, payload, qos=1, properties=props).wait_for_publish(3)


@pytest.fixture
def broker_port(mqtt_broker: Broker) -> int:
    """The session's real mosquitto (tests/conftest.py), on 127.0.0.1."""
    return mqtt_broker.port


@pytest.fixture
def prefix() -> str:
    # A fresh prefix per test keeps retained messages of other tests out of sight.
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def hubs(socket_enabled: None, broker_port: int, prefix: str) -> Iterator[Callable[[], Hub]]:
    opened: list[Hub] = []

    def connect() -> Hub:
        opened.append(Hub(broker_port, prefix))
        return opened[-1]

    yield connect
    for hub in opened:
        hub.close()


type SimFactory = Callable[..., MqttDeviceSimulator]


@pytest.fixture
def sims(socket_enabled: None, broker_port: int, prefix: str) -> Iterator[SimFactory]:
    started: list[MqttDeviceSimulator] = []

    def start(model: DeviceModel | None = None, **kwargs: Any) -> MqttDeviceSimulator:
        sim = MqttDeviceSimulator(
            model or parcel_locker(), host=HOST, port=broker_port, prefix=prefix, **kwargs
        )
        sim.start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop(clear=True)


def _eventually(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    until = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < until, "condition not met in time"
        time.sleep(0.01)


def _payloads(hub: Hub, topic: str) -> list[bytes]:
    return [m.payload for m in hub.messages(topic)]


def _topic(prefix: str, device_id: str, suffix: str) -> str:
    return f"{prefix}/{device_id}/{suffix}"


# -- protocol-neutral model ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("capability", "action", "params", "ok", "state"),
    [
        ("door1_lock", "open", {}, True, {"door1_lock": "open", "door1": True}),
        ("door1_lock", "unlock", {}, True, {"door1_lock": "unlocked"}),
        ("door1_lock", "lock", {}, True, {"door1_lock": "locked", "door1": False}),
        ("door1_lock", "explode", {}, False, {}),
        ("door1", "open", {}, False, {}),
        ("nope", "open", {}, False, {}),
    ],
)
def test_locker_model(
    capability: str, action: str, params: dict[str, Any], ok: bool, state: dict[str, Any]
) -> None:
    model = parcel_locker()
    answer = model.perform(capability, action, params)
    assert (answer.ok, answer.state) == (ok, state)
    assert ok == (answer.reason is None)
    assert model.state.items() >= state.items()


def test_generic_kinds() -> None:
    model = DeviceModel(
        "d1",
        "Generic",
        capabilities=[
            {"kind": "light", "key": "lamp"},
            {"kind": "button", "key": "reboot"},
            {"kind": "number", "key": "level", "min": 0, "max": 10},
            {"kind": "switch", "key": "relay"},
        ],
        state={"lamp": {"on": False, "brightness": 40}},
    )
    assert model.perform("lamp", "turn_on", {}).state == {"lamp": {"on": True, "brightness": 40}}
    dimmed = model.perform("lamp", "turn_on", {"brightness": 200})
    assert dimmed.state == {"lamp": {"on": True, "brightness": 200}}
    assert model.perform("lamp", "turn_off", {}).state == {"lamp": {"on": False, "brightness": 200}}
    assert not model.perform("lamp", "turn_on", {"brightness": 300}).ok
    assert model.perform("reboot", "press", {}) == model.perform("reboot", "press", {"x": 1})
    assert model.perform("reboot", "press", {}).state == {}
    assert model.perform("level", "set", {"value": 7.5}).state == {"level": 7.5}
    for bad in ({}, {"value": "7"}, {"value": True}, {"value": 11}, {"value": -1}):
        answer = model.perform("level", "set", bad)
        assert not answer.ok
        assert answer.reason
    assert model.perform("relay", "turn_on", {}).state == {"relay": True}
    assert model.state["level"] == 7.5


# -- MQTT ----------------------------------------------------------------------------------


def test_announces_retained_config_availability_and_state(
    sims: SimFactory, hubs: Callable[[], Hub], prefix: str
) -> None:
    sim = sims()
    hub = hubs()  # subscribes after the device announced: only retained messages arrive
    config = hub.wait_for(_topic(prefix, "locker1", "config"))
    availability = hub.wait_for(_topic(prefix, "locker1", "availability"))
    state = hub.wait_for(_topic(prefix, "locker1", "state"))
    assert all(m.retain and m.qos == 1 for m in (config, availability, state))
    assert config.json() == sim.model.config_payload()
    assert config.json()["id"] == "locker1"
    assert config.json()["model"] == "PL-3"
    capabilities = {cap["key"]: cap for cap in config.json()["capabilities"]}
    assert capabilities["door2_lock"] == {
        "kind": "lock",
        "key": "door2_lock",
        "name": "Door 2",
        "confirmable": True,
    }
    assert capabilities["door3"]["device_class"] == "door"
    assert capabilities["temperature"]["unit"] == "°C"
    assert availability.payload == b"online"
    assert state.json()["door1_lock"] == "locked"
    assert state.json()["door1"] is False
    assert set(state.json()) == set(capabilities)


def test_open_is_confirmed_with_correlation_data(
    sims: SimFactory, hubs: Callable[[], Hub], prefix: str
) -> None:
    hub = hubs()
    sim = sims()
    command_id = hub.send("locker1", "door2_lock", "open")
    answer = hub.answer(command_id)
    assert answer.json() == {
        "id": command_id,
        "status": "ok",
        "state": {"door2_lock": "open", "door2": True},
    }
    assert answer.correlation_data == command_id.encode()
    assert not answer.retain
    assert answer.qos == 1
    state = hub.wait_for(
        _topic(prefix, "locker1", "state"), lambda m: m.json()["door2_lock"] == "open"
    )
    assert state.json()["door2"] is True
    assert state.json()["door1_lock"] == "locked"
    assert sim.executed == [command_id]
    [received] = sim.received
    assert received.response_topic == hub.reply_topic
    assert received.correlation_data == command_id.encode()
    assert received.message_expiry is not None
    assert 1 <= received.message_expiry <= 10
    assert received.payload is not None
    assert received.payload["capability"] == "door2_lock"


def test_repeated_id_is_answered_again_but_performed_once(
    sims: SimFactory, hubs: Callable[[], Hub]
) -> None:
    hub = hubs()
    sim = sims()
    command_id = hub.send("locker1", "door1_lock", "open")
    first = hub.answer(command_id)
    sim.model.state["door1_lock"] = "locked"  # a repeat must not open it again
    hub.send("locker1", "door1_lock", "open", command_id=command_id)
    hub.wait_for(hub.reply_topic, lambda _: len(hub.answers(command_id)) == 2)
    second = hub.answers(command_id)[1]
    assert second.json() == first.json()
    assert second.correlation_data == command_id.encode()
    assert sim.executed == [command_id]
    assert sim.model.state["door1_lock"] == "locked"
    assert len(sim.received) == 2


def test_refuse_answers_error_with_reason(sims: SimFactory, hubs: Callable[[], Hub]) -> None:
    hub = hubs()
    sim = sims(behaviour=Behaviour(refuse="maintenance"))
    command_id = hub.send("locker1", "door1_lock", "open")
    assert hub.answer(command_id).json() == {
        "id": command_id,
        "status": "error",
        "reason": "maintenance",
    }
    assert sim.executed == []
    assert sim.model.state["door1_lock"] == "locked"


def test_silent_acts_without_answering_and_behaviour_changes_at_runtime(
    sims: SimFactory, hubs: Callable[[], Hub], prefix: str
) -> None:
    hub = hubs()
    sim = sims()
    state_topic = _topic(prefix, "locker1", "state")
    sim.behaviour.silent = True
    lost = hub.send("locker1", "door1_lock", "open")
    hub.wait_for(state_topic, lambda m: m.json()["door1_lock"] == "open")  # the answer is "lost"
    sim.behaviour.report_state = False
    unseen = hub.send("locker1", "door2_lock", "open")
    time.sleep(QUIET)
    assert hub.answers(lost) == hub.answers(unseen) == []
    assert sim.answers == []
    assert not any(m.json()["door2_lock"] == "open" for m in hub.messages(state_topic))
    assert sim.executed == [lost, unseen]
    sim.behaviour.silent = False
    answered = hub.send("locker1", "door3_lock", "open")
    assert hub.answer(answered).json()["status"] == "ok"


def test_drop_first_ignores_the_first_delivery(sims: SimFactory, hubs: Callable[[], Hub]) -> None:
    hub = hubs()
    sim = sims(behaviour=Behaviour(drop_first=1))
    command_id = hub.send("locker1", "door1_lock", "open")
    time.sleep(QUIET)
    assert hub.answers(command_id) == []
    assert sim.executed == []
    assert sim.model.state["door1_lock"] == "locked"
    hub.send("locker1", "door1_lock", "open", command_id=command_id)  # the hub's retry
    assert hub.answer(command_id).json()["status"] == "ok"
    assert sim.executed == [command_id]
    assert len(sim.received) == 2


def test_expired_deadline_is_not_performed(sims: SimFactory, hubs: Callable[[], Hub]) -> None:
    hub = hubs()
    sim = sims()
    command_id = hub.send("locker1", "door1_lock", "open", deadline_in=-1)
    assert hub.answer(command_id).json() == {
        "id": command_id,
        "status": "error",
        "reason": "expired",
    }
    assert sim.executed == []
    assert sim.model.state["door1_lock"] == "locked"


def test_jammed_lock_reports_error_and_state(
    sims: SimFactory, hubs: Callable[[], Hub], prefix: str
) -> None:
    hub = hubs()
    sim = sims(behaviour=Behaviour(jam={"door1_lock"}))
    command_id = hub.send("locker1", "door1_lock", "open")
    assert hub.answer(command_id).json() == {
        "id": command_id,
        "status": "error",
        "reason": "jammed",
        "state": {"door1_lock": "jammed"},
    }
    hub.wait_for(_topic(prefix, "locker1", "state"), lambda m: m.json()["door1_lock"] == "jammed")
    other = hub.send("locker1", "door2_lock", "open")
    assert hub.answer(other).json()["status"] == "ok"
    assert sim.executed == [other]


def test_answer_delay_and_stop_cancels_pending_answers(
    sims: SimFactory, hubs: Callable[[], Hub]
) -> None:
    hub = hubs()
    sim = sims(behaviour=Behaviour(answer_delay=0.3))
    sent = time.monotonic()
    command_id = hub.send("locker1", "door1_lock", "open")
    hub.answer(command_id)
    assert time.monotonic() - sent >= 0.3
    sim.behaviour.answer_delay = 30
    pending = hub.send("locker1", "door2_lock", "open")
    _eventually(lambda: len(sim.received) == 2)
    started = time.monotonic()
    sim.stop()  # must not wait 30 s nor leave the timer thread behind
    assert time.monotonic() - started < 2
    assert hub.answers(pending) == []
    assert sim.executed == [command_id, pending]  # acted at once, only the answer was late


def test_mqtt311_device_answers_on_payload_reply_to(
    sims: SimFactory, hubs: Callable[[], Hub], prefix: str
) -> None:
    hub = hubs()
    sim = sims(climate_node(), protocol="3.1.1")
    hub.wait_for(_topic(prefix, "climate1", "availability"), lambda m: m.payload == b"online")
    command_id = hub.send("climate1", "setpoint", "set", {"value": 22.5})
    answer = hub.answer(command_id)
    assert answer.json() == {"id": command_id, "status": "ok", "state": {"setpoint": 22.5}}
    assert answer.correlation_data is None  # 3.1.1 has no properties
    [received] = sim.received
    assert (received.response_topic, received.message_expiry) == (None, None)
    too_hot = hub.send("climate1", "setpoint", "set", {"value": 40})
    refused = hub.answer(too_hot).json()
    assert refused["status"] == "error"
    assert "outside" in refused["reason"]
    relay = hub.send("climate1", "relay", "turn_on")
    assert hub.answer(relay).json()["state"] == {"relay": True}
    assert sim.executed == [command_id, relay]


def test_crash_makes_the_broker_publish_the_last_will(
    sims: SimFactory, hubs: Callable[[], Hub], prefix: str
) -> None:
    hub = hubs()
    sim = sims()
    availability = _topic(prefix, "locker1", "availability")
    hub.wait_for(availability, lambda m: m.payload == b"online")
    sim.crash()
    hub.wait_for(availability, lambda m: m.payload == b"offline")
    assert not any("iot-bridge-sim" in t.name for t in threading.enumerate())
    late = hubs()  # the will was retained
    assert late.wait_for(availability).payload == b"offline"
    assert late.wait_for(availability).retain


def test_stop_publishes_offline_and_clear_forgets_the_device(
    sims: SimFactory, hubs: Callable[[], Hub], prefix: str
) -> None:
    locker = sims()
    climate = sims(climate_node(), protocol="3.1.1")
    locker.stop()
    climate.stop(clear=True)
    late = hubs()
    assert late.wait_for(_topic(prefix, "locker1", "availability")).payload == b"offline"
    time.sleep(0.2)  # retained messages arrive right after SUBACK; give them a moment
    assert late.messages(_topic(prefix, "locker1", "config"))
    for suffix in ("config", "state", "availability"):
        assert late.messages(_topic(prefix, "climate1", suffix)) == []


def test_malformed_commands_are_ignored(
    sims: SimFactory, hubs: Callable[[], Hub], prefix: str
) -> None:
    hub = hubs()
    lines: list[str] = []
    sim = sims(printer=lines.append)
    command_topic = _topic(prefix, "locker1", "command")
    for junk in (b"{not json", b"[1, 2]", b"\xff\xfe", json.dumps({"capability": "door1_lock"})):
        hub.publish(command_topic, junk)
    command_id = hub.send("locker1", "door1_lock", "open")
    assert hub.answer(command_id).json()["status"] == "ok"
    received = sim.received
    assert [r.payload for r in received[:3]] == [None, None, None]
    assert received[0].raw == b"{not json"
    assert sim.answers == [hub.answer(command_id).json()]
    assert sum("ignored" in line for line in lines) == 4


def test_publish_state_and_publish_raw(
    sims: SimFactory, hubs: Callable[[], Hub], prefix: str
) -> None:
    hub = hubs()
    sim = sims()
    state_topic = _topic(prefix, "locker1", "state")
    sim.publish_state({"temperature": 30.5})
    state = hub.wait_for(state_topic, lambda m: m.json()["temperature"] == 30.5)
    assert state.json()["door1_lock"] == "locked"
    sim.publish_raw("state", b"{broken")
    assert hub.wait_for(state_topic, lambda m: m.payload == b"{broken").retain is False


def test_credentials_and_refused_login(
    socket_enabled: None, auth_broker: Broker, prefix: str
) -> None:
    def locker(password: str) -> MqttDeviceSimulator:
        return MqttDeviceSimulator(
            parcel_locker(),
            host=HOST,
            port=auth_broker.port,
            prefix=prefix,
            username=BROKER_USER,
            password=password,
            printer=lambda _: None,
        )

    with pytest.raises(ConnectionError, match="refused"):
        locker("wrong").start()
    assert not any("iot-bridge-sim" in t.name for t in threading.enumerate())
    sim = locker(BROKER_PASSWORD)
    sim.start()
    sim.stop(clear=True)


def test_restart_after_stop_and_crash(
    sims: SimFactory, hubs: Callable[[], Hub], prefix: str
) -> None:
    hub = hubs()
    sim = sims()
    availability = _topic(prefix, "locker1", "availability")

    def restart_and_command(offline_count: int) -> None:
        _eventually(lambda: _payloads(hub, availability).count(b"offline") == offline_count)
        sim.start()
        command_id = hub.send("locker1", "door1_lock", "unlock")
        assert hub.answer(command_id).json()["status"] == "ok"

    sim.stop()
    restart_and_command(1)
    sim.crash()
    restart_and_command(2)
    assert _payloads(hub, availability)[-1] == b"online"


def _run_cli(port: int, prefix: str, log: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(SIMULATOR_DIR)}
    cmd = [sys.executable, "-m", "iot_bridge_sim", "--port", str(port), "--prefix", prefix]
    with log.open("wb") as out:
        return subprocess.Popen([*cmd, *args], stdout=out, stderr=subprocess.STDOUT, env=env)


def _wait_for_text(log: Path, text: str, timeout: float = 5.0) -> str:
    until = time.monotonic() + timeout
    while text not in (output := log.read_text()) and time.monotonic() < until:
        time.sleep(0.02)
    assert text in output, output
    return output


def test_cli_prints_requests_and_answers_and_exits_on_sigterm(
    hubs: Callable[[], Hub], broker_port: int, prefix: str, tmp_path: Path
) -> None:
    hub = hubs()
    log = tmp_path / "cli.log"
    proc = _run_cli(broker_port, prefix, log, "--device", "locker")
    try:
        _wait_for_text(log, "locker1 online")
        command_id = hub.send("locker1", "door2_lock", "open")
        assert hub.answer(command_id).json()["status"] == "ok"
        _wait_for_text(log, f"locker1 <- open door2_lock id={command_id[:8]}")
        _wait_for_text(log, 'locker1 -> ok {"door2_lock": "open", "door2": true}')
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    availability = _topic(prefix, "locker1", "availability")
    hub.wait_for(availability, lambda m: m.payload == b"offline")
    assert hub.messages(_topic(prefix, "climate1", "config")) == []


def test_cli_offline_after_fires_the_last_will(
    hubs: Callable[[], Hub], broker_port: int, prefix: str, tmp_path: Path
) -> None:
    hub = hubs()
    proc = _run_cli(broker_port, prefix, tmp_path / "cli.log", "--offline-after", "0.3")
    try:
        assert proc.wait(5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for device_id in ("locker1", "climate1"):
        availability = _topic(prefix, device_id, "availability")
        hub.wait_for(availability, lambda m: m.payload == b"offline")
    assert "crashed" in (tmp_path / "cli.log").read_text()


def test_fleet_numbers_ids_from_first_number() -> None:
    """--number lets a second fleet run beside the first without clashing ids."""
    fleet = build_fleet(["locker", "locker", "climate"], first_number=2)
    assert [sim.device_id for sim in fleet] == ["locker2", "locker3", "climate2"]
