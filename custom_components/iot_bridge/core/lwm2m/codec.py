"""One entry point for every LwM2M content format, in both directions."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import IntEnum
from typing import Final

from . import plain, senml, tlv
from .errors import FormatError, UnsupportedFormatError, check_payload_size
from .paths import LwM2MPath, check_disjoint
from .registry import ObjectRegistry, default_registry
from .values import Record, Value

type Decoder = Callable[[bytes, LwM2MPath, ObjectRegistry], list[Record]]
type Encoder = Callable[[Sequence[Record], LwM2MPath, ObjectRegistry], bytes]


class ContentFormat(IntEnum):
    """CoAP content-format numbers LwM2M uses."""

    TEXT = 0
    LINK_FORMAT = 40
    OPAQUE = 42
    CBOR = 60
    SENML_JSON = 110
    SENML_CBOR = 112
    TLV = 11542
    LWM2M_JSON = 11543

    @property
    def label(self) -> str:
        """The format's name as messages show it."""
        return _LABELS[self]


_LABELS: Final = {
    ContentFormat.TEXT: "text/plain",
    ContentFormat.LINK_FORMAT: "link-format",
    ContentFormat.OPAQUE: "opaque",
    ContentFormat.CBOR: "CBOR",
    ContentFormat.SENML_JSON: "SenML JSON",
    ContentFormat.SENML_CBOR: "SenML CBOR",
    ContentFormat.TLV: "TLV",
    ContentFormat.LWM2M_JSON: "LwM2M JSON",
}
_CODECS: Final[dict[ContentFormat, tuple[Decoder, Encoder]]] = {
    ContentFormat.TEXT: (plain.decode_text, plain.encode_text),
    ContentFormat.OPAQUE: (plain.decode_opaque, plain.encode_opaque),
    ContentFormat.CBOR: (plain.decode_cbor, plain.encode_cbor),
    ContentFormat.TLV: (tlv.decode, tlv.encode),
    ContentFormat.SENML_JSON: (senml.decode_senml_json, senml.encode_senml_json),
    ContentFormat.SENML_CBOR: (senml.decode_senml_cbor, senml.encode_senml_cbor),
    ContentFormat.LWM2M_JSON: (senml.decode_lwm2m_json, senml.encode_lwm2m_json),
}


def _codec(content_format: int) -> tuple[ContentFormat, tuple[Decoder, Encoder]]:
    try:
        known = ContentFormat(content_format)
    except ValueError:
        raise UnsupportedFormatError(f"content format {content_format} is not LwM2M's") from None
    codec = _CODECS.get(known)
    if codec is None:
        raise UnsupportedFormatError(
            "link-format carries links, not values: use parse_registration or parse_discover"
        )
    return known, codec


def decode_records(
    content_format: int,
    payload: bytes,
    base: LwM2MPath,
    registry: ObjectRegistry | None = None,
) -> list[Record]:
    """Every value in the payload in wire order, with its time where the format has one.

    `base` is the path the request named (the root for a Send). SenML times are the base
    time plus the record time as sent; below 2**28 they are relative to the time of receipt
    (RFC 8428), which only the caller knows.
    """
    known, (decoder, _) = _codec(content_format)
    check_payload_size(payload, known.label)
    records = decoder(payload, base, default_registry() if registry is None else registry)
    check_disjoint((record.path for record in records), repeats=True, error=FormatError)
    return records


def decode(
    content_format: int,
    payload: bytes,
    base: LwM2MPath,
    registry: ObjectRegistry | None = None,
) -> dict[LwM2MPath, Value]:
    """The payload's values by resource (or resource-instance) path; a time series keeps
    the newest value of each path (a record without a time counts as newest)."""
    return latest_values(decode_records(content_format, payload, base, registry))


def latest_values(records: Iterable[Record]) -> dict[LwM2MPath, Value]:
    """The newest value per path; on equal times the later record wins."""
    newest: dict[LwM2MPath, Record] = {}
    for record in records:
        kept = newest.get(record.path)
        if kept is None or _age_key(record) >= _age_key(kept):
            newest[record.path] = record
    return {path: record.value for path, record in newest.items()}


def _age_key(record: Record) -> float:
    return float("inf") if record.time is None else record.time


def encode_records(
    content_format: int,
    records: Sequence[Record],
    base: LwM2MPath,
    registry: ObjectRegistry | None = None,
) -> bytes:
    """Encode records (with times only for the SenML and LwM2M JSON formats)."""
    _, (_, encoder) = _codec(content_format)
    return encoder(records, base, default_registry() if registry is None else registry)


def encode(
    content_format: int,
    values: Mapping[LwM2MPath, Value],
    base: LwM2MPath,
    registry: ObjectRegistry | None = None,
) -> bytes:
    """Encode values below `base`: one value at `base` for the single-value formats."""
    records = [Record(path, value) for path, value in values.items()]
    return encode_records(content_format, records, base, registry)
