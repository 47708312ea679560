"""OMA TLV (11542): LwM2M's binary format for object instances and multiple resources.

Type byte: bits 7-6 the entry kind, bit 5 the id width (8 or 16 bits), bits 4-3 the length
width (0: the length is in bits 2-0; else 8, 16 or 24 bits follow the id). Values carry no
type: the registry types them (see `_guess` for resources it does not know).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from itertools import groupby
from typing import Final

from .errors import FormatError, UnsupportedFormatError, ValueTypeError, check_entry_count
from .paths import LwM2MPath, check_disjoint
from .registry import ObjectRegistry
from .values import INT64_MAX, ObjectLink, Record, ResourceType, Value, coerce

_MAX_LENGTH: Final = 2**24 - 1
_PRINTABLE_CONTROLS: Final = frozenset("\t\n\r")


class Kind(IntEnum):
    """The entry kinds of bits 7-6, named by the path level they stand for."""

    OBJECT_INSTANCE = 0b00
    RESOURCE_INSTANCE = 0b01
    MULTIPLE_RESOURCE = 0b10
    RESOURCE = 0b11

    @property
    def level(self) -> int:
        """The path depth an entry of this kind names."""
        return _LEVEL_OF_KIND[self]


_LEVEL_OF_KIND: Final = {
    Kind.OBJECT_INSTANCE: 2,
    Kind.RESOURCE: 3,
    Kind.MULTIPLE_RESOURCE: 3,
    Kind.RESOURCE_INSTANCE: 4,
}
# Which kinds may sit inside which: the format nests at most three deep.
_CHILD_KINDS: Final = {
    Kind.OBJECT_INSTANCE: frozenset({Kind.RESOURCE, Kind.MULTIPLE_RESOURCE}),
    Kind.MULTIPLE_RESOURCE: frozenset({Kind.RESOURCE_INSTANCE}),
}


@dataclass(frozen=True, slots=True)
class Entry:
    """One decoded TLV entry: a value, or (object instance, multiple resource) children."""

    kind: Kind
    entry_id: int
    offset: int
    value: bytes = b""
    children: tuple[Entry, ...] = ()


# Decoding


def parse_entries(payload: bytes) -> tuple[Entry, ...]:
    """Split a TLV payload into its entry tree; raise FormatError on any framing error."""
    counter = [0]
    return _parse_level(payload, 0, len(payload), None, counter)


def _parse_level(
    payload: bytes, start: int, end: int, parent: Kind | None, counter: list[int]
) -> tuple[Entry, ...]:
    entries: list[Entry] = []
    position = start
    while position < end:
        counter[0] += 1
        check_entry_count(counter[0], "TLV payload")
        kind, entry_id, value_start, value_end = _parse_header(payload, position, end)
        if parent is not None and kind not in _CHILD_KINDS[parent]:
            raise FormatError(
                f"TLV {kind.name.lower()} at byte {position} cannot sit inside a "
                f"{parent.name.lower()}"
            )
        if kind in _CHILD_KINDS:
            children = _parse_level(payload, value_start, value_end, kind, counter)
            entries.append(Entry(kind, entry_id, position, children=children))
        else:
            entries.append(Entry(kind, entry_id, position, payload[value_start:value_end]))
        position = value_end
    return tuple(entries)


def _parse_header(payload: bytes, position: int, end: int) -> tuple[Kind, int, int, int]:
    type_byte = payload[position]
    id_width = 2 if type_byte & 0b0010_0000 else 1
    length_width = (type_byte >> 3) & 0b11
    header_end = position + 1 + id_width + length_width
    if header_end > end:
        raise FormatError(f"truncated TLV header at byte {position}")
    entry_id = int.from_bytes(payload[position + 1 : position + 1 + id_width])
    if length_width:
        length = int.from_bytes(payload[position + 1 + id_width : header_end])
    else:
        length = type_byte & 0b111
    if header_end + length > end:
        raise FormatError(
            f"TLV entry at byte {position} declares {length} value bytes, "
            f"only {end - header_end} remain"
        )
    return Kind(type_byte >> 6), entry_id, header_end, header_end + length


def decode(payload: bytes, base: LwM2MPath, registry: ObjectRegistry) -> list[Record]:
    """Decode TLV into flat records below `base` (an object or deeper)."""
    if base.depth < 1:
        raise UnsupportedFormatError("TLV carries one object at most; the base must name one")
    records: list[Record] = []
    seen: set[LwM2MPath] = set()
    for entry in parse_entries(payload):
        _collect(entry, base, registry, records, seen)
    return records


def _collect(
    entry: Entry,
    parent: LwM2MPath,
    registry: ObjectRegistry,
    records: list[Record],
    seen: set[LwM2MPath],
) -> None:
    path = _entry_path(entry, parent)
    if entry.kind in _CHILD_KINDS:
        for child in entry.children:
            _collect(child, path, registry, records, seen)
        return
    if path in seen:
        raise FormatError(f"TLV carries {path} twice (second at byte {entry.offset})")
    seen.add(path)
    records.append(Record(path, _decode_value(entry.value, path, registry)))


def _entry_path(entry: Entry, parent: LwM2MPath) -> LwM2MPath:
    level = entry.kind.level
    if parent.depth == level - 1:
        return _child(parent, entry.entry_id, entry.offset)
    if parent.depth == level and parent.ids[-1] == entry.entry_id:
        # The entry repeats the node the request named (e.g. a Read of /3/0/7 answered
        # with the multiple resource 7 itself).
        return parent
    if level == 3 and parent.depth == 1:
        # Resources straight under an object: some LwM2M 1.0 clients leave out the
        # instance level of a single-instance object, whose only instance is 0.
        return _child(parent.child(0), entry.entry_id, entry.offset)
    raise FormatError(
        f"TLV {entry.kind.name.lower()} {entry.entry_id} at byte {entry.offset} "
        f"does not fit below {parent}"
    )


def _child(parent: LwM2MPath, child_id: int, offset: int) -> LwM2MPath:
    try:
        return parent.child(child_id)
    except ValueError as err:
        raise FormatError(f"TLV entry at byte {offset}: {err}") from None


def _decode_value(data: bytes, path: LwM2MPath, registry: ObjectRegistry) -> Value:
    resource_type = registry.resource_type(path)
    if resource_type is None:
        return _guess(data)
    match resource_type:
        case ResourceType.STRING | ResourceType.CORELNK:
            return _utf8(data, path)
        case ResourceType.OPAQUE:
            return data
        case ResourceType.INTEGER | ResourceType.TIME:
            return int.from_bytes(_sized(data, path, (1, 2, 4, 8)), signed=True)
        case ResourceType.UNSIGNED:
            return int.from_bytes(_sized(data, path, (1, 2, 4, 8)))
        case ResourceType.FLOAT:
            raw = _sized(data, path, (4, 8))
            number: float = struct.unpack(">f" if len(raw) == 4 else ">d", raw)[0]
            return coerce(resource_type, number, path)
        case ResourceType.BOOLEAN:
            if data not in (b"\x00", b"\x01"):
                raise ValueTypeError(f"boolean TLV for {path} must be one byte 0 or 1")
            return data == b"\x01"
        case ResourceType.OBJLNK:
            raw = _sized(data, path, (4,))
            return ObjectLink(int.from_bytes(raw[:2]), int.from_bytes(raw[2:]))
        case _:  # ResourceType.NONE
            return coerce(resource_type, data, path)


def _guess(data: bytes) -> Value:
    """Type a value the registry does not know.

    TLV has no types, so this is a guess, and one fixed rule keeps it predictable: text
    first, because strings are what unknown vendor resources carry most (names, versions,
    states) and random binary is rarely valid printable UTF-8; then an integer, but only in
    the smallest of 1/2/4/8 bytes that holds it, as encoders write integers; anything else
    stays bytes. A float cannot be told from an integer of the same width. The rule makes
    the guess exact in one direction: encoding the guessed value gives back the same bytes.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if all(char.isprintable() or char in _PRINTABLE_CONTROLS for char in text):
            return text
    if len(data) in (1, 2, 4, 8):
        number = int.from_bytes(data, signed=True)
        if _encode_integer(number, unsigned=False) == data:
            return number
    return data


def _sized(data: bytes, path: LwM2MPath, sizes: tuple[int, ...]) -> bytes:
    if len(data) not in sizes:
        allowed = "/".join(map(str, sizes))
        raise ValueTypeError(f"TLV value for {path} is {len(data)} bytes, expected {allowed}")
    return data


def _utf8(data: bytes, path: LwM2MPath) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueTypeError(f"string for {path} is not UTF-8 (byte {err.start})") from None


# Encoding


def encode(records: Sequence[Record], base: LwM2MPath, registry: ObjectRegistry) -> bytes:
    """Encode flat records below `base` as TLV, with the smallest widths everywhere."""
    if base.depth < 1:
        raise UnsupportedFormatError("TLV carries one object at most; the base must name one")
    items: list[tuple[LwM2MPath, Value]] = []
    for path, value, time in sorted(records, key=lambda record: record.path):
        if time is not None:
            raise UnsupportedFormatError("TLV carries no time stamps")
        if not path.startswith(base) or path.depth < 3:
            raise UnsupportedFormatError(
                f"TLV below {base} cannot carry {path}: values sit at resources below it"
            )
        items.append((path, coerce(registry.resource_type(path), value, path)))
    check_disjoint([path for path, _ in items], repeats=False)
    # A Read of an object or instance answers with its children; a Read of a resource or
    # resource instance answers with that node itself.
    level = base.depth + 1 if base.depth <= 2 else base.depth
    return _encode_level(items, level, registry)


def _encode_level(
    items: list[tuple[LwM2MPath, Value]], level: int, registry: ObjectRegistry
) -> bytes:
    out = bytearray()
    for node_id, group in groupby(items, key=lambda item: item[0].ids[level - 1]):
        members = list(group)
        if level == 2:
            out += _entry(Kind.OBJECT_INSTANCE, node_id, _encode_level(members, 3, registry))
        elif level == 3 and members[0][0].depth == 4:
            out += _entry(Kind.MULTIPLE_RESOURCE, node_id, _encode_level(members, 4, registry))
        else:
            ((path, value),) = members
            kind = Kind.RESOURCE if level == 3 else Kind.RESOURCE_INSTANCE
            out += _entry(kind, node_id, _encode_value(value, registry.resource_type(path)))
    return bytes(out)


def _entry(kind: Kind, entry_id: int, value: bytes) -> bytes:
    length = len(value)
    if length > _MAX_LENGTH:
        raise UnsupportedFormatError(f"TLV values are at most {_MAX_LENGTH} bytes, got {length}")
    id_width = 1 if entry_id < 256 else 2
    if length < 8:
        length_width, length_bits = 0, length
    else:
        length_width, length_bits = (length.bit_length() + 7) // 8, 0
    type_byte = kind << 6 | (id_width - 1) << 5 | length_width << 3 | length_bits
    header = bytes([type_byte]) + entry_id.to_bytes(id_width)
    if length_width:
        header += length.to_bytes(length_width)
    return header + value


def _encode_value(value: Value, resource_type: ResourceType | None) -> bytes:
    if isinstance(value, bool):
        return b"\x01" if value else b"\x00"
    if isinstance(value, int):
        return _encode_integer(value, unsigned=resource_type is ResourceType.UNSIGNED)
    if isinstance(value, float):
        single = struct.pack(">f", value) if _fits_single(value) else None
        return single if single is not None else struct.pack(">d", value)
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, ObjectLink):
        return value.object_id.to_bytes(2) + value.instance_id.to_bytes(2)
    return value


def _encode_integer(value: int, *, unsigned: bool) -> bytes:
    # Unsigned values above the signed 64-bit range (and unsigned resources generally) use
    # unsigned bytes; everything else two's complement, in the smallest of 1/2/4/8 bytes.
    signed = not unsigned and value <= INT64_MAX
    for size in (1, 2, 4):
        limit = 1 << (size * 8 - (1 if signed else 0))
        if (-limit if signed else 0) <= value < limit:
            return value.to_bytes(size, signed=signed)
    return value.to_bytes(8, signed=signed)  # coerce() bounds every value to 8 bytes


def _fits_single(value: float) -> bool:
    """True when a 4-byte float holds the value exactly (the smaller encoding loses nothing)."""
    try:
        (single,) = struct.unpack(">f", struct.pack(">f", value))
    except OverflowError:
        return False
    return bool(single == value)
