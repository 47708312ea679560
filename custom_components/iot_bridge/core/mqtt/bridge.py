"""MQTT devices on one broker: discovery, state, availability and confirmed commands."""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ..commands import CommandEngine, TransportUnavailable
from ..model import (
    CapabilityKind,
    Command,
    CommandResult,
    Device,
)
from .connection import MqttConnection, MqttNotConnected
from .profile import (
    ProfileError,
    Topics,
    encode_command,
    parse_availability,
    parse_device_config,
    parse_reply,
    parse_state,
)

_LOGGER = logging.getLogger(__name__)
_MISSING = object()
# State that arrives before a device's config is kept this long (in devices).
_MAX_EARLY_DEVICES = 256

# The state a confirmed action leaves behind when the device's answer does not say.
_EXPECTED_STATE: dict[tuple[CapabilityKind, str], Any] = {
    (CapabilityKind.LOCK, "lock"): "locked",
    (CapabilityKind.LOCK, "unlock"): "unlocked",
    (CapabilityKind.LOCK, "open"): "open",
    (CapabilityKind.SWITCH, "turn_on"): True,
    (CapabilityKind.SWITCH, "turn_off"): False,
}


class BridgeListener(Protocol):
    """What the owner (the Home Assistant hub) hears from the bridge."""

    def device_discovered(self, device: Device, previous: Device | None) -> None:
        """A device appeared, or its description changed."""

    def device_removed(self, device_id: str) -> None:
        """A device cleared its retained config."""

    def device_state_changed(self, device: Device, changed: frozenset[str] | None) -> None:
        """Values of these capability keys changed (None: availability or everything)."""


def expected_state(device: Device, capability: str, action: str, params: dict[str, Any]) -> Any:
    """What a confirmed (or optimistic) action sets when the device reports nothing."""
    cap = device.capabilities[capability]
    if cap.kind is CapabilityKind.NUMBER:
        return params.get("value")
    if cap.kind is CapabilityKind.LIGHT:
        on = action == "turn_on"
        current = device.state.get(capability)
        brightness = current.get("brightness") if isinstance(current, dict) else None
        return {"on": on, "brightness": params.get("brightness", brightness)}
    return _EXPECTED_STATE.get((cap.kind, action))


class MqttBridge:
    """Turns MQTT messages into Device updates and commands into MQTT requests."""

    def __init__(
        self,
        connection: MqttConnection,
        topics: Topics,
        engine: CommandEngine,
        listener: BridgeListener,
        *,
        accept_new_devices: Callable[[str], bool] = lambda _device_id: True,
    ) -> None:
        self.connection = connection
        self.topics = topics
        self.engine = engine
        self.devices: dict[str, Device] = {}
        self.dropped: Counter[str] = Counter()
        self._listener = listener
        self._accept_new = accept_new_devices
        self._early_state: dict[str, dict[str, Any]] = {}
        self._early_availability: dict[str, bool] = {}
        self._warned: set[tuple[str, str]] = set()
        connection.add_subscription(topics.device_filter("config"), self._on_config)
        connection.add_subscription(topics.device_filter("state"), self._on_state)
        connection.add_subscription(topics.device_filter("availability"), self._on_availability)
        connection.add_subscription(topics.reply, self._on_reply)

    # Inbound ---------------------------------------------------------------

    def _on_config(self, message: aiomqtt.Message) -> None:
        device_id = self._device_id(message)
        if device_id is None:
            return
        try:
            device = parse_device_config(device_id, _payload(message))
        except ProfileError as err:
            self._drop(device_id, "config", err)
            return
        self._warned.discard((device_id, "config"))
        previous = self.devices.get(device_id)
        if device is None:
            if self.devices.pop(device_id, None) is not None:
                self._listener.device_removed(device_id)
            return
        if previous is None and not self._accept_new(device_id):
            _LOGGER.info("Ignoring new device %s: automatic discovery is off", device_id)
            return
        self._carry_over(device, previous)
        self.devices[device_id] = device
        self._listener.device_discovered(device, previous)

    def _carry_over(self, device: Device, previous: Device | None) -> None:
        """A re-announced device keeps its state; early messages are applied."""
        if previous is not None:
            device.state.update(previous.state)
            device.available = previous.available
        device.state.update(self._early_state.pop(device.device_id, {}))
        early_available = self._early_availability.pop(device.device_id, None)
        if early_available is not None:
            device.available = early_available

    def _on_state(self, message: aiomqtt.Message) -> None:
        device_id = self._device_id(message)
        if device_id is None:
            return
        try:
            values = parse_state(_payload(message))
        except ProfileError as err:
            self._drop(device_id, "state", err)
            return
        self._warned.discard((device_id, "state"))
        device = self.devices.get(device_id)
        if device is None:
            self._remember_early(self._early_state, device_id, values)
            return
        self.apply_state(device, values)

    def _on_availability(self, message: aiomqtt.Message) -> None:
        device_id = self._device_id(message)
        if device_id is None:
            return
        try:
            available = parse_availability(_payload(message))
        except ProfileError as err:
            self._drop(device_id, "availability", err)
            return
        device = self.devices.get(device_id)
        if device is None:
            self._early_availability[device_id] = available
            return
        if device.available != available:
            device.available = available
            self._listener.device_state_changed(device, None)

    def _on_reply(self, message: aiomqtt.Message) -> None:
        correlation = getattr(message.properties, "CorrelationData", None)
        try:
            reply = parse_reply(_payload(message), correlation)
        except ProfileError as err:
            self._drop("(reply topic)", "answer", err)
            return
        self._warned.discard(("(reply topic)", "answer"))
        self.engine.handle_reply(reply)

    def apply_state(self, device: Device, values: dict[str, Any]) -> None:
        """Merge reported values; only keys whose value really changed are announced."""
        changed = frozenset(
            key
            for key, value in values.items()
            if key in device.capabilities and device.state.get(key, _MISSING) != value
        )
        unknown = sum(1 for key in values if key not in device.capabilities)
        if unknown:
            self.dropped["unknown_state_key"] += unknown
        if changed:
            device.state.update({key: values[key] for key in changed})
            self._listener.device_state_changed(device, changed)

    def _device_id(self, message: aiomqtt.Message) -> str | None:
        device_id = self.topics.device_id_of(message.topic.value)
        if device_id is None:
            self.dropped["bad_topic"] += 1
            _LOGGER.debug("Ignoring message on unexpected topic %s", message.topic.value)
        return device_id

    def _drop(self, device_id: str, what: str, err: ProfileError) -> None:
        """Log a bad payload once per device and topic until a good one arrives."""
        self.dropped[what] += 1
        if (device_id, what) in self._warned:
            _LOGGER.debug("Dropped %s of device %s: %s", what, device_id, err)
            return
        self._warned.add((device_id, what))
        _LOGGER.warning("Dropped %s of device %s: %s", what, device_id, err)

    @staticmethod
    def _remember_early(
        store: dict[str, dict[str, Any]], device_id: str, values: dict[str, Any]
    ) -> None:
        if device_id not in store and len(store) >= _MAX_EARLY_DEVICES:
            store.pop(next(iter(store)))
        store.setdefault(device_id, {}).update(values)

    # Outbound --------------------------------------------------------------

    async def send_command(self, command: Command, *, attempt: int, expires_in: float) -> None:
        """CommandTransport: publish one attempt at QoS 1 (returns on the broker's PUBACK)."""
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.ResponseTopic = self.topics.reply
        properties.CorrelationData = command.command_id.encode()
        # The broker drops a command that could no longer be on time.
        properties.MessageExpiryInterval = max(1, math.ceil(expires_in))
        try:
            await self.connection.publish(
                self.topics.device_topic(command.device_id, "command"),
                encode_command(command, self.topics.reply),
                qos=1,
                properties=properties,
            )
        except MqttNotConnected as err:
            raise TransportUnavailable(f"broker not connected ({err})") from err

    async def execute(self, command: Command, *, confirmable: bool) -> CommandResult:
        """Run a command through the engine and apply the state it confirms."""
        result = await self.engine.execute(self, command, confirmable=confirmable)
        device = self.devices.get(command.device_id)
        if device is not None and result.state:
            self.apply_state(device, result.state)
        if device is not None and result.succeeded:
            self._apply_expected(device, command, result)
        return result

    def _apply_expected(self, device: Device, command: Command, result: CommandResult) -> None:
        """A success the device did not describe leaves the state the action implies."""
        if command.capability in (result.state or {}):
            return
        if command.capability not in device.capabilities:
            return
        value = expected_state(device, command.capability, command.action, command.params)
        if value is not None:
            self.apply_state(device, {command.capability: value})

    async def forget_device(self, device_id: str) -> None:
        """The user deleted the device: clear its retained config so it stays gone."""
        self.devices.pop(device_id, None)
        try:
            await self.connection.publish(
                self.topics.device_topic(device_id, "config"), b"", qos=1, retain=True
            )
        except MqttNotConnected:
            _LOGGER.warning(
                "Could not clear retained config of %s: broker not connected", device_id
            )


def _payload(message: aiomqtt.Message) -> bytes:
    payload = message.payload
    return bytes(payload) if isinstance(payload, bytes | bytearray) else str(payload).encode()
