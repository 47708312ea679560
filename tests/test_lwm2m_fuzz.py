"""Fuzzing the LwM2M decoders: device input never raises anything but CodecError.

Each decoder gets arbitrary bytes, and the structured formats also get generated documents
that pass the syntax and reach the semantic checks. Whatever decodes must re-encode and
decode to the same values. IOT_BRIDGE_FUZZ_EXAMPLES raises the example counts for a long run.
"""

from __future__ import annotations

import contextlib
import json
import string
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from custom_components.iot_bridge.core.lwm2m import (
    ROOT,
    CodecError,
    ContentFormat,
    LwM2MPath,
    ObjectLink,
    PathError,
    UnsupportedFormatError,
    decode,
    encode,
    parse_discover,
    parse_registration,
)

from .lwm2m_support import FUZZ, KNOWN_RESOURCES

VALUE_FORMATS = [cf for cf in ContentFormat if cf is not ContentFormat.LINK_FORMAT]
BASES = [
    LwM2MPath.parse(text)
    for text in (
        "/",
        "/3",
        "/3/0",
        "/3/0/7",
        "/3/0/7/1",
        "/3/0/0",
        "/3/0/13",
        "/3303/0",
        "/3303/0/5700",
        "/3311/0/5850",
        "/5/0/0",
        "/1/0/10",
        "/31024",
        "/31024/0",
        "/31024/0/1",
    )
]


def _check_decoder(content_format: ContentFormat, payload: bytes, base: LwM2MPath) -> None:
    try:
        values = decode(content_format, payload, base)
    except CodecError:
        return
    for path in values:
        assert path.startswith(base)
        assert path.depth >= 3
    # Whatever decodes is valid: it re-encodes, and reads back as the same values.
    assert decode(content_format, encode(content_format, values, base), base) == values


@FUZZ
@given(
    content_format=st.sampled_from(VALUE_FORMATS),
    payload=st.binary(max_size=200),
    base=st.sampled_from(BASES),
)
def test_decoders_take_arbitrary_bytes(
    content_format: ContentFormat, payload: bytes, base: LwM2MPath
) -> None:
    """Random bytes into every decoder: a result or a CodecError, nothing else."""
    _check_decoder(content_format, payload, base)


# Generated TLV framing: valid headers with random kinds, ids, lengths and contents.


@st.composite
def tlv_entries(draw: st.DrawFn, depth: int = 0) -> bytes:
    """Raw TLV entries built from their framing rules (length widths chosen at random)."""
    out = b""
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.integers(0, 3))
        entry_id = draw(st.sampled_from([0, 1, 7, 9, 10, 13, 5700, 5850, 65535]))
        if kind in (0, 2) and depth < 2:
            value = draw(tlv_entries(depth + 1))
        else:
            value = draw(st.binary(max_size=10))
        id_width = 1 if entry_id < 256 and draw(st.booleans()) else 2
        length_width = draw(st.integers(0 if len(value) < 8 else 1, 3))
        type_byte = kind << 6 | (id_width - 1) << 5 | length_width << 3
        header = bytes([type_byte | (len(value) if length_width == 0 else 0)])
        header += entry_id.to_bytes(id_width)
        if length_width:
            header += len(value).to_bytes(length_width)
        out += header + value
    return out


@FUZZ
@given(payload=tlv_entries(), base=st.sampled_from(BASES[1:]))
def test_tlv_decoder_takes_generated_trees(payload: bytes, base: LwM2MPath) -> None:
    """Well-framed TLV with random nesting reaches the path and type checks."""
    _check_decoder(ContentFormat.TLV, payload, base)


# Generated SenML and LwM2M JSON documents

KNOWN_PATHS = [f"/{o}/0/{r.resource_id}" for o, r in KNOWN_RESOURCES[::7]]
NAMES = st.one_of(
    st.sampled_from([*KNOWN_PATHS, "/3/0/", "/3/0", "9", "7/0", "/31024/0/1", "", "/"]),
    st.text(alphabet="/0123456789a", max_size=12),
)
JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
    st.sampled_from(["3:0", "AP8", "AP8=", "65535:65535", "1:", "2013-05-02T10:40:15Z"]),
    NAMES,
    st.lists(st.integers(), max_size=2),
)
SENML_LABELS = ["bn", "bt", "n", "t", "v", "vs", "vb", "vd", "vlo", "u", "bu", "ut", "bver"]
# Records a device could send: a name and one value of a plausible kind (often the wrong
# kind for the resource), so decoding gets past the syntax to the typing rules.
PLAUSIBLE_VALUES = st.one_of(
    st.tuples(st.just("v"), st.integers(-(2**64), 2**64) | st.floats(allow_nan=False)),
    st.tuples(st.just("vs"), st.text(max_size=8) | st.sampled_from(["3:0", "AP8="])),
    st.tuples(st.just("vb"), st.booleans()),
    st.tuples(st.just("vd"), st.sampled_from(["", "AP8", "AP8=", "_-_-", "@"])),
    st.tuples(st.just("vlo"), st.sampled_from(["3:0", "65535:65535", "1:", "70000:1"])),
)
PLAUSIBLE_RECORDS = st.builds(
    lambda name, value, extra: {"n": name, value[0]: value[1]} | extra,
    st.sampled_from([*KNOWN_PATHS, "/31024/0/1", "/31024/0/1/2"]),
    PLAUSIBLE_VALUES,
    st.dictionaries(st.sampled_from(["t", "bt", "u"]), st.integers(-10, 10), max_size=1),
)
JSON_RECORDS = st.lists(
    PLAUSIBLE_RECORDS
    | st.dictionaries(st.sampled_from([*SENML_LABELS, "bv", "s", "x"]), JSON_VALUES, max_size=4),
    max_size=5,
)
CBOR_KEYS: dict[str, int | str] = {
    "bver": -1,
    "bn": -2,
    "bt": -3,
    "bu": -4,
    "bv": -5,
    "n": 0,
    "u": 1,
    "v": 2,
}
CBOR_KEYS |= {"vs": 3, "vb": 4, "s": 5, "t": 6, "ut": 7, "vd": 8, "vlo": "vlo", "x": 99}


@FUZZ
@given(records=JSON_RECORDS, base=st.sampled_from(BASES))
def test_senml_json_decoder_takes_generated_packs(
    records: list[dict[str, Any]], base: LwM2MPath
) -> None:
    """Syntactically valid SenML JSON with random labels and values."""
    _check_decoder(ContentFormat.SENML_JSON, json.dumps(records).encode(), base)


@FUZZ
@given(
    records=JSON_RECORDS,
    byte_values=st.lists(st.binary(max_size=4), max_size=5),
    base=st.sampled_from(BASES),
)
def test_senml_cbor_decoder_takes_generated_packs(
    records: list[dict[str, Any]], byte_values: list[bytes], base: LwM2MPath
) -> None:
    """Valid CBOR arrays of maps with SenML's integer labels and random values."""
    pack = [
        {CBOR_KEYS[label]: value for label, value in record.items()}
        | ({8: byte_values[index]} if index < len(byte_values) else {})
        for index, record in enumerate(records)
    ]
    _check_decoder(ContentFormat.SENML_CBOR, cbor2.dumps(pack), base)


@FUZZ
@given(
    entries=st.lists(
        st.dictionaries(
            st.sampled_from(["n", "v", "sv", "bv", "ov", "t", "vs"]), JSON_VALUES, max_size=3
        ),
        max_size=4,
    ),
    head=st.dictionaries(st.sampled_from(["bn", "bt", "x"]), JSON_VALUES, max_size=2),
    base=st.sampled_from(BASES),
)
def test_lwm2m_json_decoder_takes_generated_documents(
    entries: list[dict[str, Any]], head: dict[str, Any], base: LwM2MPath
) -> None:
    """LwM2M JSON documents with random keys and values."""
    _check_decoder(ContentFormat.LWM2M_JSON, json.dumps(head | {"e": entries}).encode(), base)


# Link format and paths

LINK_TEXT = st.text(alphabet='<>/;=,"0123456789 .\\abelmortvw', max_size=120)


@FUZZ
@given(text=LINK_TEXT | st.binary(max_size=120).map(lambda b: b.decode("latin-1")))
def test_link_format_parsers_take_arbitrary_text(text: str) -> None:
    """Registration and Discover parsing: a result or a CodecError, nothing else."""
    payload = text.encode()
    for parse in (parse_registration, lambda p: parse_discover(p, root="/lwm2m")):
        with contextlib.suppress(CodecError):
            parse(payload)


@FUZZ
@given(text=st.text(alphabet=string.printable, max_size=30) | st.text(max_size=30))
def test_path_parser_takes_arbitrary_text(text: str) -> None:
    """Path parsing gives a canonical path or a PathError."""
    try:
        path = LwM2MPath.parse(text)
    except PathError:
        return
    assert str(path) == text


ANY_OBJECT = st.one_of(
    JSON_VALUES,
    st.binary(max_size=8),
    st.builds(ObjectLink, st.integers(0, 65535), st.integers(0, 65535)),
    st.floats(),
)


@FUZZ
@given(
    content_format=st.sampled_from(VALUE_FORMATS),
    resource=st.sampled_from(KNOWN_RESOURCES),
    value=ANY_OBJECT,
)
def test_encoders_take_values_of_any_type(
    content_format: ContentFormat, resource: tuple[int, Any], value: Any
) -> None:
    """Encoding a value of the wrong type is a CodecError; a right one reads back."""
    object_id, definition = resource
    path = LwM2MPath(object_id, 0, definition.resource_id)
    try:
        payload = encode(content_format, {path: value}, path)
    except CodecError:
        return
    decoded = decode(content_format, payload, path)
    assert list(decoded) == [path]
    assert encode(content_format, decoded, path) == payload


def test_root_base_is_refused_by_tree_and_single_formats() -> None:
    """Sanity check of the fuzz set-up: the root base reaches the format checks."""
    for content_format in (ContentFormat.TLV, ContentFormat.TEXT, ContentFormat.CBOR):
        with pytest.raises(UnsupportedFormatError, match="one"):
            decode(content_format, b"\x00", ROOT)
