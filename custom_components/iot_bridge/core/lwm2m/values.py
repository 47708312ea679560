"""Resource types, their Python values, and the one rule set that checks values of each type.

Every codec, in both directions, passes each value through `coerce`: a value that decodes
also encodes, and the same mistakes get the same messages whatever the content format.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, NamedTuple, Self

from .errors import ValueTypeError
from .paths import MAX_ID, LwM2MPath

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
UINT64_MAX: Final = 2**64 - 1
_OBJLNK: Final = re.compile(r"([0-9]{1,5}):([0-9]{1,5})")


class ResourceType(StrEnum):
    """The data types of the LwM2M object registry (names as in objects.json)."""

    STRING = "string"
    INTEGER = "integer"
    UNSIGNED = "unsigned"
    FLOAT = "float"
    BOOLEAN = "boolean"
    OPAQUE = "opaque"
    TIME = "time"
    OBJLNK = "objlnk"
    CORELNK = "corelnk"
    NONE = "none"  # Executable resources carry no value.


@dataclass(frozen=True, slots=True, order=True)
class ObjectLink:
    """An Objlnk value: a reference to an object instance ("3:0"); 65535:65535 links nowhere."""

    object_id: int
    instance_id: int

    def __post_init__(self) -> None:
        for value in (self.object_id, self.instance_id):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_ID:
                raise ValueTypeError(f"object link ids must be ints in 0..{MAX_ID}, got {value!r}")

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse the text form "3:0"."""
        match = _OBJLNK.fullmatch(text)
        if match is None:
            raise ValueTypeError(f"object link {text[:40]!r} is not 'object:instance'")
        return cls(int(match[1]), int(match[2]))

    def __str__(self) -> str:
        return f"{self.object_id}:{self.instance_id}"


# bool is listed before int on purpose: isinstance(True, int) holds, so checks test bool first.
type Value = bool | int | float | str | bytes | ObjectLink


class Record(NamedTuple):
    """One value at one path, with the time the device measured it when the format says."""

    path: LwM2MPath
    value: Value
    time: float | None = None


@dataclass(frozen=True, slots=True)
class EpochTime:
    """A wire value explicitly marked as a time (CBOR tag 1): a Time, even where unknown."""

    seconds: int | float


def coerce(resource_type: ResourceType | None, raw: object, path: LwM2MPath) -> Value:
    """Check a value decoded from the wire (or given to an encoder) against the resource type.

    `resource_type` None means the registry does not know the resource: the value keeps the
    type its format gave it, checked only against LwM2M's general rules (finite floats,
    64-bit integers). Numbers cross between int and float where no information is lost: an
    integer resource accepts 21.0 as 21, a float resource accepts 21 as 21.0.
    """
    if isinstance(raw, EpochTime):
        raw = raw.seconds
        if resource_type is None:
            resource_type = ResourceType.TIME
    if resource_type is None:
        return _untyped(raw, path)
    if resource_type is ResourceType.NONE:
        raise ValueTypeError(f"{path} is executable and carries no value")
    return _COERCERS[resource_type](raw, path, resource_type)


def _untyped(raw: object, path: LwM2MPath) -> Value:
    if isinstance(raw, str):
        return _text(raw, path)
    if isinstance(raw, bool | bytes | ObjectLink):
        return raw
    if isinstance(raw, int):
        return _integer(raw, path, ResourceType.INTEGER, INT64_MIN, UINT64_MAX)
    if isinstance(raw, float):
        return _finite(raw, path)
    raise ValueTypeError(f"{path}: {type(raw).__name__} is not an LwM2M value")


def _string(raw: object, path: LwM2MPath, resource_type: ResourceType) -> Value:
    if not isinstance(raw, str):
        raise _wrong_type(raw, path, resource_type)
    return _text(raw, path)


def _text(raw: str, path: LwM2MPath) -> str:
    # JSON escapes can smuggle lone surrogates into a str; no UTF-8 encoder accepts them.
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueTypeError(f"string for {path} is not valid Unicode (at {err.start})") from None
    return raw


def _opaque(raw: object, path: LwM2MPath, resource_type: ResourceType) -> Value:
    if not isinstance(raw, bytes):
        raise _wrong_type(raw, path, resource_type)
    return raw


def _boolean(raw: object, path: LwM2MPath, resource_type: ResourceType) -> Value:
    if isinstance(raw, bool):
        return raw
    # Some devices report a boolean state as the number 0 or 1 (the text format does too).
    if isinstance(raw, int | float) and raw in (0, 1):
        return bool(raw)
    raise _wrong_type(raw, path, resource_type)


def _float(raw: object, path: LwM2MPath, resource_type: ResourceType) -> Value:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise _wrong_type(raw, path, resource_type)
    if isinstance(raw, int):
        if not INT64_MIN <= raw <= UINT64_MAX:
            raise ValueTypeError(f"{path}: {raw} is too large for a float resource")
        return float(raw)
    return _finite(raw, path)


def _whole_number(raw: object, path: LwM2MPath, resource_type: ResourceType) -> Value:
    bounds = _INTEGER_BOUNDS[resource_type]
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise _wrong_type(raw, path, resource_type)
    if isinstance(raw, float):
        _finite(raw, path)
        if not raw.is_integer():
            raise ValueTypeError(f"{path}: {raw!r} is not a whole number ({resource_type})")
        raw = int(raw)
    return _integer(raw, path, resource_type, *bounds)


def _objlnk(raw: object, path: LwM2MPath, resource_type: ResourceType) -> Value:
    if isinstance(raw, ObjectLink):
        return raw
    if isinstance(raw, str):
        try:
            return ObjectLink.parse(raw)
        except ValueTypeError as err:
            raise ValueTypeError(f"{path}: {err}") from None
    raise _wrong_type(raw, path, resource_type)


def _integer(raw: int, path: LwM2MPath, resource_type: ResourceType, low: int, high: int) -> int:
    if not low <= raw <= high:
        raise ValueTypeError(f"{path}: {raw} is outside the {resource_type} range {low}..{high}")
    return raw


def _finite(raw: float, path: LwM2MPath) -> float:
    if not math.isfinite(raw):
        raise ValueTypeError(f"{path}: {raw!r} is not allowed, LwM2M floats are finite")
    return raw


def _wrong_type(raw: object, path: LwM2MPath, resource_type: ResourceType) -> ValueTypeError:
    shown = repr(raw)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return ValueTypeError(
        f"value of wrong type for {path}: {resource_type} expected, got "
        f"{type(raw).__name__} {shown}"
    )


_INTEGER_BOUNDS: Final = {
    ResourceType.INTEGER: (INT64_MIN, INT64_MAX),
    ResourceType.TIME: (INT64_MIN, INT64_MAX),
    ResourceType.UNSIGNED: (0, UINT64_MAX),
}
_COERCERS: Final = {
    ResourceType.STRING: _string,
    ResourceType.CORELNK: _string,
    ResourceType.OPAQUE: _opaque,
    ResourceType.BOOLEAN: _boolean,
    ResourceType.FLOAT: _float,
    ResourceType.INTEGER: _whole_number,
    ResourceType.UNSIGNED: _whole_number,
    ResourceType.TIME: _whole_number,
    ResourceType.OBJLNK: _objlnk,
}
