"""The MQTT device profile (docs/protocols/mqtt.md): topics and payload codecs."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Final

import orjson

from ..model import (
    Capability,
    CapabilityKind,
    Command,
    CommandReply,
    Device,
    DeviceInfo,
)
from ..values import MAX_MAGNITUDE, MAX_TEXT_LENGTH

MAX_PAYLOAD_BYTES: Final = 16 * 1024
# Limits on what a device may declare (docs/protocols/mqtt.md, "Limits"): generous for real
# devices, small enough that a broken or hostile one cannot flood Home Assistant.
MAX_NESTING: Final = 16
MAX_CAPABILITIES: Final = 128
MAX_NAME_LENGTH: Final = 128
MAX_FIELD_LENGTH: Final = 64
MAX_OPTIONS: Final = 64
MAX_OPTION_LENGTH: Final = MAX_TEXT_LENGTH
MAX_REASON_LENGTH: Final = 255
MAX_COMMAND_ID_LENGTH: Final = 64
_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_BRIDGE_SEGMENT: Final = "_bridge"
_KIND_BY_NAME: Final = {kind.value: kind for kind in CapabilityKind}
_SHORT_FIELDS: Final = ("device_class", "unit", "state_class")
_INFO_FIELDS: Final = ("manufacturer", "model", "sw_version", "hw_version", "serial_number")


class ProfileError(ValueError):
    """A payload does not follow the device profile; str() says why, `code` names the cause.

    The code is a short stable word (e.g. "not_json", "bad_field") so a log can say each
    kind of problem once.
    """

    def __init__(self, message: str, code: str = "bad_field") -> None:
        super().__init__(message)
        self.code = code


def _describe(value: Any) -> str:
    """A value for an error message: never the whole of a large input."""
    if isinstance(value, dict | list):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'}"
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names for one hub: its discovery prefix and its own reply topic."""

    prefix: str
    client_id: str

    @property
    def reply(self) -> str:
        """Where devices send answers to this hub's commands."""
        return f"{self.prefix}/{_BRIDGE_SEGMENT}/{self.client_id}/reply"

    @property
    def probe(self) -> str:
        """Where this hub sends messages to itself to see whether the broker holds them back."""
        return f"{self.prefix}/{_BRIDGE_SEGMENT}/{self.client_id}/probe"

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


def _loads(payload: bytes) -> Any:
    """JSON through orjson (a Home Assistant dependency, ~4x faster on a small state message);
    what it refuses goes to json, which decides: NaN, infinities and integers beyond 64 bits
    decode as before (the value checks refuse them key by key), and errors read the same."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return json.loads(payload)


def _load_json_object(payload: bytes, what: str) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProfileError(
            f"{what} is {len(payload)} bytes, limit is {MAX_PAYLOAD_BYTES}", "too_large"
        )
    try:
        value = _loads(payload)
    except RecursionError:
        raise ProfileError(f"{what} is nested too deeply", "too_deep") from None
    except (UnicodeDecodeError, ValueError) as err:
        raise ProfileError(f"{what} is not valid JSON: {err}", "not_json") from None
    if not isinstance(value, dict):
        raise ProfileError(f"{what} must be a JSON object, got {_json_type(value)}", "not_object")
    if not _flat(value) and _nesting(value) > MAX_NESTING:
        raise ProfileError(f"{what} is nested deeper than {MAX_NESTING} levels", "too_deep")
    return value


def _flat(value: dict[str, Any]) -> bool:
    """Whether no value of the object is an object or array (a state message, mostly)."""
    return all(not isinstance(child, dict | list) for child in value.values())


def _nesting(value: Any) -> int:
    """How deeply arrays and objects nest in a decoded document (walked without recursion)."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        if depth > MAX_NESTING:
            return depth  # deep enough to refuse: no need to walk the rest
        deepest = max(deepest, depth)
        pending.extend((child, depth + 1) for child in item)
    return deepest


def _optional_str(data: dict[str, Any], key: str, limit: int) -> str | None:
    """A text field; numbers are taken as their text (devices send "model": 7)."""
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ProfileError(f"'{key}' must be a string, got {_json_type(value)}")
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        raise ProfileError(f"'{key}' is {len(text)} characters long, limit is {limit}")
    return text


def _optional_number(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProfileError(f"'{key}' must be a number, got {_json_type(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or abs(number) > MAX_MAGNITUDE:
        raise ProfileError(f"'{key}' must be a finite number within ±{MAX_MAGNITUDE:g}")
    return number


def _optional_bool(data: dict[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise ProfileError(f"'{key}' must be true or false, got {_json_type(value)}")
    return value


def _options(raw: dict[str, Any]) -> tuple[str, ...] | None:
    options = raw.get("options")
    if options is None:
        return None
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise ProfileError("'options' must be a list of strings")
    if not options or len(options) > MAX_OPTIONS:
        raise ProfileError(f"'options' must list 1 to {MAX_OPTIONS} strings")
    if any(not option or len(option) > MAX_OPTION_LENGTH for option in options):
        raise ProfileError(f"each option must be 1 to {MAX_OPTION_LENGTH} characters long")
    return tuple(options)


def _range(raw: dict[str, Any]) -> tuple[float | None, float | None, float | None]:
    minimum = _optional_number(raw, "min")
    maximum = _optional_number(raw, "max")
    step = _optional_number(raw, "step")
    if minimum is not None and maximum is not None and minimum > maximum:
        raise ProfileError(f"'min' {minimum:g} is above 'max' {maximum:g}")
    if step is not None and step <= 0:
        raise ProfileError(f"'step' must be above 0, got {step:g}")
    return minimum, maximum, step


def _parse_capability(raw: Any) -> Capability:
    if not isinstance(raw, dict):
        raise ProfileError("each capability must be a JSON object")
    key = raw.get("key")
    if not isinstance(key, str) or not _ID_PATTERN.fullmatch(key):
        raise ProfileError(f"capability key {_describe(key)} is missing or has invalid characters")
    raw_kind = raw.get("kind")
    kind = _KIND_BY_NAME.get(raw_kind) if isinstance(raw_kind, str) else None
    if kind is None:
        raise ProfileError(f"capability '{key}' has unknown kind {_describe(raw_kind)}")
    try:
        minimum, maximum, step = _range(raw)
        short = {field: _optional_str(raw, field, MAX_FIELD_LENGTH) for field in _SHORT_FIELDS}
        return Capability(
            kind=kind,
            key=key,
            name=_optional_str(raw, "name", MAX_NAME_LENGTH),
            device_class=short["device_class"],
            unit=short["unit"],
            state_class=short["state_class"],
            # A lock without confirmation would defeat the point of the integration.
            confirmable=_optional_bool(raw, "confirmable") or kind is CapabilityKind.LOCK,
            options=_options(raw),
            minimum=minimum,
            maximum=maximum,
            step=step,
        )
    except ProfileError as err:
        raise ProfileError(f"capability '{key}': {err}", err.code) from None


def parse_device_config(device_id: str, payload: bytes) -> Device | None:
    """Decode a discovery message; None means the device was removed (empty payload)."""
    if not payload:
        return None
    data = _load_json_object(payload, "device config")
    if data.get("id") != device_id:
        raise ProfileError(
            f"'id' {_describe(data.get('id'))} does not match the topic's device id", "bad_id"
        )
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ProfileError("'name' is required")
    name = name.strip()
    if len(name) > MAX_NAME_LENGTH:
        raise ProfileError(f"'name' is {len(name)} characters long, limit is {MAX_NAME_LENGTH}")
    raw_capabilities = data.get("capabilities")
    if not isinstance(raw_capabilities, list):
        raise ProfileError("'capabilities' must be a list")
    if len(raw_capabilities) > MAX_CAPABILITIES:
        raise ProfileError(
            f"{len(raw_capabilities)} capabilities, limit is {MAX_CAPABILITIES}", "too_large"
        )
    capabilities: dict[str, Capability] = {}
    for raw in raw_capabilities:
        capability = _parse_capability(raw)
        if capability.key in capabilities:
            raise ProfileError(f"capability key '{capability.key}' appears twice")
        capabilities[capability.key] = capability
    info = {field: _optional_str(data, field, MAX_NAME_LENGTH) for field in _INFO_FIELDS}
    return Device(
        device_id=device_id, name=name, info=DeviceInfo(**info), capabilities=capabilities
    )


def parse_state(payload: bytes) -> dict[str, Any]:
    """Decode a state message into capability key -> raw value."""
    return _load_json_object(payload, "state")


def parse_availability(payload: bytes) -> bool:
    """Decode an availability message ('online' / 'offline')."""
    # Anything longer than "offline" with blanks around it cannot be one.
    text = payload[:64].decode("utf-8", errors="replace").strip().lower()
    if len(payload) <= 64:
        if text == "online":
            return True
        if text == "offline":
            return False
    raise ProfileError(
        f"availability must be 'online' or 'offline', got {text[:32]!r}", "bad_availability"
    )


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
        raise ProfileError("answer has no command id", "bad_id")
    if len(command_id) > MAX_COMMAND_ID_LENGTH:
        raise ProfileError(
            f"answer's command id is {len(command_id)} characters long,"
            f" limit is {MAX_COMMAND_ID_LENGTH}",
            "bad_id",
        )
    status = data.get("status")
    if status not in ("ok", "error"):
        raise ProfileError(
            f"answer status must be 'ok' or 'error', got {_describe(status)}", "bad_status"
        )
    state = data.get("state")
    if state is not None and not isinstance(state, dict):
        raise ProfileError("answer 'state' must be a JSON object")
    reason = _optional_str(data, "reason", MAX_PAYLOAD_BYTES)
    return CommandReply(
        command_id=command_id,
        ok=status == "ok",
        # A long reason is still an answer: keep it, cut to what a message can show.
        reason=reason[:MAX_REASON_LENGTH] if reason is not None else None,
        state=state,
    )
