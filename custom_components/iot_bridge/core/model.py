"""Protocol-independent model: devices, their capabilities, commands and outcomes.

Nothing here knows about Home Assistant or about a particular protocol; the
protocol packages build these objects and the Home Assistant glue reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class CapabilityKind(StrEnum):
    """What a capability is; each maps onto one Home Assistant platform."""

    SENSOR = "sensor"
    BINARY_SENSOR = "binary_sensor"
    SWITCH = "switch"
    LOCK = "lock"
    BUTTON = "button"
    NUMBER = "number"
    LIGHT = "light"
    EVENT = "event"
    DEVICE_TRACKER = "device_tracker"


# The actions each kind accepts; anything else is refused before it is sent.
ACTIONS_BY_KIND: dict[CapabilityKind, frozenset[str]] = {
    CapabilityKind.SENSOR: frozenset(),
    CapabilityKind.BINARY_SENSOR: frozenset(),
    CapabilityKind.SWITCH: frozenset({"turn_on", "turn_off"}),
    CapabilityKind.LOCK: frozenset({"lock", "unlock", "open"}),
    CapabilityKind.BUTTON: frozenset({"press"}),
    CapabilityKind.NUMBER: frozenset({"set"}),
    CapabilityKind.LIGHT: frozenset({"turn_on", "turn_off"}),
    CapabilityKind.EVENT: frozenset(),
    CapabilityKind.DEVICE_TRACKER: frozenset(),
}


@dataclass(frozen=True, slots=True)
class Capability:
    """One thing a device can sense or do, addressed by its key."""

    kind: CapabilityKind
    key: str
    name: str | None = None
    device_class: str | None = None
    unit: str | None = None
    state_class: str | None = None
    confirmable: bool = False
    options: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    # "diagnostic" or "config" for entities that are not the device's main features.
    category: str | None = None
    # Off for entities of doubtful interest (values of objects nobody defined, ...).
    enabled_by_default: bool = True
    # A fact about the device the bridge itself vouches for (when it was last seen), so it
    # stays shown while the device is unreachable, unlike the device's own readings.
    kept_when_offline: bool = False

    @property
    def actions(self) -> frozenset[str]:
        """Actions this capability accepts."""
        return ACTIONS_BY_KIND[self.kind]

    @property
    def writable(self) -> bool:
        """Whether Home Assistant can command it at all."""
        return bool(self.actions)


def validate_params(capability: Capability, action: str, params: dict[str, Any]) -> None:
    """Refuse parameters the device could not make sense of; ValueError says why."""
    if action not in capability.actions:
        raise ValueError(f"'{capability.key}' does not accept '{action}'")
    allowed = _PARAMS.get((capability.kind, action), frozenset())
    if unknown := sorted(set(params) - allowed):
        raise ValueError(f"'{action}' takes no parameter {', '.join(unknown)}")
    if capability.kind is CapabilityKind.NUMBER:
        _check_number(capability, params.get("value"))
    if "brightness" in params:
        brightness = params["brightness"]
        if not _is_number(brightness) or not 0 <= brightness <= 255:
            raise ValueError("brightness must be a number from 0 to 255")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_number(capability: Capability, value: Any) -> None:
    if not _is_number(value):
        raise ValueError("'set' needs a numeric 'value'")
    low = capability.minimum if capability.minimum is not None else float("-inf")
    high = capability.maximum if capability.maximum is not None else float("inf")
    if not low <= value <= high:
        raise ValueError(f"value {value} is outside {low:g}..{high:g}")


# Parameters each action may carry (anything else is refused before sending).
_PARAMS: dict[tuple[CapabilityKind, str], frozenset[str]] = {
    (CapabilityKind.NUMBER, "set"): frozenset({"value"}),
    (CapabilityKind.LIGHT, "turn_on"): frozenset({"brightness"}),
    (CapabilityKind.LOCK, "lock"): frozenset({"code"}),
    (CapabilityKind.LOCK, "unlock"): frozenset({"code"}),
    (CapabilityKind.LOCK, "open"): frozenset({"code"}),
}


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What a device says about itself."""

    manufacturer: str | None = None
    model: str | None = None
    sw_version: str | None = None
    hw_version: str | None = None
    serial_number: str | None = None


@dataclass(slots=True)
class Device:
    """A device known to a hub, with its capabilities and last reported state."""

    device_id: str
    name: str
    info: DeviceInfo = field(default_factory=DeviceInfo)
    capabilities: dict[str, Capability] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    available: bool = True

    def capability(self, key: str) -> Capability | None:
        """Return the capability with this key, if the device has it."""
        return self.capabilities.get(key)


class CommandStatus(StrEnum):
    """How a command ended. Only CONFIRMED means the device did it."""

    CONFIRMED = "confirmed"
    # Delivered to the transport but not confirmable by design (optimistic).
    DELIVERED = "delivered"
    REJECTED = "rejected"
    TIMEOUT = "timeout"
    NOT_DELIVERED = "not_delivered"


@dataclass(frozen=True, slots=True)
class Command:
    """A request to a device. Retries reuse the same id so devices can drop repeats."""

    command_id: str
    device_id: str
    capability: str
    action: str
    params: dict[str, Any]
    # Wall-clock deadline (Unix seconds) sent to devices; the engine also keeps
    # a monotonic deadline so clock jumps cannot stretch a command.
    deadline_unix: float
    # How many times the engine may send it again, with the same id, before the deadline.
    retries: int = 0


@dataclass(frozen=True, slots=True)
class CommandReply:
    """A device's answer to a command."""

    command_id: str
    ok: bool
    reason: str | None = None
    state: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The single outcome of one command, whatever happened on the way."""

    command: Command
    status: CommandStatus
    attempts: int
    latency_ms: float
    reason: str | None = None
    state: dict[str, Any] | None = None
    # A stable name for why a command was refused before sending (e.g. "device_offline").
    code: str | None = None

    @property
    def succeeded(self) -> bool:
        """True when the device confirmed, or an optimistic send was delivered."""
        return self.status in (CommandStatus.CONFIRMED, CommandStatus.DELIVERED)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for action responses, events and diagnostics."""
        return {
            "id": self.command.command_id,
            "status": self.status.value,
            "reason": self.reason,
            "state": self.state,
            "latency_ms": round(self.latency_ms, 2),
            "attempts": self.attempts,
        }
