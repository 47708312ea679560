"""LwM2M content-format codecs: round trips, the specification's wire examples, bad input.

Hand-written codecs are tested hardest: every format round-trips generated values for
registry-known and unknown paths, canonical wire bytes re-encode byte for byte, and every
class of malformed input raises a CodecError whose message says what is wrong.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from custom_components.iot_bridge.core.lwm2m import (
    MAX_PAYLOAD_BYTES,
    ROOT,
    CodecError,
    ContentFormat,
    FormatError,
    LimitError,
    LwM2MPath,
    ObjectLink,
    ObjectRegistry,
    Record,
    UnsupportedFormatError,
    Value,
    ValueTypeError,
    decode,
    decode_records,
    encode,
    encode_records,
    latest_values,
)

from .lwm2m_support import (
    ANY_UNTYPED,
    KNOWN_RESOURCES,
    ROUND_TRIP,
    UNKNOWN_OBJECT_IDS,
    UNTYPED_BY_FORMAT,
    VALUES_BY_TYPE,
    values_below,
)

P = LwM2MPath.parse
RECORD_FORMATS = [ContentFormat.SENML_JSON, ContentFormat.SENML_CBOR, ContentFormat.LWM2M_JSON]


def _round_trip(content_format: int, base: LwM2MPath, values: dict[LwM2MPath, Value]) -> None:
    payload = encode(content_format, values, base)
    assert decode(content_format, payload, base) == values
    # Decoding is canonical: what we write re-encodes to the same bytes.
    assert encode(content_format, decode(content_format, payload, base), base) == payload


# Round trips: every format, registry-known and unknown paths


@ROUND_TRIP
@given(case=st.integers(1, 4).flatmap(lambda depth: values_below(depth, known=True)))
def test_tlv_round_trip_known(case: tuple[LwM2MPath, dict[LwM2MPath, Value]]) -> None:
    """TLV keeps every typed value below an object, instance, resource or instance."""
    _round_trip(ContentFormat.TLV, *case)


@ROUND_TRIP
@given(
    case=st.integers(1, 4).flatmap(
        lambda depth: values_below(depth, known=False, unknown_values=ANY_UNTYPED)
    )
)
def test_tlv_unknown_resources_re_encode_byte_for_byte(
    case: tuple[LwM2MPath, dict[LwM2MPath, Value]],
) -> None:
    """Untyped TLV values are guessed, and the guess always re-encodes to the same bytes."""
    base, values = case
    payload = encode(ContentFormat.TLV, values, base)
    guessed = decode(ContentFormat.TLV, payload, base)
    assert list(guessed) == sorted(values)
    assert encode(ContentFormat.TLV, guessed, base) == payload
    for path, value in values.items():
        if isinstance(value, str) and value.isprintable():
            assert guessed[path] == value  # Printable text is always recognised.


@pytest.mark.parametrize("content_format", RECORD_FORMATS)
@ROUND_TRIP
@given(data=st.data())
def test_record_formats_round_trip(content_format: ContentFormat, data: st.DataObject) -> None:
    """SenML JSON/CBOR and LwM2M JSON keep typed values, from the root down to one instance."""
    depth = data.draw(st.integers(0, 4))
    known = data.draw(st.booleans())
    untyped = UNTYPED_BY_FORMAT[
        "lwm2m_json" if content_format is ContentFormat.LWM2M_JSON else "senml"
    ]
    base, values = data.draw(values_below(depth, known=known, unknown_values=untyped))
    _round_trip(content_format, base, values)


@st.composite
def single_values(
    draw: st.DrawFn, untyped: st.SearchStrategy[Any], only_type: str | None = None
) -> tuple[LwM2MPath, Value]:
    """One resource (or resource-instance) path and a value for it."""
    resources = [(o, r) for o, r in KNOWN_RESOURCES if only_type in (None, r.type.value)]
    if draw(st.booleans()):
        object_id, resource = draw(st.sampled_from(resources))
        path = LwM2MPath(object_id, draw(st.integers(0, 65534)), resource.resource_id)
        value = draw(VALUES_BY_TYPE[resource.type])
    else:
        path = LwM2MPath(draw(UNKNOWN_OBJECT_IDS), 0, draw(st.integers(0, 65535)))
        value = draw(untyped)
    if draw(st.booleans()):
        path = path.child(draw(st.integers(0, 65535)))
    return path, value


@pytest.mark.parametrize(
    ("content_format", "untyped", "only_type"),
    [
        (ContentFormat.TEXT, UNTYPED_BY_FORMAT["text"], None),
        (ContentFormat.CBOR, UNTYPED_BY_FORMAT["cbor"], None),
        (ContentFormat.OPAQUE, UNTYPED_BY_FORMAT["opaque"], "opaque"),
    ],
)
@ROUND_TRIP
@given(data=st.data())
def test_single_value_formats_round_trip(
    content_format: ContentFormat,
    untyped: st.SearchStrategy[Any],
    only_type: str | None,
    data: st.DataObject,
) -> None:
    """text/plain, CBOR and opaque keep one value of every type they can carry."""
    path, value = data.draw(single_values(untyped, only_type))
    _round_trip(content_format, path, {path: value})


TIMES = st.none() | st.integers(-(2**53), 2**53).map(float) | st.floats(-1e15, 1e15)


@pytest.mark.parametrize("content_format", RECORD_FORMATS)
@ROUND_TRIP
@given(data=st.data())
def test_time_series_round_trip(content_format: ContentFormat, data: st.DataObject) -> None:
    """Records keep their order and times; decode() keeps the newest value per path."""
    _, values = data.draw(values_below(2, known=True))
    paths = list(values)
    records = data.draw(
        st.lists(
            st.builds(
                lambda path, time: Record(path, values[path], time),
                st.sampled_from(paths),
                TIMES,
            ),
            min_size=1,
            max_size=8,
        )
    )
    payload = encode_records(content_format, records, ROOT)
    assert decode_records(content_format, payload, ROOT) == records
    assert decode(content_format, payload, ROOT) == latest_values(records)


def test_latest_values_prefers_newest_then_untimed_then_later() -> None:
    """The dict form keeps the newest record; no time counts as now; ties go to the later."""
    path = P("/3303/0/5700")
    records = [
        Record(path, 1.0, 20.0),
        Record(path, 2.0, 10.0),
        Record(P("/3303/0/5701"), "C", 5.0),
        Record(P("/3303/0/5701"), "K", 5.0),
    ]
    assert latest_values(records) == {path: 1.0, P("/3303/0/5701"): "K"}
    assert latest_values([*records, Record(path, 3.0)]) == {path: 3.0, P("/3303/0/5701"): "K"}
    assert latest_values([Record(path, 3.0), Record(path, 4.0, 1e12)]) == {path: 3.0}


# Known-good wire bytes (facts from the LwM2M specification's examples and format rules)

# Read /3/0 answered in TLV: the Device object instance of the core specification's example.
DEVICE_TLV = bytes.fromhex(
    "C800144F70656E204D6F62696C6520416C6C69616E6365"  # 0 Manufacturer
    "C801164C69676874776569676874204D324D20436C69656E74"  # 1 Model Number
    "C80209333435303030313233"  # 2 Serial Number
    "C303312E30"  # 3 Firmware Version
    "8606410001410105"  # 6 Available Power Sources [1, 5]
    "88070842000ED842011388"  # 7 Power Source Voltage [3800, 5000]
    "870841007D42010384"  # 8 Power Source Current [125, 900]
    "C10964"  # 9 Battery Level 100
    "C10A0F"  # 10 Memory Free 15
    "830B410000"  # 11 Error Code [0]
    "C40D5182428F"  # 13 Current Time 1367491215
    "C60E2B30323A3030"  # 14 UTC Offset "+02:00"
    "C11055"  # 16 Supported Binding "U"
)
DEVICE_VALUES: dict[LwM2MPath, Value] = {
    P("/3/0/0"): "Open Mobile Alliance",
    P("/3/0/1"): "Lightweight M2M Client",
    P("/3/0/2"): "345000123",
    P("/3/0/3"): "1.0",
    P("/3/0/6/0"): 1,
    P("/3/0/6/1"): 5,
    P("/3/0/7/0"): 3800,
    P("/3/0/7/1"): 5000,
    P("/3/0/8/0"): 125,
    P("/3/0/8/1"): 900,
    P("/3/0/9"): 100,
    P("/3/0/10"): 15,
    P("/3/0/11/0"): 0,
    P("/3/0/13"): 1367491215,
    P("/3/0/14"): "+02:00",
    P("/3/0/16"): "U",
}
DEVICE_SENML_JSON = (
    b'[{"bn":"/3/0/","n":"0","vs":"Open Mobile Alliance"},'
    b'{"n":"1","vs":"Lightweight M2M Client"},{"n":"2","vs":"345000123"},'
    b'{"n":"3","vs":"1.0"},{"n":"6/0","v":1},{"n":"6/1","v":5},{"n":"7/0","v":3800},'
    b'{"n":"7/1","v":5000},{"n":"8/0","v":125},{"n":"8/1","v":900},{"n":"9","v":100},'
    b'{"n":"10","v":15},{"n":"11/0","v":0},{"n":"13","v":1367491215},'
    b'{"n":"14","vs":"+02:00"},{"n":"16","vs":"U"}]'
)
DEVICE_LWM2M_JSON = (
    b'{"bn":"/3/0/","e":[{"n":"0","sv":"Open Mobile Alliance"},'
    b'{"n":"1","sv":"Lightweight M2M Client"},{"n":"2","sv":"345000123"},'
    b'{"n":"3","sv":"1.0"},{"n":"6/0","v":1},{"n":"6/1","v":5},{"n":"7/0","v":3800},'
    b'{"n":"7/1","v":5000},{"n":"8/0","v":125},{"n":"8/1","v":900},{"n":"9","v":100},'
    b'{"n":"10","v":15},{"n":"11/0","v":0},{"n":"13","v":1367491215},'
    b'{"n":"14","sv":"+02:00"},{"n":"16","sv":"U"}]}'
)
# Read /1 of a client with two LwM2M Server instances: short server id, lifetime,
# notification storing, binding.
SERVERS_TLV = bytes.fromhex(
    "08000F" "C10001" "C40100015180" "C10601" "C10755"
    "08010D" "C10002" "C2010E10" "C10600" "C10755"
)  # fmt: skip
SERVERS_VALUES: dict[LwM2MPath, Value] = {
    P("/1/0/0"): 1,
    P("/1/0/1"): 86400,
    P("/1/0/6"): True,
    P("/1/0/7"): "U",
    P("/1/1/0"): 2,
    P("/1/1/1"): 3600,
    P("/1/1/6"): False,
    P("/1/1/7"): "U",
}


@pytest.mark.parametrize(
    ("content_format", "base", "payload", "values"),
    [
        (ContentFormat.TLV, P("/3/0"), DEVICE_TLV, DEVICE_VALUES),
        # The same instance as an answer to Read /3: wrapped in its object instance (121 bytes).
        (ContentFormat.TLV, P("/3"), bytes.fromhex("080079") + DEVICE_TLV, DEVICE_VALUES),
        (ContentFormat.TLV, P("/1"), SERVERS_TLV, SERVERS_VALUES),
        # Read /3/0/7: the multiple resource itself.
        (
            ContentFormat.TLV,
            P("/3/0/7"),
            bytes.fromhex("88070842000ED842011388"),
            {P("/3/0/7/0"): 3800, P("/3/0/7/1"): 5000},
        ),
        # Read /3/0/7/1: one resource instance.
        (ContentFormat.TLV, P("/3/0/7/1"), bytes.fromhex("42011388"), {P("/3/0/7/1"): 5000}),
        # A 16-bit resource id and a 4-byte float: /3303/0/5700 = 21.5.
        (
            ContentFormat.TLV,
            P("/3303/0"),
            bytes.fromhex("E4164441AC0000"),
            {P("/3303/0/5700"): 21.5},
        ),
        # A float that needs 8 bytes, an object link, an unsigned above the signed range.
        (
            ContentFormat.TLV,
            P("/3303/0/5700"),
            bytes.fromhex("E81644083FB999999999999A"),
            {P("/3303/0/5700"): 0.1},
        ),
        (
            ContentFormat.TLV,
            P("/1/0/10"),
            bytes.fromhex("C40A00040002"),
            {P("/1/0/10"): ObjectLink(4, 2)},
        ),
        (ContentFormat.TLV, P("/1/0/11"), bytes.fromhex("C10BFF"), {P("/1/0/11"): 255}),
        (ContentFormat.TLV, P("/3/0/9"), bytes.fromhex("C109FF"), {P("/3/0/9"): -1}),
        (
            ContentFormat.TLV,
            P("/5/0/0"),
            bytes.fromhex("D000012C") + bytes(range(256)) + bytes(44),
            {P("/5/0/0"): bytes(range(256)) + bytes(44)},
        ),
        (ContentFormat.SENML_JSON, P("/3/0"), DEVICE_SENML_JSON, DEVICE_VALUES),
        (ContentFormat.LWM2M_JSON, P("/3/0"), DEVICE_LWM2M_JSON, DEVICE_VALUES),
        (
            ContentFormat.SENML_JSON,
            P("/3/0/0"),
            b'[{"bn":"/3/0/0","vs":"Open Mobile Alliance"}]',
            {P("/3/0/0"): "Open Mobile Alliance"},
        ),
        (
            ContentFormat.SENML_JSON,
            P("/"),
            b'[{"bn":"/","n":"3303/0/5700","v":21.5},{"n":"1/0/10","vlo":"4:2"},'
            b'{"n":"5/0/0","vd":"AP8"},{"n":"3311/0/5850","vb":true}]',
            {
                P("/3303/0/5700"): 21.5,
                P("/1/0/10"): ObjectLink(4, 2),
                P("/5/0/0"): b"\x00\xff",
                P("/3311/0/5850"): True,
            },
        ),
        (
            ContentFormat.SENML_CBOR,
            P("/3303/0"),
            bytes.fromhex("81A32168")
            + b"/3303/0/"
            + bytes.fromhex("0064")
            + b"5700"
            + bytes.fromhex("02FB4035800000000000"),
            {P("/3303/0/5700"): 21.5},
        ),
        (
            ContentFormat.LWM2M_JSON,
            P("/5/0"),
            b'{"bn":"/5/0/","e":[{"n":"0","sv":"AP8="},{"n":"1","sv":"coap://x"}]}',
            {P("/5/0/0"): b"\x00\xff", P("/5/0/1"): "coap://x"},
        ),
        (
            ContentFormat.TEXT,
            P("/3/0/0"),
            b"Open Mobile Alliance",
            {P("/3/0/0"): "Open Mobile Alliance"},
        ),
        (ContentFormat.TEXT, P("/3/0/9"), b"100", {P("/3/0/9"): 100}),
        (ContentFormat.TEXT, P("/3303/0/5700"), b"-21.25", {P("/3303/0/5700"): -21.25}),
        (ContentFormat.TEXT, P("/3303/0/5700"), b"0.0000001", {P("/3303/0/5700"): 1e-7}),
        (ContentFormat.TEXT, P("/3303/0/5700"), b"10000000000000000.0", {P("/3303/0/5700"): 1e16}),
        (ContentFormat.TEXT, P("/3311/0/5850"), b"1", {P("/3311/0/5850"): True}),
        (ContentFormat.TEXT, P("/1/0/10"), b"3:0", {P("/1/0/10"): ObjectLink(3, 0)}),
        (ContentFormat.TEXT, P("/3/0/13"), b"1367491215", {P("/3/0/13"): 1367491215}),
        (ContentFormat.TEXT, P("/5/0/0"), b"AP8=", {P("/5/0/0"): b"\x00\xff"}),
        (ContentFormat.OPAQUE, P("/5/0/0"), b"\x00\xff", {P("/5/0/0"): b"\x00\xff"}),
        (ContentFormat.CBOR, P("/3/0/9"), bytes.fromhex("1864"), {P("/3/0/9"): 100}),
        (
            ContentFormat.CBOR,
            P("/3/0/13"),
            bytes.fromhex("C11A5182428F"),
            {P("/3/0/13"): 1367491215},
        ),
        (
            ContentFormat.CBOR,
            P("/1/0/10"),
            bytes.fromhex("63333A30"),
            {P("/1/0/10"): ObjectLink(3, 0)},
        ),
        (ContentFormat.CBOR, P("/3311/0/5850"), bytes.fromhex("F5"), {P("/3311/0/5850"): True}),
    ],
)
def test_known_wire_bytes(
    content_format: ContentFormat,
    base: LwM2MPath,
    payload: bytes,
    values: dict[LwM2MPath, Value],
) -> None:
    """Canonical wire bytes decode to the expected values and re-encode byte for byte."""
    assert decode(content_format, payload, base) == values
    assert encode(content_format, values, base) == payload


@pytest.mark.parametrize(
    ("content_format", "base", "payload", "values"),
    [
        # Non-canonical but valid: lenient readings of what real clients send.
        (ContentFormat.TLV, P("/3/0/9"), bytes.fromhex("C40900000064"), {P("/3/0/9"): 100}),
        (
            ContentFormat.TLV,
            P("/3/0/9"),
            bytes.fromhex("C809080000000000000064"),
            {P("/3/0/9"): 100},
        ),
        (ContentFormat.TLV, P("/3/0/9"), bytes.fromhex("E1000964"), {P("/3/0/9"): 100}),
        (ContentFormat.TLV, P("/3/0"), bytes.fromhex("D80900000164"), {P("/3/0/9"): 100}),
        # A resource straight under an object: single-instance shorthand of some 1.0 clients.
        (ContentFormat.TLV, P("/3"), bytes.fromhex("C10964"), {P("/3/0/9"): 100}),
        # An instance wrapper repeating the requested instance.
        (ContentFormat.TLV, P("/3/0"), bytes.fromhex("080003C10964"), {P("/3/0/9"): 100}),
        # Resource instances straight under the requested multiple resource.
        (ContentFormat.TLV, P("/3/0/7"), bytes.fromhex("42000ED8"), {P("/3/0/7/0"): 3800}),
        (ContentFormat.TEXT, P("/3/0/9"), b" 100\n", {P("/3/0/9"): 100}),
        (ContentFormat.TEXT, P("/3/0/9"), b"1e2", {P("/3/0/9"): 100}),
        (ContentFormat.TEXT, P("/3303/0/5700"), b"21", {P("/3303/0/5700"): 21.0}),
        (ContentFormat.TEXT, P("/3303/0/5700"), b"2.15E1", {P("/3303/0/5700"): 21.5}),
        (ContentFormat.TEXT, P("/3303/0/5700"), b".5", {P("/3303/0/5700"): 0.5}),
        (ContentFormat.TEXT, P("/31024/0/1"), b"anything", {P("/31024/0/1"): "anything"}),
        (ContentFormat.CBOR, P("/3303/0/5700"), bytes.fromhex("F94D60"), {P("/3303/0/5700"): 21.5}),
        (ContentFormat.CBOR, P("/3303/0/5700"), bytes.fromhex("15"), {P("/3303/0/5700"): 21.0}),
        (ContentFormat.CBOR, P("/3/0/9"), bytes.fromhex("F95640"), {P("/3/0/9"): 100}),
        (ContentFormat.CBOR, P("/3/0/13"), bytes.fromhex("1A5182428F"), {P("/3/0/13"): 1367491215}),
        (
            ContentFormat.CBOR,
            P("/3/0/13"),
            b"\xc0\x742013-05-02T10:40:15Z",
            {P("/3/0/13"): 1367491215},
        ),
        (
            ContentFormat.CBOR,
            P("/31024/0/1"),
            bytes.fromhex("C11A5182428F"),
            {P("/31024/0/1"): 1367491215},
        ),
        (ContentFormat.CBOR, P("/3/0/9"), bytes.fromhex("D9D9F71864"), {P("/3/0/9"): 100}),
        (
            ContentFormat.CBOR,
            P("/1/0/11"),
            bytes.fromhex("C248FFFFFFFFFFFFFFFF"),
            {P("/1/0/11"): 2**64 - 1},
        ),
        (ContentFormat.SENML_JSON, P("/3/0"), b'[{"n":"/3/0/9","v":100.0}]', {P("/3/0/9"): 100}),
        (
            ContentFormat.SENML_JSON,
            P("/3311/0"),
            b'[{"n":"/3311/0/5850","v":1}]',
            {P("/3311/0/5850"): True},
        ),
        (
            ContentFormat.SENML_JSON,
            P("/1/0/10"),
            b'[{"n":"/1/0/10","vs":"3:0"}]',
            {P("/1/0/10"): ObjectLink(3, 0)},
        ),
        (
            ContentFormat.SENML_JSON,
            P("/5/0"),
            b'[{"n":"/5/0/0","vd":"AP8="}]',
            {P("/5/0/0"): b"\x00\xff"},
        ),
        (
            ContentFormat.SENML_JSON,
            P("/"),
            b'[{"bn":"/3303/0/","bver":10,"bu":"Cel","n":"5700","u":"Cel","ut":60,"v":21.5}]',
            {P("/3303/0/5700"): 21.5},
        ),
        # Base names carry over, and can change mid-pack.
        (
            ContentFormat.SENML_JSON,
            P("/"),
            b'[{"bn":"/3303/0/","n":"5700","v":1},{"n":"5701","vs":"Cel"},'
            b'{"bn":"/3304/0/5700","v":2}]',
            {P("/3303/0/5700"): 1.0, P("/3303/0/5701"): "Cel", P("/3304/0/5700"): 2.0},
        ),
        (ContentFormat.LWM2M_JSON, P("/3/0"), b'{"e":[{"n":"9","v":100}]}', {P("/3/0/9"): 100}),
        (ContentFormat.LWM2M_JSON, P("/3/0/9"), b'{"e":[{"v":100}]}', {P("/3/0/9"): 100}),
        (
            ContentFormat.LWM2M_JSON,
            P("/3311/0"),
            b'{"bn":"/3311/0/","e":[{"n":"5850","bv":false}]}',
            {P("/3311/0/5850"): False},
        ),
        (
            ContentFormat.LWM2M_JSON,
            P("/1/0"),
            b'{"bn":"/1/0/","e":[{"n":"10","ov":"4:2"}]}',
            {P("/1/0/10"): ObjectLink(4, 2)},
        ),
        (ContentFormat.LWM2M_JSON, P("/"), b'{"e":[{"n":"3/0/9","v":100}]}', {P("/3/0/9"): 100}),
        (ContentFormat.LWM2M_JSON, P("/3/0"), b'{"bn":"/3/0/","e":[]}', {}),
    ],
)
def test_lenient_readings(
    content_format: ContentFormat,
    base: LwM2MPath,
    payload: bytes,
    values: dict[LwM2MPath, Value],
) -> None:
    """Valid but non-canonical input decodes to the same typed values."""
    decoded = decode(content_format, payload, base)
    assert decoded == values
    assert [type(v) for v in decoded.values()] == [type(v) for v in values.values()]


def test_senml_times_resolve_against_base_time() -> None:
    """bt + t gives each record's time; bt carries over; no time at all stays None."""
    payload = (
        b'[{"bn":"/3303/0/5700","bt":1700000000,"t":-10,"v":20.5},{"t":0,"v":21.0},'
        b'{"bt":1700000100,"v":22},{"bn":"/3304/0/5700","bt":0,"t":-5,"v":40}]'
    )
    records = decode_records(ContentFormat.SENML_JSON, payload, ROOT)
    temperature = P("/3303/0/5700")
    assert records == [
        Record(temperature, 20.5, 1699999990.0),
        Record(temperature, 21.0, 1700000000.0),
        Record(temperature, 22.0, 1700000100.0),
        Record(P("/3304/0/5700"), 40.0, -5.0),  # Relative: 5 s before receipt (RFC 8428).
    ]
    assert decode(ContentFormat.SENML_JSON, payload, ROOT)[temperature] == 22.0
    untimed = decode_records(ContentFormat.SENML_JSON, b'[{"n":"/3/0/9","v":1}]', ROOT)
    assert untimed == [Record(P("/3/0/9"), 1, None)]
    lwm2m_json = b'{"bn":"/3/0/","bt":100,"e":[{"n":"9","v":1,"t":5},{"n":"10","v":2}]}'
    assert decode_records(ContentFormat.LWM2M_JSON, lwm2m_json, P("/3/0")) == [
        Record(P("/3/0/9"), 1, 105.0),
        Record(P("/3/0/10"), 2, 100.0),
    ]


def test_encoders_choose_the_smallest_tlv_sizes() -> None:
    """Integers use the smallest of 1/2/4/8 bytes; ids and lengths the smallest width."""

    def resource_bytes(resource_id: int, value: Value) -> bytes:
        base = LwM2MPath(31024, 0, resource_id)
        return encode(ContentFormat.TLV, {base: value}, base)

    assert resource_bytes(1, 127) == bytes.fromhex("C1017F")
    assert resource_bytes(1, 128) == bytes.fromhex("C2010080")
    assert resource_bytes(1, -129) == bytes.fromhex("C201FF7F")
    assert resource_bytes(1, 2**31) == bytes.fromhex("C801080000000080000000")
    assert resource_bytes(1, -(2**63)) == bytes.fromhex("C801088000000000000000")
    assert resource_bytes(300, "") == bytes.fromhex("E0012C")
    assert resource_bytes(1, "x" * 7) == bytes.fromhex("C701") + b"x" * 7
    assert resource_bytes(1, "x" * 8) == bytes.fromhex("C80108") + b"x" * 8
    big = bytes(70000)
    assert resource_bytes(1, big)[:5] == bytes.fromhex("D801011170")
    unsigned = LwM2MPath(1, 0, 11)
    assert encode(ContentFormat.TLV, {unsigned: 2**64 - 1}, unsigned) == bytes.fromhex(
        "C80B08FFFFFFFFFFFFFFFF"
    )
    assert encode(ContentFormat.TLV, {unsigned: 200}, unsigned) == bytes.fromhex("C10BC8")
    floats = LwM2MPath(3303, 0, 5700)
    assert encode(ContentFormat.TLV, {floats: 1e300}, floats)[4:] == struct.pack(">d", 1e300)


def test_values_are_coerced_on_encode() -> None:
    """Encoders apply the registry's types: an int to a float resource is written as float."""
    temperature = P("/3303/0/5700")
    payload = encode(ContentFormat.SENML_JSON, {temperature: 21}, temperature)
    assert json.loads(payload) == [{"bn": "/3303/0/5700", "v": 21.0}]
    assert payload == b'[{"bn":"/3303/0/5700","v":21.0}]'
    assert cbor2.loads(encode(ContentFormat.CBOR, {temperature: 21}, temperature)) == 21.0
    with pytest.raises(ValueTypeError, match="float expected, got str"):
        encode(ContentFormat.TLV, {temperature: "21"}, P("/3303/0"))


def test_custom_registry_types_values() -> None:
    """Callers can pass their own registry; without it a vendor resource is untyped."""
    vendor = P("/31024/0/1")
    payload = bytes.fromhex("C10141")  # 'A': printable, so untyped it reads as text.
    assert decode(ContentFormat.TLV, payload, P("/31024/0")) == {vendor: "A"}
    registry = ObjectRegistry.from_json(
        '{"objects": [{"id": 31024, "name": "Vendor", "version": "1.0", "multiple": true,'
        ' "mandatory": false, "resources": [{"id": 1, "name": "Level", "type": "integer",'
        ' "operations": "R", "multiple": false, "mandatory": false}]}]}'
    )
    assert decode(ContentFormat.TLV, payload, P("/31024/0"), registry) == {vendor: 65}
    empty = ObjectRegistry([])
    assert decode(ContentFormat.TLV, bytes.fromhex("C10964"), P("/3/0"), empty) == {
        P("/3/0/9"): "d"
    }


# Malformed input: each class raises a CodecError saying what is wrong


def _bad(
    content_format: ContentFormat, base: str, payload: bytes, error: type[CodecError], message: str
) -> Any:
    return pytest.param(content_format, P(base), payload, error, message, id=message[:40])


TLV = ContentFormat.TLV
# fmt: off
MALFORMED = [
    # TLV framing
    _bad(TLV, "/3/0", bytes.fromhex("C8"), FormatError, "truncated TLV header at byte 0"),
    _bad(TLV, "/3/0", bytes.fromhex("C10964E816"), FormatError, "truncated TLV header at byte 3"),
    _bad(TLV, "/3/0", bytes.fromhex("C800056162"), FormatError, "byte 0 declares 5 value bytes, only 2 remain"),
    _bad(TLV, "/3/0", bytes.fromhex("D000FFFF"), FormatError, "declares 65535 value bytes, only 0"),
    _bad(TLV, "/3", bytes.fromhex("080002C10964"), FormatError, "byte 3 declares 1 value bytes, only 0"),
    _bad(TLV, "/3", bytes.fromhex("0800020000"), FormatError, "object_instance at byte 3 cannot sit inside a object_instance"),
    _bad(TLV, "/3/0", bytes.fromhex("880703C10001"), FormatError, "resource at byte 3 cannot sit inside a multiple_resource"),
    _bad(TLV, "/3/0", bytes.fromhex("410001"), FormatError, "resource_instance 0 at byte 0 does not fit below /3/0"),
    _bad(TLV, "/3/0/9", bytes.fromhex("C10A01"), FormatError, "resource 10 at byte 0 does not fit below /3/0/9"),
    _bad(TLV, "/3", bytes.fromhex("28FFFF00"), FormatError, "byte 0: instance id 65535 is outside 0..65534"),
    _bad(TLV, "/3/0", bytes.fromhex("C10964C10964"), FormatError, "carries /3/0/9 twice \\(second at byte 3\\)"),
    _bad(TLV, "/3/0", bytes.fromhex("C000") * 4097, LimitError, "TLV payload has more than 4096 entries"),
    _bad(TLV, "/", bytes.fromhex("C10964"), UnsupportedFormatError, "TLV carries one object at most"),
    # TLV values
    _bad(TLV, "/3/0", bytes.fromhex("C309000001"), ValueTypeError, "TLV value for /3/0/9 is 3 bytes, expected 1/2/4/8"),
    _bad(TLV, "/3/0", bytes.fromhex("C009"), ValueTypeError, "is 0 bytes, expected 1/2/4/8"),
    _bad(TLV, "/3311/0", bytes.fromhex("E116DA02"), ValueTypeError, "boolean TLV for /3311/0/5850 must be one byte 0 or 1"),
    _bad(TLV, "/3303/0", bytes.fromhex("E3164441AC00"), ValueTypeError, "/3303/0/5700 is 3 bytes, expected 4/8"),
    _bad(TLV, "/3303/0", bytes.fromhex("E416447FC00000"), ValueTypeError, "/3303/0/5700: nan is not allowed"),
    _bad(TLV, "/3303/0", bytes.fromhex("E81644087FF0") + bytes(6), ValueTypeError, "inf is not allowed"),
    _bad(TLV, "/3/0", bytes.fromhex("C200FFFE"), ValueTypeError, "string for /3/0/0 is not UTF-8 \\(byte 0\\)"),
    _bad(TLV, "/1/0", bytes.fromhex("C30A000300"), ValueTypeError, "/1/0/10 is 3 bytes, expected 4"),
    _bad(TLV, "/3/0", bytes.fromhex("C10401"), ValueTypeError, "/3/0/4 is executable and carries no value"),
    # text/plain
    _bad(ContentFormat.TEXT, "/3/0", b"x", UnsupportedFormatError, "text/plain carries one resource value; /3/0 is an instance"),
    _bad(ContentFormat.TEXT, "/3/0/0", b"\xff", FormatError, "text/plain value for /3/0/0 is not UTF-8"),
    _bad(ContentFormat.TEXT, "/3311/0/5850", b"2", ValueTypeError, "must be '0' or '1', got '2'"),
    _bad(ContentFormat.TEXT, "/3311/0/5850", b"true", ValueTypeError, "must be '0' or '1'"),
    _bad(ContentFormat.TEXT, "/3/0/9", b"abc", ValueTypeError, "text for /3/0/9 is not a number: 'abc'"),
    _bad(ContentFormat.TEXT, "/3/0/9", b"21.5", ValueTypeError, "21.5 is not a whole number"),
    _bad(ContentFormat.TEXT, "/3/0/9", b"99999999999999999999", ValueTypeError, "outside the integer range"),
    _bad(ContentFormat.TEXT, "/3/0/9", b"1_000", ValueTypeError, "is not a number"),
    _bad(ContentFormat.TEXT, "/3/0/9", "١".encode(), ValueTypeError, "is not a number"),  # noqa: RUF001
    _bad(ContentFormat.TEXT, "/3/0/9", b"9" * 2000, ValueTypeError, "is not a number: '9{27}\\.\\.\\.'"),
    _bad(ContentFormat.TEXT, "/3303/0/5700", b"nan", ValueTypeError, "is not a number"),
    _bad(ContentFormat.TEXT, "/3303/0/5700", b"Infinity", ValueTypeError, "is not a number"),
    _bad(ContentFormat.TEXT, "/3303/0/5700", b"1e999", ValueTypeError, "inf is not allowed"),
    _bad(ContentFormat.TEXT, "/5/0/0", b"!!!", ValueTypeError, "opaque text for /5/0/0 is not base64"),
    _bad(ContentFormat.TEXT, "/5/0/0", "éé".encode(), ValueTypeError, "is not base64: string argument should contain only ASCII"),
    _bad(ContentFormat.TEXT, "/1/0/10", b"3", ValueTypeError, "not 'object:instance'"),
    _bad(ContentFormat.TEXT, "/3/0/4", b"", ValueTypeError, "executable"),
    # opaque
    _bad(ContentFormat.OPAQUE, "/3/0/0", b"x", ValueTypeError, "opaque content for /3/0/0, which is a string resource"),
    _bad(ContentFormat.OPAQUE, "/3", b"x", UnsupportedFormatError, "/3 is an object"),
    # CBOR
    _bad(ContentFormat.CBOR, "/3/0/9", bytes.fromhex("186400"), FormatError, "has 1 bytes after its CBOR data item"),
    _bad(ContentFormat.CBOR, "/3/0/9", bytes.fromhex("1900"), FormatError, "CBOR value for /3/0/9 is not valid CBOR"),
    _bad(ContentFormat.CBOR, "/3/0/9", b"", FormatError, "not valid CBOR"),
    _bad(ContentFormat.CBOR, "/3/0/0", bytes.fromhex("62FFFE"), FormatError, "not valid CBOR"),
    _bad(ContentFormat.CBOR, "/3/0/9", bytes.fromhex("63616263"), ValueTypeError, "value of wrong type for /3/0/9: integer expected, got str 'abc'"),
    _bad(ContentFormat.CBOR, "/3303/0/5700", bytes.fromhex("F97E00"), ValueTypeError, "nan is not allowed"),
    _bad(ContentFormat.CBOR, "/3303/0/5700", bytes.fromhex("F97C00"), ValueTypeError, "inf is not allowed"),
    _bad(ContentFormat.CBOR, "/31024/0/1", bytes.fromhex("D8236161"), FormatError, "CBOR tag 35 has no meaning in LwM2M"),
    _bad(ContentFormat.CBOR, "/31024/0/1", bytes.fromhex("D9010280"), FormatError, "CBOR tag 258 has no meaning"),
    _bad(ContentFormat.CBOR, "/31024/0/1", bytes.fromhex("D903E700"), FormatError, "CBOR tag 999 has no meaning"),
    _bad(ContentFormat.CBOR, "/3/0/13", bytes.fromhex("C16161"), FormatError, "tag 1 \\(time\\) must hold a number"),
    _bad(ContentFormat.CBOR, "/3/0/13", bytes.fromhex("C001"), FormatError, "tag 0 \\(time\\) must hold a string"),
    _bad(ContentFormat.CBOR, "/3/0/13", bytes.fromhex("C063616263"), FormatError, "holds 'abc', not an RFC 3339 time"),
    _bad(ContentFormat.CBOR, "/3/0/13", bytes.fromhex("C073323031332D30352D30325431303A34303A3135"), FormatError, "has no time zone"),
    _bad(ContentFormat.CBOR, "/3/0/13", bytes.fromhex("C1F93E00"), ValueTypeError, "1.5 is not a whole number"),
    _bad(ContentFormat.CBOR, "/31024/0/1", bytes.fromhex("8100"), ValueTypeError, "list is not an LwM2M value"),
    _bad(ContentFormat.CBOR, "/31024/0/1", bytes.fromhex("818100"), FormatError, "maximum container nesting depth"),
    _bad(ContentFormat.CBOR, "/31024/0/1", bytes.fromhex("F6"), ValueTypeError, "NoneType is not an LwM2M value"),
    _bad(ContentFormat.CBOR, "/31024/0/1", bytes.fromhex("C24901") + bytes(8), ValueTypeError, "outside the integer range"),
    _bad(ContentFormat.CBOR, "/3/0/4", bytes.fromhex("00"), ValueTypeError, "executable"),
    # SenML JSON
    _bad(ContentFormat.SENML_JSON, "/", b"\xff", FormatError, "SenML JSON is not UTF-8 \\(byte 0\\)"),
    _bad(ContentFormat.SENML_JSON, "/", b"[{", FormatError, "SenML JSON is not valid JSON"),
    _bad(ContentFormat.SENML_JSON, "/", b"{}", FormatError, "must be an array of records, got dict"),
    _bad(ContentFormat.SENML_JSON, "/", b"[1]", FormatError, "SenML JSON record 0 must be an object"),
    _bad(ContentFormat.SENML_JSON, "/", b'[{"n":"/3303/0/5700","v":NaN}]', FormatError, "NaN is not a number LwM2M allows"),
    _bad(ContentFormat.SENML_JSON, "/", b'[{"n":"/3303/0/5700","v":-Infinity}]', FormatError, "-Infinity is not a number"),
    _bad(ContentFormat.SENML_JSON, "/", b'[{"n":"/3303/0/5700","v":1e999}]', ValueTypeError, "inf is not allowed"),
    _bad(ContentFormat.SENML_JSON, "/", b'[{"n":"/3/0/9","v":21.5}]', ValueTypeError, "/3/0/9: 21.5 is not a whole number"),
    _bad(ContentFormat.SENML_JSON, "/", b'[{"n":"/3303/0/5700","vs":"21"}]', ValueTypeError, "value of wrong type for /3303/0/5700: float expected, got str"),
    _bad(ContentFormat.SENML_JSON, "/", b'[{"n":"/3/0/9","v":1' + b"0" * 5000 + b"}]", FormatError, "not valid JSON"),
    _bad(ContentFormat.SENML_JSON, "/", b'[{"n":"/3/0/9","foo":1}]', FormatError, "record 0: unknown SenML label 'foo'"),
    _bad(ContentFormat.SENML_JSON, "/", b'[{"n":"/3/0/9","bv":1,"v":1}]', FormatError, "label 'bv' \\(base value\\) is not LwM2M"),
    _bad(ContentFormat.SENML_JSON, "/", b'[{"n":"/3/0/9","s":1}]', FormatError, "label 's' \\(sum\\)"),
    _bad(ContentFormat.SENML_JSON, "/", b'[{"n":5,"v":1}]', FormatError, "'n' must be str, got int"),
    _bad(ContentFormat.SENML_JSON, "/", b'[{"n":"/3/0/9","v":true}]', FormatError, "'v' must be int or float, got bool"),
    _bad(ContentFormat.SENML_JSON, "/", b'[{"n":"/3/0/9","vb":1}]', FormatError, "'vb' must be bool, got int"),
    _bad(ContentFormat.SENML_JSON, "/", b'[{"n":"/3/0/9","v":1,"vs":"1"}]', FormatError, "record 0 has several values \\(v, vs\\)"),
    _bad(ContentFormat.SENML_JSON, "/", b'[{"n":"/3/0/9"}]', FormatError, "record 0 has no value"),
    _bad(ContentFormat.SENML_JSON, "/", b'[{"v":1}]', FormatError, "record 0 has no name"),
    _bad(ContentFormat.SENML_JSON, "/", b'[{"bn":"/3/0/","n":"x","v":1}]', FormatError, "name does not resolve to a path: path '/3/0/x'"),
    _bad(ContentFormat.SENML_JSON, "/", b'[{"bn":"/3/0","n":"9","v":1}]', FormatError, "'09' is not a decimal id"),
    _bad(ContentFormat.SENML_JSON, "/", b'[{"bn":"urn:dev:1","n":"9","v":1}]', FormatError, "must start with '/'"),
    _bad(ContentFormat.SENML_JSON, "/3/0", b'[{"n":"/4/0/2","v":1}]', FormatError, "/4/0/2 lies outside /3/0"),
    _bad(ContentFormat.SENML_JSON, "/", b'[{"n":"/3/0","v":1}]', FormatError, "/3/0 is an instance, values sit at resources"),
    _bad(ContentFormat.SENML_JSON, "/", b'[{"n":"/3/0/9","n":"/3/0/10","v":1}]', FormatError, "label 'n' appears twice"),
    _bad(ContentFormat.SENML_JSON, "/", b'[{"n":"/5/0/0","vd":"!!"}]', FormatError, "'!!' is not base64"),
    _bad(ContentFormat.SENML_JSON, "/", '[{"n":"/5/0/0","vd":"é"}]'.encode(), FormatError, "'é' is not base64"),
    _bad(ContentFormat.SENML_JSON, "/", b'[{"n":"/5/0/0","vd":5}]', FormatError, "'vd' must be str"),
    _bad(ContentFormat.SENML_JSON, "/", b'[{"n":"/1/0/10","vlo":"3-0"}]', ValueTypeError, "record 0: object link '3-0' is not 'object:instance'"),
    _bad(ContentFormat.SENML_JSON, "/", b'[{"n":"/3/0/0","vs":"\\ud800"}]', ValueTypeError, "not valid Unicode"),
    _bad(ContentFormat.SENML_JSON, "/", b'[{"bver":11,"n":"/3/0/9","v":1}]', FormatError, "SenML version 11 is newer than 10"),
    _bad(ContentFormat.SENML_JSON, "/", b'[{"bt":1e400,"n":"/3/0/9","v":1}]', FormatError, "time must be finite"),
    _bad(ContentFormat.SENML_JSON, "/", b'[{"t":99999999999999999999,"n":"/3/0/9","v":1}]', FormatError, "time 99999999999999999999 is out of range"),
    _bad(ContentFormat.SENML_JSON, "/", b'[{"bt":1e308,"t":1e308,"n":"/3/0/9","v":1}]', FormatError, "base time plus time is out of range"),
    _bad(ContentFormat.SENML_JSON, "/", b"[" * 30000 + b"]" * 30000, FormatError, "nests too deeply|must be an object"),
    _bad(ContentFormat.SENML_JSON, "/", b"[" + b'{"v":1},' * 4096 + b'{"v":1}]', LimitError, "more than 4096 entries"),
    _bad(ContentFormat.SENML_JSON, "/", b" " * (MAX_PAYLOAD_BYTES + 1), LimitError, "SenML JSON payload is 65537 bytes, limit is 65536"),
    # SenML CBOR
    _bad(ContentFormat.SENML_CBOR, "/", bytes.fromhex("A0"), FormatError, "SenML CBOR must be an array of records, got dict"),
    _bad(ContentFormat.SENML_CBOR, "/", bytes.fromhex("8101"), FormatError, "SenML CBOR record 0 must be a map, got int"),
    _bad(ContentFormat.SENML_CBOR, "/", bytes.fromhex("81A1186301"), FormatError, "unknown SenML label 99"),
    _bad(ContentFormat.SENML_CBOR, "/", bytes.fromhex("81A1F9400001"), FormatError, "unknown SenML label 2.0"),
    _bad(ContentFormat.SENML_CBOR, "/", bytes.fromhex("81A1F501"), FormatError, "unknown SenML label True"),
    _bad(ContentFormat.SENML_CBOR, "/", bytes.fromhex("81A1616E01"), FormatError, "unknown SenML label 'n'"),
    _bad(ContentFormat.SENML_CBOR, "/", bytes.fromhex("81A200050201"), FormatError, "'n' must be str, got int"),
    _bad(ContentFormat.SENML_CBOR, "/", bytes.fromhex("81A200662F352F302F30086161"), FormatError, "'vd' must be bytes, got str"),
    _bad(ContentFormat.SENML_CBOR, "/", bytes.fromhex("81A200662F332F302F390001"), FormatError, "Duplicate map key: 0"),
    _bad(ContentFormat.SENML_CBOR, "/", bytes.fromhex("81A200662F332F302F39028101"), FormatError, "nesting depth"),
    _bad(ContentFormat.SENML_CBOR, "/", bytes.fromhex("81A200662F332F302F39020100"), FormatError, "1 bytes after its CBOR data item"),
    _bad(ContentFormat.SENML_CBOR, "/", bytes.fromhex("991001") + bytes.fromhex("A0") * 4097, LimitError, "more than 4096 entries"),
    # LwM2M JSON
    _bad(ContentFormat.LWM2M_JSON, "/3/0", b"[]", FormatError, "LwM2M JSON must be an object, got list"),
    _bad(ContentFormat.LWM2M_JSON, "/3/0", b'{"bn":"/3/0/","x":1,"e":[]}', FormatError, "unknown key 'x'"),
    _bad(ContentFormat.LWM2M_JSON, "/3/0", b'{"bn":"/3/0/"}', FormatError, "'e' must be an array of records, got NoneType"),
    _bad(ContentFormat.LWM2M_JSON, "/3/0", b'{"bn":5,"e":[]}', FormatError, "'bn' must be str"),
    _bad(ContentFormat.LWM2M_JSON, "/3/0", b'{"bn":"/3/0/","e":[{"n":9,"v":1}]}', FormatError, "entry 0: 'n' must be str"),
    _bad(ContentFormat.LWM2M_JSON, "/3/0", b'{"bn":"/3/0/","e":[{"n":"9","vs":"1"}]}', FormatError, "entry 0: unknown LwM2M JSON key 'vs'"),
    _bad(ContentFormat.LWM2M_JSON, "/5/0", b'{"bn":"/5/0/","e":[{"n":"0","sv":"!!"}]}', FormatError, "is not base64"),
    _bad(ContentFormat.LWM2M_JSON, "/3/0", b'{"bn":"/3/0/","e":[{"n":"9","sv":"a"}]}', ValueTypeError, "integer expected, got str"),
    # Dispatch
    _bad(ContentFormat.LINK_FORMAT, "/", b"</1>", UnsupportedFormatError, "link-format carries links, not values"),
]
# fmt: on

# fmt: on


@pytest.mark.parametrize(("content_format", "base", "payload", "error", "message"), MALFORMED)
def test_malformed_input_raises_codec_error(
    content_format: ContentFormat,
    base: LwM2MPath,
    payload: bytes,
    error: type[CodecError],
    message: str,
) -> None:
    """Each malformed payload raises the expected CodecError subclass with a clear message."""
    with pytest.raises(error, match=message) as caught:
        decode(content_format, payload, base)
    assert isinstance(caught.value, ValueError)  # Callers may catch ValueError too.


def test_unknown_content_format() -> None:
    """A content format LwM2M does not define is refused both ways."""
    with pytest.raises(UnsupportedFormatError, match="content format 50 is not LwM2M's"):
        decode(50, b"{}", ROOT)
    with pytest.raises(UnsupportedFormatError, match="content format 50"):
        encode(50, {}, ROOT)
    assert ContentFormat.SENML_CBOR.label == "SenML CBOR"


@pytest.mark.parametrize(
    ("content_format", "values", "base", "message"),
    [
        (ContentFormat.TEXT, {}, "/3/0/0", "carries exactly the value of /3/0/0, asked for \\[\\]"),
        (ContentFormat.TEXT, {"/3/0/1": "x"}, "/3/0/0", "asked for \\[/3/0/1\\]"),
        (ContentFormat.CBOR, {"/3/0/0": "x", "/3/0/1": "y"}, "/3/0/0", "exactly the value"),
        (
            ContentFormat.OPAQUE,
            {"/3/0/0": b"x"},
            "/3/0/0",
            "opaque content for /3/0/0, which is a string",
        ),
        (ContentFormat.OPAQUE, {"/31024/0/0": "x"}, "/31024/0/0", "opaque expected, got str"),
        (ContentFormat.TLV, {"/3/0/9": 1}, "/", "TLV carries one object at most"),
        (ContentFormat.TLV, {"/4/0/2": 1}, "/3", "TLV below /3 cannot carry /4/0/2"),
        (
            ContentFormat.TLV,
            {"/3/0/7": 1, "/3/0/7/0": 2},
            "/3/0",
            "/3/0/7 has a value and instances \\(/3/0/7/0\\)",
        ),
        (ContentFormat.SENML_JSON, {"/3/0/7": 1, "/3/0/7/0": 2}, "/3", "has a value and instances"),
        (ContentFormat.SENML_JSON, {"/4/0/2": 1}, "/3", "records below /3 cannot carry /4/0/2"),
        (ContentFormat.SENML_CBOR, {"/3/0": 1}, "/3", "cannot carry /3/0"),
        (ContentFormat.LWM2M_JSON, {"/3/0/9": "x"}, "/3/0", "integer expected, got str"),
        (ContentFormat.SENML_JSON, {"/3303/0/5700": float("nan")}, "/", "nan is not allowed"),
        (ContentFormat.CBOR, {"/3/0/4": b""}, "/3/0/4", "executable"),
    ],
)
def test_encoders_refuse_what_the_format_cannot_carry(
    content_format: ContentFormat, values: dict[str, Value], base: str, message: str
) -> None:
    """Encoding bad or misplaced values raises a CodecError too."""
    with pytest.raises(CodecError, match=message):
        encode(content_format, {P(path): value for path, value in values.items()}, P(base))


@pytest.mark.parametrize(
    "content_format",
    [ContentFormat.TEXT, ContentFormat.OPAQUE, ContentFormat.CBOR, ContentFormat.TLV],
)
def test_formats_without_time_refuse_time_stamps(content_format: ContentFormat) -> None:
    """Only the record formats carry times; the others say so instead of dropping them."""
    path = P("/5/0/0")
    with pytest.raises(UnsupportedFormatError, match="carries no time stamps"):
        encode_records(content_format, [Record(path, b"x", 5.0)], path)


def test_tlv_refuses_two_values_for_one_path() -> None:
    """A TLV tree has one node per path (a time series needs a record format)."""
    path = P("/3/0/9")
    with pytest.raises(UnsupportedFormatError, match="/3/0/9 has two values"):
        encode_records(ContentFormat.TLV, [Record(path, 1), Record(path, 2)], P("/3/0"))


@pytest.mark.parametrize(
    ("value_hex", "guess"),
    [
        ("", ""),
        ("48692E0A", "Hi.\n"),
        ("FF", -1),
        ("0080", 128),
        ("00000001", b"\x00\x00\x00\x01"),  # Not the smallest size: stays bytes.
        ("FF7F", -129),
        ("FFFE", b"\xff\xfe"),  # -2 fits one byte: not an encoder's integer.
        ("0102FF", b"\x01\x02\xff"),
        ("C3A9", "é"),
        ("00", 0),
    ],
)
def test_tlv_guess_for_unknown_resources(value_hex: str, guess: Value) -> None:
    """Untyped TLV values: printable text, else a minimal integer, else bytes."""
    value = bytes.fromhex(value_hex)
    payload = bytes([0xC0 | len(value), 1]) + value
    assert decode(ContentFormat.TLV, payload, P("/31024/0")) == {P("/31024/0/1"): guess}


def test_tlv_length_limit_on_encode() -> None:
    """A TLV value longer than a 24-bit length can say is refused."""
    path = P("/5/0/0")
    with pytest.raises(UnsupportedFormatError, match="TLV values are at most 16777215 bytes"):
        encode(ContentFormat.TLV, {path: bytes(2**24)}, path)
