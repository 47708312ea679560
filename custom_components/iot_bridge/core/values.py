"""Device values checked at the edge: what each capability kind may hold in the model.

Every protocol turns its payloads into raw Python values (JSON scalars, CBOR, TLV); this
module decides, per capability, whether such a value is something Home Assistant can show
and turns it into the one canonical form entities read. Anything else is refused with a
reason, so a hostile or broken device cannot put NaN, absurd numbers or made-up lock states
in front of the user.
"""

from __future__ import annotations

import math
from typing import Any, Final

from .model import Capability, CapabilityKind

# A sensor state is shown as text; Home Assistant refuses states longer than 255 characters.
MAX_TEXT_LENGTH: Final = 255
# Finite but absurd readings (1e308 W) are refused; real meters stay far below this.
MAX_MAGNITUDE: Final = 1e15
LOCK_STATES: Final = frozenset(
    {"locked", "unlocked", "open", "locking", "unlocking", "opening", "jammed"}
)
_TRUE_WORDS: Final = frozenset({"on", "true", "open", "1"})
_FALSE_WORDS: Final = frozenset({"off", "false", "closed", "0"})
# Sensor device classes whose values are not numbers (every other declared class is numeric).
_TEXT_SENSOR_CLASSES: Final = frozenset({"enum", "date", "timestamp"})


class InvalidValue(ValueError):
    """A value a capability cannot hold; str() says why, without echoing huge input."""


def as_bool(value: Any) -> bool | None:
    """Read a binary value the lenient way devices send it; None when it is not one."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value)):
        return value != 0
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    return None


def is_numeric_sensor(capability: Capability) -> bool:
    """Whether Home Assistant will treat this sensor as numeric (it then refuses text)."""
    if capability.options is not None:
        return False
    if capability.state_class is not None or capability.unit is not None:
        return True
    return capability.device_class is not None and (
        capability.device_class not in _TEXT_SENSOR_CLASSES
    )


def normalize(capability: Capability, value: Any) -> Any:
    """The canonical form of `value` for `capability`; InvalidValue when it cannot hold it."""
    checker = _CHECKERS[capability.kind]
    return checker(capability, value)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def number(value: Any, *, what: str = "a number") -> float | int:
    """A finite number of sane magnitude; numeric text is accepted (devices send "21.5")."""
    if isinstance(value, bool):
        raise InvalidValue(f"expected {what}, got {_describe(value)}")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise InvalidValue(f"expected {what}, got {_describe(value)}") from None
    if not isinstance(value, int | float):
        raise InvalidValue(f"expected {what}, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidValue(f"expected {what}, got {value}")
    if abs(value) > MAX_MAGNITUDE:
        raise InvalidValue(f"{_describe(value)} is out of range (limit ±{MAX_MAGNITUDE:g})")
    return value


def _sensor(capability: Capability, value: Any) -> Any:
    if capability.options is not None:
        if value not in capability.options:
            raise InvalidValue(f"{_describe(value)} is not one of {list(capability.options)}")
        return value
    if is_numeric_sensor(capability):
        return number(value)
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return number(value)
    if isinstance(value, str):
        if len(value) > MAX_TEXT_LENGTH:
            raise InvalidValue(f"text of {len(value)} characters (limit {MAX_TEXT_LENGTH})")
        return value
    raise InvalidValue(f"expected a number or text, got {type(value).__name__}")


def _binary(_capability: Capability, value: Any) -> bool:
    result = as_bool(value)
    if result is None:
        raise InvalidValue(f"expected on/off, got {_describe(value)}")
    return result


def _lock(_capability: Capability, value: Any) -> str:
    state = value.strip().lower() if isinstance(value, str) else None
    if state is None or state not in LOCK_STATES:
        raise InvalidValue(f"{_describe(value)} is not a lock state ({', '.join(LOCK_STATES)})")
    return state


def _number(capability: Capability, value: Any) -> float | int:
    result = number(value)
    low, high = capability.minimum, capability.maximum
    if (low is not None and result < low) or (high is not None and result > high):
        raise InvalidValue(f"{result:g} is outside {_bound(low)}..{_bound(high)}")
    return result


def _bound(limit: float | None) -> str:
    return "?" if limit is None else f"{limit:g}"


def _light(_capability: Capability, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        return {"on": _binary(_capability, value), "brightness": None}
    unknown = set(value) - {"on", "brightness"}
    if unknown:
        raise InvalidValue(f"unknown light field(s) {sorted(unknown)[:3]}")
    on = _binary(_capability, value.get("on"))
    brightness = value.get("brightness")
    if brightness is not None:
        brightness = number(brightness, what="a brightness")
        if not 0 <= brightness <= 255:
            raise InvalidValue(f"brightness {brightness:g} is outside 0..255")
        brightness = round(brightness)
    return {"on": on, "brightness": brightness}


def _event_counter(_capability: Capability, value: Any) -> int:
    """An event entity follows a counter: each increase is one event."""
    count = number(value, what="a counter")
    if count < 0 or count != int(count):
        raise InvalidValue(f"counter {count:g} is not a whole number >= 0")
    return int(count)


def _position(_capability: Capability, value: Any) -> dict[str, float]:
    if not isinstance(value, dict) or set(value) != {"latitude", "longitude"}:
        raise InvalidValue("expected {latitude, longitude}")
    latitude = number(value["latitude"], what="a latitude")
    longitude = number(value["longitude"], what="a longitude")
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise InvalidValue(f"({latitude:g}, {longitude:g}) is not a position on Earth")
    return {"latitude": float(latitude), "longitude": float(longitude)}


def _stateless(capability: Capability, _value: Any) -> None:
    raise InvalidValue(f"a {capability.kind.value} has no state")


_CHECKERS = {
    CapabilityKind.SENSOR: _sensor,
    CapabilityKind.BINARY_SENSOR: _binary,
    CapabilityKind.SWITCH: _binary,
    CapabilityKind.LOCK: _lock,
    CapabilityKind.BUTTON: _stateless,
    CapabilityKind.NUMBER: _number,
    CapabilityKind.LIGHT: _light,
    CapabilityKind.EVENT: _event_counter,
    CapabilityKind.DEVICE_TRACKER: _position,
}
