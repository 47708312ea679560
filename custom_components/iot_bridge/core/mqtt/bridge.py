"""MQTT devices on one broker: discovery, state, availability and confirmed commands."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ..bridge import PROBLEM_BROKER_NAGLE, BridgeAuthError, BridgeListener, BridgeStartError
from ..commands import CommandEngine, TransportInterrupted, TransportUnavailable
from ..devices import MAX_EARLY_DEVICES, DeviceStore, RejectLog
from ..flood import StateFloodGate
from ..model import Capability, Command, CommandResult, CommandStatus, Device
from .connection import (
    MqttAuthError,
    MqttConnectError,
    MqttConnection,
    MqttLinkLost,
    MqttNotConnected,
    MqttSettings,
)
from .profile import (
    ProfileError,
    Topics,
    encode_command,
    parse_availability,
    parse_device_config,
    parse_reply,
    parse_state,
)
from .receive import Inbound
from .stall import BrokerStallProbe

_LOGGER = logging.getLogger(__name__)
_REPLY_SOURCE = "(reply topic)"


def command_client_id(client_id: str) -> str:
    """The client id of the command connection; empty lets the broker pick one."""
    return f"{client_id}-cmd" if client_id else ""


class MqttBridge:
    """Turns MQTT messages into Device updates and commands into MQTT requests."""

    def __init__(
        self,
        settings: MqttSettings,
        topics: Topics,
        engine: CommandEngine,
        listener: BridgeListener,
        *,
        accept_new_devices: Callable[[str], bool] = lambda _device_id: True,
        on_auth_failed: Callable[[], None] | None = None,
    ) -> None:
        self.topics = topics
        self.engine = engine
        self.rejects = RejectLog(_LOGGER)
        self.store = DeviceStore(listener, self.rejects)
        self._listener = listener
        self._accept_new = accept_new_devices
        self._held: dict[str, Device] = {}
        self._reported_connected = False
        self.flood = StateFloodGate(self.store.apply_state, logger=_LOGGER)
        self.connection = MqttConnection(
            settings,
            on_connection_change=self._connection_changed,
            on_auth_failed=on_auth_failed,
        )
        connection = self.connection
        connection.add_subscription(topics.device_filter("config"), self._on_config)
        connection.add_subscription(topics.device_filter("state"), self._on_state)
        connection.add_subscription(topics.device_filter("availability"), self._on_availability)
        # Commands and their answers have a connection of their own: an answer never waits
        # in a TCP stream or broker queue behind other devices' state (issue 8).
        self.commands = MqttConnection(
            replace(settings, client_id=command_client_id(settings.client_id)),
            on_connection_change=self._connection_changed,
            role="command",
        )
        self.commands.add_subscription(topics.reply, self._on_reply)
        # Sent on the state connection, received on the command connection: the path answers take.
        self.stall = BrokerStallProbe(
            lambda topic, payload: self.connection.publish(topic, payload, qos=0),
            topics.probe,
            lambda stalled: listener.problem_changed(PROBLEM_BROKER_NAGLE, stalled),
        )
        self.commands.add_subscription(
            self.stall.subscription,
            lambda message: self.stall.handle(message.topic, message.payload),
            qos=0,
        )

    # Bridge -----------------------------------------------------------------

    @property
    def devices(self) -> Mapping[str, Device]:
        """Devices announced on the broker."""
        return self.store.devices

    @property
    def connected(self) -> bool:
        """Whether both broker connections (state and commands) are up."""
        return self.connection.connected and self.commands.connected

    def _connection_changed(self, _connected: bool) -> None:
        """Either connection changed: tell the listener when the pair's state changes."""
        connected = self.connected
        if connected != self._reported_connected:
            self._reported_connected = connected
            self._listener.connection_changed(connected)

    def describe(self) -> str:
        """The broker, for messages."""
        return f"MQTT broker {self.connection.settings.host}:{self.connection.settings.port}"

    async def start(self) -> None:
        """Connect to the broker; retained announcements arrive right after."""
        try:
            # The reply topic is subscribed before any device can be asked anything.
            await self.commands.start()
            await self.connection.start()
        except MqttAuthError as err:
            await self.commands.stop()
            raise BridgeAuthError(str(err)) from err
        except MqttConnectError as err:
            await self.commands.stop()
            raise BridgeStartError(str(err)) from err

    async def stop(self) -> None:
        """Disconnect both connections; held state of flooding devices is dropped."""
        await self.stall.stop()
        await self.connection.stop()
        await self.commands.stop()
        # Last: a message handled while the connection closed may have started its timer.
        self.flood.stop()

    def diagnostics(self) -> dict[str, Any]:
        """Broker connection, topics and what was dropped."""
        return {
            "connection": _connection_diagnostics(self.connection),
            "command_connection": _connection_diagnostics(self.commands),
            "topics": {
                "discovery_prefix": self.topics.prefix,
                "reply": self.topics.reply,
            },
            "dropped_messages": dict(self.rejects.counts),
            "broker_stall": {
                "stalled": self.stall.stalled,
                "probes": self.stall.probes,
                "recent_gaps_ms": [round(gap, 2) for gap in self.stall.gaps],
            },
            "flooding_devices": self.flood.flooding,
            "coalesced_state_messages": self.flood.held,
        }

    def device_diagnostics(self, device_id: str) -> dict[str, Any]:
        """The device's topics with the QoS each is used at, and what of it was dropped."""
        topic = self.topics.device_topic
        return {
            "topics": {
                "config": {"topic": topic(device_id, "config"), "qos": 1, "retained": True},
                "state": {"topic": topic(device_id, "state"), "qos": 1},
                "availability": {"topic": topic(device_id, "availability"), "qos": 1},
                "command": {
                    "topic": topic(device_id, "command"),
                    "qos": 1,
                    "response_topic": self.topics.reply,
                },
            },
            "flooding": device_id in self.flood.flooding,
        }

    # Inbound ---------------------------------------------------------------

    def _on_config(self, message: Inbound) -> None:
        device_id = self._device_id(message)
        if device_id is None:
            return
        try:
            device = parse_device_config(device_id, message.payload)
        except ProfileError as err:
            self._drop(device_id, "config", err)
            return
        self.rejects.accept(device_id, "config")
        if device is None:
            self.flood.forget(device_id)
            self.store.remove(device_id)
            return
        if device_id not in self.store.devices and not self._accept_new(device_id):
            # Held until the user accepts it (admit) or ignores it; bounded like early state.
            self._held.pop(device_id, None)
            self._held[device_id] = device
            while len(self._held) > MAX_EARLY_DEVICES:
                self._held.pop(next(iter(self._held)))
            _LOGGER.info(
                "New device %s waits for acceptance (automatic discovery is off)", device_id
            )
            return
        self._held.pop(device_id, None)
        self.store.announce(device)

    async def admit(self, device_id: str) -> None:
        """The user accepted a device announced while automatic discovery was off."""
        device = self._held.pop(device_id, None)
        if device is not None:
            self.store.announce(device)

    def _on_state(self, message: Inbound) -> None:
        device_id = self._device_id(message)
        if device_id is None:
            return
        try:
            values = parse_state(message.payload)
        except ProfileError as err:
            self._drop(device_id, "state", err)
            return
        self.rejects.accept(device_id, "state")
        if self.flood.admit(device_id, values):
            self.store.apply_state(device_id, values)

    def _on_availability(self, message: Inbound) -> None:
        device_id = self._device_id(message)
        if device_id is None:
            return
        try:
            available = parse_availability(message.payload)
        except ProfileError as err:
            self._drop(device_id, "availability", err)
            return
        self.rejects.accept(device_id, "availability")
        device = self.store.devices.get(device_id)
        back = available and device is not None and not device.available
        self.store.set_available(device_id, available)
        # A device announces "online" after subscribing to its command topic (the profile's
        # order), live rather than from the broker's retained store: back from its Last Will,
        # or reconnected after the broker restarted. Its pending commands go out again now
        # (same id, so it acts at most once) instead of waiting for a retry slot.
        if back or (available and device is not None and not message.retain):
            self.engine.resend_pending(device_id)

    def _on_reply(self, message: Inbound) -> None:
        correlation = getattr(message.properties, "CorrelationData", None)
        try:
            reply = parse_reply(message.payload, correlation)
        except ProfileError as err:
            # Every device answers on this topic: one device's good answer says nothing
            # about another's bad ones, so each cause is logged once for the hub's lifetime.
            self._drop(_REPLY_SOURCE, "answer", err)
            return
        self.engine.handle_reply(reply)

    def _device_id(self, message: Inbound) -> str | None:
        device_id = self.topics.device_id_of(message.topic)
        if device_id is None:
            self.rejects.counts["bad_topic"] += 1
            _LOGGER.debug("Ignoring message on unexpected topic %s", message.topic)
        return device_id

    def _drop(self, device_id: str, what: str, err: ProfileError) -> None:
        """Log a bad payload once per device, topic and cause until a good one arrives."""
        self.rejects.reject(
            device_id, what, f"Dropped {what} of device {device_id}: {err}", variant=err.code
        )

    # Outbound --------------------------------------------------------------

    async def send_command(self, command: Command, *, attempt: int, expires_in: float) -> None:
        """CommandTransport: publish one attempt at QoS 1 (returns on the broker's PUBACK)."""
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.ResponseTopic = self.topics.reply
        properties.CorrelationData = command.command_id.encode()
        # The broker drops a command that could no longer be on time.
        properties.MessageExpiryInterval = max(1, math.ceil(expires_in))
        try:
            await self.commands.publish(
                self.topics.device_topic(command.device_id, "command"),
                encode_command(command, self.topics.reply),
                qos=1,
                properties=properties,
            )
        except MqttLinkLost as err:
            raise TransportInterrupted(f"broker connection lost ({err})") from err
        except MqttNotConnected as err:
            raise TransportUnavailable(f"broker not connected ({err})") from err

    async def execute(self, command: Command, capability: Capability) -> CommandResult:
        """Run a command through the engine and apply the state it confirms."""
        result = await self.engine.execute(self, command, confirmable=capability.confirmable)
        self.store.apply_result(command, result)
        if result.status is CommandStatus.CONFIRMED:
            self.stall.command_ended(result.latency_ms)
        return result

    async def forget_device(self, device_id: str) -> None:
        """The user deleted the device: clear its retained config so it stays gone."""
        self.store.forget(device_id)
        self.flood.forget(device_id)
        try:
            await self.connection.publish(
                self.topics.device_topic(device_id, "config"), b"", qos=1, retain=True
            )
        except MqttNotConnected:
            _LOGGER.warning(
                "Could not clear retained config of %s: broker not connected", device_id
            )


def _connection_diagnostics(connection: MqttConnection) -> dict[str, Any]:
    return {
        "connected": connection.connected,
        "reconnects": connection.reconnects,
        "last_error": connection.last_error,
        # Rise of the broker's own drop count (all its clients) while connected.
        "broker_dropped_messages": connection.broker_dropped,
    }
