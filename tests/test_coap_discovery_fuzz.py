"""Hostile input on CoAP discovery's way in: device information resources and scan answers.

Both run on whatever a network hands us, so neither may raise: a bad information resource is
skipped, a bad datagram is dropped and counted. IOT_BRIDGE_FUZZ_EXAMPLES scales the runs.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import cbor2
from aiocoap import ACK, CONTENT, GET, Message
from hypothesis import given
from hypothesis import strategies as st

from custom_components.iot_bridge.core.coap.profile import (
    MAX_TITLE_LENGTH,
    ContentFormat,
    parse_identity,
)
from custom_components.iot_bridge.core.coap.scan import MAX_ANSWERS, _Collector

from .fuzz_settings import property_settings

FUZZ = property_settings(300)
TOKEN = b"\x01\x02\x03\x04"

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
# Information resources as OCF devices write them, with any key and value: the keys that
# matter (di, n, dmn, dmno, ...) often enough to reach the merging code.
INFO_DICTS = st.dictionaries(
    st.sampled_from(["di", "n", "dmn", "dmno", "mnmo", "sv", "mnfv", "x"]) | st.text(max_size=8),
    JSON_VALUES,
    max_size=8,
)


@st.composite
def info_payloads(draw: st.DrawFn) -> tuple[bytes, int | None]:
    """One information resource: valid JSON or CBOR of any shape, or any bytes."""
    shape = draw(st.sampled_from(["json", "cbor", "bytes"]))
    if shape == "bytes":
        return draw(st.binary(max_size=300)), draw(
            st.sampled_from([None, ContentFormat.JSON, ContentFormat.CBOR, 0, 42])
        )
    value = draw(INFO_DICTS | JSON_VALUES)
    if shape == "json":
        return json.dumps(value).encode(), ContentFormat.JSON
    return cbor2.dumps(value), ContentFormat.CBOR


@FUZZ
@given(st.lists(info_payloads(), max_size=3), st.none() | st.text(max_size=70))
def test_identity_from_any_information(
    payloads: list[tuple[bytes, int | None]], endpoint: str | None
) -> None:
    """Any information resources give an identity with bounded, printable fields."""
    identity = parse_identity(payloads, endpoint)
    assert (
        identity.device_id is None
        or identity.device_id == endpoint
        or (len(identity.device_id) <= 64 and identity.device_id.isprintable())
    )
    for text in (identity.name, *dataclasses.astuple(identity.info)):
        if isinstance(text, str):
            assert 0 < len(text) <= MAX_TITLE_LENGTH
            assert not any(ord(char) < 0x20 or char == "\x7f" for char in text)


def _answer(token: bytes, code: Any, payload: bytes) -> bytes:
    message = Message(code=code, payload=payload)
    message.mtype, message.mid, message.token = ACK, 7, token
    return bytes(message.encode())


@st.composite
def datagrams(draw: st.DrawFn) -> bytes:
    """Raw noise, or a well-formed CoAP message with our token or another, any code."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=200))
    token = draw(st.sampled_from([TOKEN, b"", b"\xff" * 8]))
    code = draw(st.sampled_from([CONTENT, GET]))
    return _answer(token, code, draw(st.binary(max_size=300)))


@FUZZ
@given(st.lists(st.tuples(datagrams(), st.integers(1, 65535)), max_size=20))
def test_scan_collector_drops_what_is_not_an_answer(
    received: list[tuple[bytes, int]],
) -> None:
    """Every datagram is kept as an answer or dropped and counted; none raises."""
    answers: dict[tuple[str, int], Any] = {}
    collector = _Collector(TOKEN, answers)
    for data, port in received:
        collector.datagram_received(data, ("127.0.0.1", port))
    assert len(answers) + collector.dropped <= len(received)
    assert len(answers) <= MAX_ANSWERS
    for (host, port), answer in answers.items():
        assert (answer.host, answer.port) == (host, port)


def test_scan_collector_keeps_one_answer_per_address() -> None:
    """An answer with our token is kept once per address; a foreign token is dropped."""
    answers: dict[tuple[str, int], Any] = {}
    collector = _Collector(TOKEN, answers)
    links = b'</lock>;rt="oic.r.lock"'
    collector.datagram_received(_answer(TOKEN, CONTENT, links), ("127.0.0.1", 5683))
    collector.datagram_received(_answer(TOKEN, CONTENT, b"</x>"), ("127.0.0.1", 5683))
    collector.datagram_received(_answer(b"\x09", CONTENT, links), ("127.0.0.1", 5684))
    collector.datagram_received(b"\x00garbage", ("127.0.0.1", 5685))
    # A Uri-Path option (11) of one byte that is not UTF-8: aiocoap raises while decoding.
    collector.datagram_received(b"\x50\x00\x00\x00\xb1\x80", ("127.0.0.1", 5686))
    assert list(answers) == [("127.0.0.1", 5683)]
    assert answers["127.0.0.1", 5683].payload == links
    assert collector.dropped == 3
