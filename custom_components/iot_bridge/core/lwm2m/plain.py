"""Single-value formats: text/plain (0), opaque (42) and CBOR (60).

Each carries exactly one resource (or resource instance) value, the one the request named;
none carries a type, so values are typed by the registry.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Final

import cbor2

from .cbor import dump_cbor, load_cbor
from .errors import FormatError, UnsupportedFormatError, ValueTypeError
from .paths import LwM2MPath
from .registry import ObjectRegistry
from .values import ObjectLink, Record, ResourceType, Value, coerce

# Longest number text accepted: the positional form of any finite double fits.
_MAX_NUMBER_TEXT: Final = 1100
_INTEGER_TEXT: Final = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")
_WHITESPACE: Final = " \t\r\n"
_TEXT_TYPES: Final = (None, ResourceType.STRING, ResourceType.CORELNK)


def _target(base: LwM2MPath, format_name: str) -> LwM2MPath:
    if base.depth < 3:
        raise UnsupportedFormatError(
            f"{format_name} carries one resource value; {base} is an {base.level_name}"
        )
    return base


def _only_record(records: Sequence[Record], base: LwM2MPath, format_name: str) -> Record:
    target = _target(base, format_name)
    if len(records) != 1 or records[0].path != target:
        paths = ", ".join(str(record.path) for record in records[:3])
        raise UnsupportedFormatError(
            f"{format_name} carries exactly the value of {target}, asked for [{paths}]"
        )
    if records[0].time is not None:
        raise UnsupportedFormatError(f"{format_name} carries no time stamps")
    return records[0]


# text/plain


def decode_text(payload: bytes, base: LwM2MPath, registry: ObjectRegistry) -> list[Record]:
    """Decode the text/plain value of the resource `base` names."""
    path = _target(base, "text/plain")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FormatError(f"text/plain value for {path} is not UTF-8 (byte {err.start})") from None
    resource_type = registry.resource_type(path)
    if resource_type in _TEXT_TYPES:
        return [Record(path, coerce(resource_type, text, path))]
    return [Record(path, _parse_typed_text(resource_type, text.strip(_WHITESPACE), path))]


def _parse_typed_text(resource_type: ResourceType | None, text: str, path: LwM2MPath) -> Value:
    match resource_type:
        case ResourceType.BOOLEAN:
            if text not in ("0", "1"):
                raise ValueTypeError(
                    f"boolean text for {path} must be '0' or '1', got {text[:20]!r}"
                )
            return text == "1"
        case ResourceType.OPAQUE:
            try:
                return base64.b64decode(text, validate=True)
            except ValueError as err:  # binascii.Error, or non-ASCII text
                raise ValueTypeError(f"opaque text for {path} is not base64: {err}") from None
        case ResourceType.OBJLNK | ResourceType.NONE:
            return coerce(resource_type, text, path)
        case _:
            return coerce(resource_type, _parse_number(text, path), path)


def _parse_number(text: str, path: LwM2MPath) -> int | float:
    if len(text) <= _MAX_NUMBER_TEXT:
        if _INTEGER_TEXT.fullmatch(text):
            return int(text)
        if _FLOAT_TEXT.fullmatch(text):
            return float(text)
    shown = text if len(text) <= 30 else text[:27] + "..."
    raise ValueTypeError(f"text for {path} is not a number: {shown!r}")


def encode_text(records: Sequence[Record], base: LwM2MPath, registry: ObjectRegistry) -> bytes:
    """Encode one value as text/plain (opaque values as base64, as LwM2M 1.1 says)."""
    path, raw, _ = _only_record(records, base, "text/plain")
    value = coerce(registry.resource_type(path), raw, path)
    return _TEXT_ENCODERS[type(value)](value).encode()


def _float_text(value: float) -> str:
    # Positional notation (no exponent) of the shortest round-tripping digits: simple clients
    # parse it, and float() reads back exactly the same double.
    text = format(Decimal(repr(value)), "f")
    return text if "." in text else f"{text}.0"


_TEXT_ENCODERS: Final[dict[type, Callable[[Value], str]]] = {
    bool: lambda value: "1" if value else "0",
    int: str,
    float: lambda value: _float_text(float(value)),  # type: ignore[arg-type]
    str: str,
    bytes: lambda value: base64.b64encode(value).decode(),  # type: ignore[arg-type]
    ObjectLink: str,
}


# opaque


def decode_opaque(payload: bytes, base: LwM2MPath, registry: ObjectRegistry) -> list[Record]:
    """Decode the raw bytes of an opaque resource."""
    path = _target(base, "opaque")
    _check_opaque_resource(path, registry)
    return [Record(path, payload)]


def encode_opaque(records: Sequence[Record], base: LwM2MPath, registry: ObjectRegistry) -> bytes:
    """Encode the bytes of one opaque resource."""
    path, raw, _ = _only_record(records, base, "opaque")
    _check_opaque_resource(path, registry)
    value = coerce(ResourceType.OPAQUE, raw, path)
    assert isinstance(value, bytes)
    return value


def _check_opaque_resource(path: LwM2MPath, registry: ObjectRegistry) -> None:
    resource_type = registry.resource_type(path)
    if resource_type not in (None, ResourceType.OPAQUE):
        raise ValueTypeError(f"opaque content for {path}, which is a {resource_type} resource")


# CBOR


def decode_cbor(payload: bytes, base: LwM2MPath, registry: ObjectRegistry) -> list[Record]:
    """Decode the single CBOR data item of one resource value."""
    path = _target(base, "CBOR")
    raw = load_cbor(payload, f"CBOR value for {path}", max_depth=1)
    return [Record(path, coerce(registry.resource_type(path), raw, path))]


def encode_cbor(records: Sequence[Record], base: LwM2MPath, registry: ObjectRegistry) -> bytes:
    """Encode one value as a CBOR data item (a Time as tag 1, an object link as "3:0")."""
    path, raw, _ = _only_record(records, base, "CBOR")
    resource_type = registry.resource_type(path)
    value = coerce(resource_type, raw, path)
    if resource_type is ResourceType.TIME:
        return dump_cbor(cbor2.CBORTag(1, value))
    return dump_cbor(str(value) if isinstance(value, ObjectLink) else value)
