"""MQTT transport for a DeviceModel, following docs/protocols/mqtt.md to the letter."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from .behaviour import Behaviour
from .commands import CommandProcessor, Outcome
from .devices import DeviceModel

MAX_PAYLOAD = 16 * 1024  # the profile drops larger JSON payloads
PUBLISH_TIMEOUT = 2.0  # how long stop()/publish_* wait for the broker's PUBACK

type Printer = Callable[[str], None]


def print_line(line: str) -> None:
    print(line, flush=True)


@dataclass(frozen=True, slots=True)
class ReceivedCommand:
    """One delivery on the command topic, as the device saw it."""

    payload: dict[str, Any] | None  # None: not a JSON object (ignored)
    raw: bytes
    correlation_data: bytes | None
    response_topic: str | None
    message_expiry: int | None  # seconds left as the broker forwarded it (MQTT 5 only)
    received_at: float  # time.time()


@dataclass(frozen=True, slots=True)
class _Reply:
    outcome: Outcome
    topic: str | None
    correlation_data: bytes | None


def _no_delay(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    """A device answers with several small writes (state, answer, PUBACK); with Nagle's
    algorithm on, ~1 % of answers wait ~40 ms for a delayed ACK. The profile advises this."""
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def parse_command(raw: bytes) -> dict[str, Any] | None:
    if len(raw) > MAX_PAYLOAD:
        return None
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError included
        return None
    return data if isinstance(data, dict) else None


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _short(command_id: str) -> str:
    return command_id if len(command_id) <= 8 else f"{command_id[:8]}…"


class MqttDeviceSimulator:
    """One simulated device on an MQTT broker (paho network thread + answer timers)."""

    def __init__(
        self,
        model: DeviceModel,
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        prefix: str = "iot_bridge",
        protocol: Literal["5", "3.1.1"] = "5",
        behaviour: Behaviour | None = None,
        printer: Printer | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.model = model
        self.host, self.port, self.prefix, self.protocol = host, port, prefix, protocol
        self._processor = CommandProcessor(model, behaviour or Behaviour())
        self._print = printer or print_line
        self._lock = threading.Lock()
        self._received: list[ReceivedCommand] = []
        self._answers: list[dict[str, Any]] = []
        self._timers: list[threading.Timer] = []
        self._ready = threading.Event()
        self._refused: str | None = None
        self._announced: list[mqtt.MQTTMessageInfo] = []
        self._running = self._stopping = self._crashing = False
        self._credentials = (username, password)
        self._client = self._make_client()

    # -- public API ---------------------------------------------------------------------

    @property
    def behaviour(self) -> Behaviour:
        return self._processor.behaviour

    @behaviour.setter
    def behaviour(self, value: Behaviour) -> None:
        self._processor.behaviour = value

    @property
    def device_id(self) -> str:
        return self.model.device_id

    @property
    def received(self) -> list[ReceivedCommand]:
        with self._lock:
            return list(self._received)

    @property
    def executed(self) -> list[str]:
        return self._processor.executed

    @property
    def answers(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._answers)

    def topic(self, suffix: str) -> str:
        return f"{self.prefix}/{self.device_id}/{suffix}"

    def start(self, timeout: float = 5.0) -> None:
        """Connect, subscribe and announce; return once the broker has all of it."""
        if self._running:
            return
        until = time.monotonic() + timeout
        # A fresh client per run: nothing queued during the last one is sent late.
        self._client = self._make_client()
        self._ready.clear()
        self._refused = None
        self._stopping = self._crashing = False
        clean = {"clean_start": True} if self.protocol == "5" else {}
        self._client.connect(self.host, self.port, keepalive=30, **clean)  # type: ignore[arg-type]
        self._client.loop_start()
        self._running = True
        if (problem := self._await_announced(until)) is not None:
            self._stopping = True
            self._client.disconnect()  # ends paho's reconnect loop at once
            self._halt()
            raise ConnectionError(f"{self.device_id}: {problem}")
        self._print(
            f"{self.device_id} online (MQTT {self.protocol}, {self.host}:{self.port}, "
            f"prefix {self.prefix})"
        )

    def stop(self, clear: bool = False) -> None:
        """Leave gracefully: retained "offline" (or forget the device entirely), DISCONNECT."""
        if not self._running:
            return
        self._stopping = True
        self._cancel_timers()
        infos = [self._publish("availability", "offline", retain=True)]
        if clear:
            # Empty retained payloads make the broker forget the device.
            infos += [self._publish(suffix, b"", retain=True) for suffix in ("config", "state")]
            infos.append(self._publish("availability", b"", retain=True))
        self._wait_published(infos, time.monotonic() + PUBLISH_TIMEOUT)
        self._client.disconnect()
        self._halt()
        self._print(f"{self.device_id} offline ({'stopped, cleared' if clear else 'stopped'})")

    def crash(self) -> None:
        """Vanish without DISCONNECT so the broker publishes the Last Will."""
        if not self._running:
            return
        self._stopping = self._crashing = True
        self._cancel_timers()
        sock = self._client.socket()
        if isinstance(sock, socket.socket):
            # Already gone is fine: the broker has noticed, or will at keepalive.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._halt()
        self._print(f"{self.device_id} crashed (connection dropped, Last Will follows)")

    def publish_state(self, values: dict[str, Any]) -> None:
        with self._processor.lock:
            self.model.state |= values
        if self._running:
            self._wait_published([self._publish_state()], time.monotonic() + PUBLISH_TIMEOUT)

    def publish_raw(self, topic_suffix: str, payload: bytes | str, retain: bool = False) -> None:
        info = self._publish(topic_suffix, payload, retain=retain)
        self._wait_published([info], time.monotonic() + PUBLISH_TIMEOUT)

    # -- connection -------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        v5 = self.protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"iot-bridge-sim-{self.device_id}-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else True,
        )
        client.will_set(self.topic("availability"), "offline", qos=1, retain=True)
        username, password = self._credentials
        if username is not None:
            client.username_pw_set(username, password)
        client.on_socket_open = _no_delay
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self._connect_refused(client, reason)
            return
        # Subscribe before announcing, so a hub reacting to the config finds us listening.
        client.subscribe(self.topic("command"), qos=1)
        self._announced = self._announce()

    def _connect_refused(self, client: mqtt.Client, reason: ReasonCode) -> None:
        if self._ready.is_set():  # a later reconnect: paho keeps trying
            self._print(f"{self.device_id} broker refused the reconnect: {reason}")
            return
        # start() gives up; disconnecting here spares paho's 1 s reconnect wait.
        self._refused = f"broker refused the connection: {reason}"
        self._stopping = True
        client.disconnect()
        self._ready.set()

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _mid: int,
        reasons: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        if any(reason.is_failure for reason in reasons):
            self._refused = f"broker refused the command subscription: {reasons}"
        self._ready.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if self._crashing:
            # Called on paho's own thread: only flags it to end instead of reconnecting.
            client.loop_stop()
        elif not self._stopping:
            self._print(f"{self.device_id} lost the broker ({reason}), reconnecting")

    def _await_announced(self, until: float) -> str | None:
        """None once connected, subscribed and announced; else what went wrong."""
        if not self._ready.wait(max(0.0, until - time.monotonic())):
            return "no answer from the broker"
        if self._refused is not None:
            return self._refused
        if not self._wait_published(self._announced, until):
            return "the broker did not acknowledge the announcement"
        return None

    def _announce(self) -> list[mqtt.MQTTMessageInfo]:
        return [
            self._publish("config", _dumps(self.model.config_payload()), retain=True),
            self._publish("availability", "online", retain=True),
            self._publish_state(),
        ]

    def _halt(self) -> None:
        self._client.loop_stop()  # joins paho's thread
        self._running = False

    def _publish(self, suffix: str, payload: bytes | str, *, retain: bool) -> mqtt.MQTTMessageInfo:
        return self._client.publish(self.topic(suffix), payload, qos=1, retain=retain)

    def _publish_state(self) -> mqtt.MQTTMessageInfo:
        # Always the full state, retained: a hub (re)starting later sees every key.
        with self._processor.lock:
            payload = _dumps(self.model.state)
        return self._publish("state", payload, retain=True)

    @staticmethod
    def _wait_published(infos: list[mqtt.MQTTMessageInfo], until: float) -> bool:
        try:
            for info in infos:
                info.wait_for_publish(max(0.0, until - time.monotonic()))
        except (RuntimeError, ValueError):
            return False  # not connected / queue full: nothing more to wait for
        return all(info.is_published() for info in infos)

    # -- commands ---------------------------------------------------------------------

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        received = self._record(message)
        command = received.payload
        if command is None:
            self._print(f"{self.device_id} <- malformed command ignored: {received.raw[:80]!r}")
            return
        outcome = self._processor.handle(command)
        self._print(self._describe_command(command, received, outcome))
        if outcome.command_id is None or outcome.dropped:
            return
        reply_to = received.response_topic or command.get("reply_to")
        self._schedule(
            _Reply(
                outcome, reply_to if isinstance(reply_to, str) else None, received.correlation_data
            )
        )

    def _record(self, message: mqtt.MQTTMessage) -> ReceivedCommand:
        props = message.properties
        received = ReceivedCommand(
            payload=parse_command(message.payload),
            raw=message.payload,
            correlation_data=getattr(props, "CorrelationData", None),
            response_topic=getattr(props, "ResponseTopic", None),
            message_expiry=getattr(props, "MessageExpiryInterval", None),
            received_at=time.time(),
        )
        with self._lock:
            self._received.append(received)
        return received

    def _describe_command(
        self, command: dict[str, Any], received: ReceivedCommand, outcome: Outcome
    ) -> str:
        if outcome.command_id is None:
            return f"{self.device_id} <- command without id ignored: {received.raw[:80]!r}"
        details = f"attempt {outcome.attempt}"
        if received.message_expiry is not None:
            details += f", expiry {received.message_expiry}s"
        if outcome.dropped:
            details += ", dropped"
        what = f"{command.get('action')} {command.get('capability')}"
        return f"{self.device_id} <- {what} id={_short(outcome.command_id)} ({details})"

    def _schedule(self, reply: _Reply) -> None:
        delay = self.behaviour.answer_delay
        if delay <= 0:
            self._deliver(reply)
            return
        timer = threading.Timer(delay, self._deliver, args=(reply,))
        timer.name = f"iot-bridge-sim-{self.device_id}-answer"
        timer.daemon = True
        with self._lock:
            if self._stopping:
                return
            self._timers = [t for t in self._timers if t.is_alive()]
            self._timers.append(timer)
            timer.start()

    def _cancel_timers(self) -> None:
        with self._lock:
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()
            timer.join()

    def _deliver(self, reply: _Reply) -> None:
        outcome = reply.outcome
        if outcome.changed and self.behaviour.report_state:
            self._publish_state()
        if self.behaviour.silent:
            self._print(
                f"{self.device_id} -- silent, no answer to id={_short(outcome.command_id or '')}"
            )
            return
        if reply.topic is None or outcome.answer is None:
            self._print(f"{self.device_id} -- no reply topic in command, cannot answer")
            return
        self._send_answer(reply.topic, outcome.answer, reply.correlation_data)
        suffix = " (repeat, not performed again)" if outcome.repeat else ""
        self._print(f"{self.device_id} -> {_describe_answer(outcome.answer)}{suffix}")

    def _send_answer(self, topic: str, answer: dict[str, Any], correlation: bytes | None) -> None:
        properties = None
        if self.protocol == "5" and correlation is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.CorrelationData = correlation
        self._client.publish(topic, _dumps(answer), qos=1, retain=False, properties=properties)
        with self._lock:
            self._answers.append(answer)


def _describe_answer(answer: dict[str, Any]) -> str:
    text = str(answer["status"])
    if "reason" in answer:
        text += f" {answer['reason']!r}"
    if "state" in answer:
        text += f" {_dumps(answer['state'])}"
    return text
