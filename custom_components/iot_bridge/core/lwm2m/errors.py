"""The one exception family of the LwM2M data layer, and the limits that bound its work."""

from __future__ import annotations

from typing import Final

# Inbound payloads larger than this are refused before any parsing. Registrations, reads and
# Send batches of real clients stay far below; block-wise transfers larger than this (firmware
# images) are not something a device sends to the server.
MAX_PAYLOAD_BYTES: Final = 64 * 1024
# Upper bound on TLV entries, SenML records and links in one payload: each costs a few
# objects, so this bounds memory and time whatever the payload packs into 64 KiB.
MAX_ENTRIES: Final = 4096


class CodecError(ValueError):
    """A payload, path or value is not valid LwM2M; str() says what is wrong and where."""


class PathError(CodecError):
    """A path string or id is not a valid LwM2M path."""


class ValueTypeError(CodecError):
    """A value does not fit the resource's type (or LwM2M's value rules)."""


class FormatError(CodecError):
    """A payload breaks the syntax of its content format."""


class LimitError(CodecError):
    """A payload exceeds a size or count limit."""


class UnsupportedFormatError(CodecError):
    """The content format is unknown, or cannot carry what was asked of it."""


def check_payload_size(payload: bytes, what: str) -> None:
    """Refuse an oversized inbound payload before parsing it."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise LimitError(f"{what} payload is {len(payload)} bytes, limit is {MAX_PAYLOAD_BYTES}")


def check_entry_count(count: int, what: str) -> None:
    """Refuse a payload that packs more entries than any real client sends."""
    if count > MAX_ENTRIES:
        raise LimitError(f"{what} has more than {MAX_ENTRIES} entries")
