"""CBOR through cbor2, narrowed to what LwM2M uses.

cbor2 turns many semantic tags into Python objects (sets, regular expressions, MIME messages,
shared references). LwM2M uses none of them: only tag 1 (and tag 0) to mark a Time, and the
bignum tags a large unsigned integer may arrive in. Every other tag is refused while decoding,
so nothing but plain data reaches the codecs and no tag handler runs on device input.
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Final

import cbor2

from .errors import FormatError
from .values import EpochTime

# cbor2's built-in semantic tags (cbor2 6.3); bignums (2, 3) and the self-describe marker
# (55799) keep their standard meaning.
_REFUSED_TAGS: Final = (
    4,
    5,
    25,
    28,
    29,
    30,
    35,
    36,
    37,
    52,
    54,
    100,
    256,
    258,
    260,
    261,
    1004,
    43000,
)


class _TagRefused(ValueError):
    pass


def _refuse(tag: int) -> cbor2.SemanticDecoderCallback:
    def refuse(value: object, immutable: bool) -> object:
        raise _TagRefused(f"CBOR tag {tag} has no meaning in LwM2M")

    return refuse


def _epoch_time(value: object, immutable: bool) -> EpochTime:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _TagRefused("CBOR tag 1 (time) must hold a number")
    return EpochTime(value)


def _text_time(value: object, immutable: bool) -> EpochTime:
    if not isinstance(value, str):
        raise _TagRefused("CBOR tag 0 (time) must hold a string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _TagRefused(f"CBOR tag 0 holds {value[:40]!r}, not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise _TagRefused(f"CBOR tag 0 time {value[:40]!r} has no time zone")
    return EpochTime(int(moment.timestamp()))


def _unknown_tag(tag: cbor2.CBORTag, immutable: bool) -> object:
    raise _TagRefused(f"CBOR tag {tag.tag} has no meaning in LwM2M")


_SEMANTIC_DECODERS: Final[dict[int, cbor2.SemanticDecoderCallback]] = {
    0: _text_time,
    1: _epoch_time,
    **{tag: _refuse(tag) for tag in _REFUSED_TAGS},
}


def load_cbor(payload: bytes, what: str, max_depth: int) -> object:
    """Decode exactly one CBOR data item; trailing bytes, bad UTF-8, duplicate map keys and
    deep nesting fail."""
    stream = io.BytesIO(payload)
    decoder = cbor2.CBORDecoder(
        stream,
        tag_hook=_unknown_tag,
        semantic_decoders=_SEMANTIC_DECODERS,
        max_depth=max_depth,
        str_errors="strict",
        allow_duplicate_keys=False,
    )
    try:
        value = decoder.decode()
    except cbor2.CBORDecodeError as err:
        cause = f": {err.__cause__}" if isinstance(err.__cause__, _TagRefused) else ""
        raise FormatError(f"{what} is not valid CBOR: {err}{cause}") from None
    if stream.tell() != len(payload):
        raise FormatError(
            f"{what} has {len(payload) - stream.tell()} bytes after its CBOR data item"
        )
    return value


def dump_cbor(value: object) -> bytes:
    """Encode plain data (already checked by the codecs) as CBOR."""
    return cbor2.dumps(value)
