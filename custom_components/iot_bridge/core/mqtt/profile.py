"""The MQTT device profile (docs/protocols/mqtt.md): topics and payload codecs."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final

from ..model import (
    Capability,
    CapabilityKind,
    Command,
    CommandReply,
    Device,
    DeviceInfo,
)

MAX_PAYLOAD_BYTES: Final = 16 * 1024
_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_BRIDGE_SEGMENT: Final = "_bridge"
_KIND_BY_NAME: Final = {kind.value: kind for kind in CapabilityKind}


class ProfileError(ValueError):
    """A payload does not follow the device profile; str() says why."""


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names for one hub: its discovery prefix and its own reply topic."""

    prefix: str
    client_id: str

    @property
    def reply(self) -> str:
        """Where devices send answers to this hub's commands."""
        return f"{self.prefix}/{_BRIDGE_SEGMENT}/{self.client_id}/reply"

    def device_filter(self, suffix: str) -> str:
        """Wildcard subscription for one kind of device topic."""
        return f"{self.prefix}/+/{suffix}"

    def device_topic(self, device_id: str, suffix: str) -> str:
        """Topic of one device: config, state, availability or command."""
        return f"{self.prefix}/{device_id}/{suffix}"

    def device_id_of(self, topic: str) -> str | None:
        """The device id in a device topic, or None when the topic is not one."""
        head, _, rest = topic.partition(f"{self.prefix}/")
        if head or not rest:
            return None
        device_id, _, _ = rest.partition("/")
        return device_id if _ID_PATTERN.fullmatch(device_id) else None


def _load_json_object(payload: bytes, what: str) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProfileError(f"{what} is {len(payload)} bytes, limit is {MAX_PAYLOAD_BYTES}")
    try:
        value = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as err:
        raise ProfileError(f"{what} is not valid JSON: {err}") from err
    if not isinstance(value, dict):
        raise ProfileError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _optional_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ProfileError(f"'{key}' must be a string")
    return str(value)


def _optional_number(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProfileError(f"'{key}' must be a number")
    return float(value)


def _parse_capability(raw: Any) -> Capability:
    if not isinstance(raw, dict):
        raise ProfileError("each capability must be a JSON object")
    key = raw.get("key")
    if not isinstance(key, str) or not _ID_PATTERN.fullmatch(key):
        raise ProfileError(f"capability key {key!r} is missing or has invalid characters")
    kind = _KIND_BY_NAME.get(raw.get("kind"))  # type: ignore[arg-type]
    if kind is None:
        raise ProfileError(f"capability '{key}' has unknown kind {raw.get('kind')!r}")
    options = raw.get("options")
    if options is not None and (
        not isinstance(options, list) or not all(isinstance(o, str) for o in options)
    ):
        raise ProfileError(f"capability '{key}': 'options' must be a list of strings")
    try:
        return Capability(
            kind=kind,
            key=key,
            name=_optional_str(raw, "name"),
            device_class=_optional_str(raw, "device_class"),
            unit=_optional_str(raw, "unit"),
            state_class=_optional_str(raw, "state_class"),
            # A lock without confirmation would defeat the point of the integration.
            confirmable=bool(raw.get("confirmable", False)) or kind is CapabilityKind.LOCK,
            options=tuple(options) if options is not None else None,
            minimum=_optional_number(raw, "min"),
            maximum=_optional_number(raw, "max"),
            step=_optional_number(raw, "step"),
        )
    except ProfileError as err:
        raise ProfileError(f"capability '{key}': {err}") from err


def parse_device_config(device_id: str, payload: bytes) -> Device | None:
    """Decode a discovery message; None means the device was removed (empty payload)."""
    if not payload:
        return None
    data = _load_json_object(payload, "device config")
    if data.get("id") != device_id:
        raise ProfileError(f"'id' {data.get('id')!r} does not match the topic's device id")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ProfileError("'name' is required")
    raw_capabilities = data.get("capabilities")
    if not isinstance(raw_capabilities, list):
        raise ProfileError("'capabilities' must be a list")
    capabilities: dict[str, Capability] = {}
    for raw in raw_capabilities:
        capability = _parse_capability(raw)
        if capability.key in capabilities:
            raise ProfileError(f"capability key '{capability.key}' appears twice")
        capabilities[capability.key] = capability
    info = DeviceInfo(
        manufacturer=_optional_str(data, "manufacturer"),
        model=_optional_str(data, "model"),
        sw_version=_optional_str(data, "sw_version"),
        hw_version=_optional_str(data, "hw_version"),
        serial_number=_optional_str(data, "serial_number"),
    )
    return Device(device_id=device_id, name=name.strip(), info=info, capabilities=capabilities)


def parse_state(payload: bytes) -> dict[str, Any]:
    """Decode a state message into capability key -> raw value."""
    return _load_json_object(payload, "state")


def parse_availability(payload: bytes) -> bool:
    """Decode an availability message ('online' / 'offline')."""
    text = payload.decode("utf-8", errors="replace").strip().lower()
    if text == "online":
        return True
    if text == "offline":
        return False
    raise ProfileError(f"availability must be 'online' or 'offline', got {text[:32]!r}")


def encode_command(command: Command, reply_to: str) -> bytes:
    """The command payload; id and reply topic travel inside for MQTT 3.1.1 devices."""
    return json.dumps(
        {
            "id": command.command_id,
            "capability": command.capability,
            "action": command.action,
            "params": command.params,
            "deadline": round(command.deadline_unix, 3),
            "reply_to": reply_to,
        },
        separators=(",", ":"),
    ).encode()


def parse_reply(payload: bytes, correlation_data: bytes | None) -> CommandReply:
    """Decode an answer; MQTT 5 correlation data wins over the id in the payload."""
    data = _load_json_object(payload, "answer")
    command_id = (
        correlation_data.decode("utf-8", errors="replace") if correlation_data else data.get("id")
    )
    if not isinstance(command_id, str) or not command_id:
        raise ProfileError("answer has no command id")
    status = data.get("status")
    if status not in ("ok", "error"):
        raise ProfileError(f"answer status must be 'ok' or 'error', got {status!r}")
    state = data.get("state")
    if state is not None and not isinstance(state, dict):
        raise ProfileError("answer 'state' must be a JSON object")
    reason = data.get("reason")
    return CommandReply(
        command_id=command_id,
        ok=status == "ok",
        reason=str(reason) if reason is not None else None,
        state=state,
    )
