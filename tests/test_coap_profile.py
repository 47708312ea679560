"""The CoAP profile (core/coap/profile.py): link format mapping and codecs, tested hardest."""

from __future__ import annotations

import contextlib
import json
import math
import string
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from custom_components.iot_bridge.core.coap.endpoint import (
    MIN_ACK_TIMEOUT,
    MIN_RETRANSMIT,
    retransmission_plan,
)
from custom_components.iot_bridge.core.coap.profile import (
    MAX_LINK_FORMAT_BYTES,
    MAX_PAYLOAD_BYTES,
    MAX_REASON_LENGTH,
    MAX_RESOURCES,
    MAX_TEXT_SHOWN,
    NO_VALUE,
    RESOURCE_TYPES,
    ContentFormat,
    ProfileError,
    Resource,
    command_reply,
    command_value,
    decode_value,
    encode_command,
    parse_description,
    parse_identity,
    refusal_reason,
)
from custom_components.iot_bridge.core.model import Capability, CapabilityKind
from custom_components.iot_bridge.core.values import InvalidValue, normalize

from .fuzz_settings import property_settings

# What Debian's libcoap example server (coap-server-notls) lists, byte for byte.
LIBCOAP_LINKS = (
    b'</>;title="General Info";ct=0,</time>;if="clock";rt="ticks";title="Internal Clock";'
    b'ct=0;obs,</async>;ct=0,</example_data>;title="Example Data";ct=0;obs'
)
FORMATS = st.sampled_from([ContentFormat.TEXT, ContentFormat.JSON, ContentFormat.CBOR])
SEGMENTS = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=12)


def _one(links: str) -> Resource:
    description = parse_description(links.encode())
    assert len(description.resources) == 1, description
    return next(iter(description.resources.values()))


def _resource(kind: CapabilityKind, content_format: int, rt: str | None = "x") -> Resource:
    capability = Capability(kind, "res", confirmable=True)
    return Resource(("res",), capability, content_format, True, rt)


# Link format -> capabilities ------------------------------------------------------------


@pytest.mark.parametrize(
    ("link", "kind", "device_class", "unit"),
    [
        ('</t>;rt="oic.r.temperature";if="core.s";ct=0;obs', "sensor", "temperature", "°C"),
        ('</t>;rt="oic.r.temperature";if="core.p";ct=0', "number", "temperature", "°C"),
        ('</t>;rt="oic.r.temperature";if="core.a"', "number", "temperature", "°C"),
        ('</h>;rt="oic.r.humidity"', "sensor", "humidity", "%"),
        ('</r>;rt="oic.r.switch.binary";if="core.a"', "switch", None, None),
        ('</r>;rt="oic.r.switch.binary";if="core.s"', "binary_sensor", None, None),
        ('</l>;rt="oic.r.lock.status";if="core.a";obs', "lock", None, None),
        ('</l>;rt="oic.r.lock.status";if="core.s"', "sensor", None, None),
        ('</d>;rt="oic.r.door";if="core.s";obs', "binary_sensor", "door", None),
        ('</m>;rt="oic.r.sensor.motion"', "binary_sensor", "motion", None),
        ('</b>;rt="iot-bridge.button";if="core.a"', "button", None, None),
        ('</x>;rt="urn:oma:lwm2m:ext:3303"', "sensor", "temperature", "°C"),
        ('</x>;rt="urn:oma:lwm2m:ext:3311";ct=50', "light", None, None),
        ('</x>;rt="urn:oma:lwm2m:ext:3308";if="core.p"', "number", None, None),
        ('</x>;rt="urn:oma:lwm2m:ext:3331"', "sensor", "energy", "Wh"),
        # A list of types: the first the profile knows decides.
        ('</x>;rt="vendor.thing oic.r.humidity"', "sensor", "humidity", "%"),
    ],
)
def test_known_resource_types(
    link: str, kind: str, device_class: str | None, unit: str | None
) -> None:
    """Established type names map to kinds; the interface decides settable or read-only."""
    resource = _one(link)
    capability = resource.capability
    assert capability.kind.value == kind
    assert capability.device_class == device_class
    assert capability.unit == unit
    assert resource.known
    assert capability.confirmable is bool(capability.actions)
    assert capability.category != "diagnostic" or kind == "sensor"


def test_read_only_button_is_skipped() -> None:
    """A button that cannot be pressed is not an entity."""
    description = parse_description(b'</b>;rt="iot-bridge.button";if="core.s"')
    assert not description.usable
    assert description.skipped == 1


def test_libcoap_server_resources_all_appear() -> None:
    """Any server is usable: unknown types are diagnostic sensors, on only if observable."""
    description = parse_description(LIBCOAP_LINKS)
    resources = description.resources
    assert list(resources) == ["root", "time", "async", "example_data"]
    for resource in resources.values():
        assert resource.capability.kind is CapabilityKind.SENSOR
        assert resource.capability.category == "diagnostic"
        assert not resource.known
    assert resources["time"].observable
    assert resources["time"].capability.enabled_by_default
    assert resources["time"].capability.name == "Internal Clock"
    assert not resources["async"].capability.enabled_by_default
    assert resources["root"].path == ()
    assert resources["root"].href == "/"


def test_links_without_a_value_are_skipped() -> None:
    """Discovery itself, directories, link lists, other hosts and queries are not entities."""
    links = (
        '</.well-known/core>;ct=40,</rd>;rt="core.rd",</ll>;if="core.ll",'
        "<coap://other/x>,<//other/y>,</q?x=1>,</f#frag>,</links>;ct=40,"
        '</oic/d>;rt="oic.wk.d";ct=50,</temp>;rt="oic.r.temperature";ep="node-7"'
    )
    description = parse_description(links.encode())
    assert list(description.resources) == ["temp"]
    assert description.info_paths == [("oic", "d")]
    assert description.endpoint_name == "node-7"
    assert description.skipped == 8


def test_keys_are_unique_and_stable() -> None:
    """Keys come from the path; characters outside the profile's set and clashes are fixed."""
    links = '</a/b>,</a_b>,</a%20b>,</ünï>,</a/b/>;rt="oic.r.humidity"'
    description = parse_description(links.encode())
    assert list(description.resources) == ["a_b", "a_b_2", "a_b_3", "n", "a_b_4"]
    assert description.resources["a_b_3"].path == ("a b",)
    assert description.resources["a_b_4"].path == ("a", "b")


def test_content_format_choice() -> None:
    """The first format IoT Bridge can write is used; none listed means text."""
    assert _one('</x>;ct="42 60 50"').content_format == ContentFormat.CBOR
    assert _one("</x>;ct=50;ct=0").content_format == ContentFormat.JSON
    assert _one("</x>").content_format == ContentFormat.TEXT
    assert _one("</x>;ct=42").content_format == ContentFormat.OCTET_STREAM


def test_titles_are_bounded_and_clean() -> None:
    """A title becomes the entity name, without control characters and at most 64 long."""
    resource = _one('</x>;title="' + "\x07Name " + "y" * 100 + '"')
    assert resource.capability.name == "Name " + "y" * 59


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\xfe",  # not UTF-8
        b"<unclosed",
        b"</a>;;;garbage\x00<",
        b"x" * (MAX_LINK_FORMAT_BYTES + 1),
    ],
    ids=["utf8", "unclosed", "garbage", "oversized"],
)
def test_malformed_link_format(payload: bytes) -> None:
    """Anything that is not link format is a ProfileError with a reason."""
    with pytest.raises(ProfileError):
        parse_description(payload)


def test_resource_count_is_bounded() -> None:
    """A device listing thousands of resources gets the first MAX_RESOURCES."""
    links = ",".join(f"</r{i}>" for i in range(MAX_RESOURCES + 10))
    description = parse_description(links.encode())
    assert len(description.resources) == MAX_RESOURCES
    assert description.skipped == 10


@property_settings(150)
@given(st.binary(max_size=400))
def test_any_bytes_parse_or_raise_profile_error(payload: bytes) -> None:
    """Hostile descriptions never raise anything but ProfileError."""
    try:
        description = parse_description(payload)
    except ProfileError:
        return
    assert len(description.resources) <= MAX_RESOURCES


@property_settings(80)
@given(
    st.lists(
        st.tuples(
            st.lists(SEGMENTS, min_size=1, max_size=3),
            st.sampled_from([None, *sorted(RESOURCE_TYPES)]),
            st.sampled_from([None, "core.s", "core.a", "core.p"]),
            st.booleans(),
            st.sampled_from([None, 0, 50, 60]),
        ),
        max_size=12,
        unique_by=lambda link: "/".join(link[0]),
    )
)
def test_link_format_round_trip(links: list[tuple[Any, ...]]) -> None:
    """Links written in link format come back with their path, type, interface and obs."""
    parts = []
    for segments, rt, interface, observable, ct in links:
        attributes = [f'rt="{rt}"' if rt else "", f'if="{interface}"' if interface else ""]
        attributes += ["obs" if observable else "", f"ct={ct}" if ct is not None else ""]
        parts.append(";".join(["<" + "/" + "/".join(segments) + ">", *filter(None, attributes)]))
    description = parse_description(",".join(parts).encode())
    by_path = {resource.path: resource for resource in description.resources.values()}
    for segments, rt, interface, observable, ct in links:
        resource = by_path.get(tuple(segments))
        if resource is None:  # only a button declared read-only has no entity
            assert rt == "iot-bridge.button"
            assert interface == "core.s"
            continue
        assert resource.observable is observable
        assert resource.resource_type == rt
        assert resource.interfaces == ((interface,) if interface else ())
        assert resource.content_format == (ct or 0)
        assert resource.capability.category == "diagnostic" or rt is not None
    assert len(set(description.resources)) == len(description.resources)


# Identity ---------------------------------------------------------------------------------


def test_identity_from_ocf_resources() -> None:
    """`di` is the id, `n` the name; platform properties fill the device info."""
    device = json.dumps({"di": "3f0c-42", "n": "Locker", "mnmn": "Acme"}).encode()
    platform = cbor2.dumps({"mnmo": "PL-3", "mnfv": "1.2", "mnhw": "rev B", "mnmn": "Other"})
    identity = parse_identity([(device, 50), (platform, 60)], "ep-name")
    assert identity.device_id == "3f0c-42"
    assert identity.name == "Locker"
    assert identity.info.manufacturer == "Acme"  # the first resource that says wins
    assert (identity.info.model, identity.info.sw_version, identity.info.hw_version) == (
        "PL-3",
        "1.2",
        "rev B",
    )


def test_identity_falls_back_to_endpoint_name() -> None:
    """An unusable `di` (or none) leaves the endpoint name; malformed resources are skipped."""
    bad_id = json.dumps({"di": "has spaces and / slashes", "n": 5}).encode()
    identity = parse_identity([(b"{not json", 50), (bad_id, 50), (b"plain", 0)], "node-1")
    assert identity.device_id == "node-1"
    assert identity.name is None
    assert parse_identity([], None).device_id is None


# Values -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("link", "payload", "content_format", "expected"),
    [
        ('</x>;rt="oic.r.temperature"', b"21.5", 0, 21.5),
        ('</x>;rt="oic.r.temperature"', b'{"temperature": 19}', 50, 19),
        ('</x>;rt="oic.r.temperature"', cbor2.dumps({"value": 3.5}), 60, 3.5),
        ('</x>;rt="oic.r.door"', b'{"openState": "Open"}', 50, True),
        ('</x>;rt="oic.r.door"', b"0", 0, False),
        ('</x>;rt="oic.r.lock.status"', b'{"lockState": "Locked"}', 50, "locked"),
        ('</x>;rt="oic.r.lock.status"', b" open\n", 0, "open"),
        ('</x>;rt="oic.r.switch.binary"', cbor2.dumps(True), 60, True),
        (
            '</x>;rt="urn:oma:lwm2m:ext:3311"',
            b'{"on": true, "brightness": 9}',
            50,
            {"on": True, "brightness": 9},
        ),
    ],
)
def test_decode_values(link: str, payload: bytes, content_format: int, expected: Any) -> None:
    """Text, JSON and CBOR representations, bare or as an OCF object, read the same."""
    resource = _one(link)
    value = decode_value(resource, payload, content_format)
    assert normalize(resource.capability, value) == expected


def test_decode_uses_link_format_when_response_has_none() -> None:
    """Without a Content-Format option, the link's ct says how to read it."""
    resource = _resource(CapabilityKind.SENSOR, ContentFormat.CBOR)
    assert decode_value(resource, cbor2.dumps(7), None) == 7
    assert decode_value(resource, b"", None) is NO_VALUE


@pytest.mark.parametrize(
    ("payload", "content_format"),
    [
        (b"{bad", 50),
        (b"\xff", 60),
        (b"\xff\xfe", 0),
        (b"[1, 2]", 50),
        (b'{"a": 1, "b": 2}', 50),
        (b"x" * (MAX_PAYLOAD_BYTES + 1), 0),
        (b"\x9f" * 5000, 60),  # deeply nested indefinite arrays
    ],
    ids=["json", "cbor", "text", "array", "object", "oversized", "nested"],
)
def test_malformed_payloads(payload: bytes, content_format: int) -> None:
    """Payloads that cannot be read are a ProfileError, never another exception."""
    with pytest.raises(ProfileError):
        decode_value(_resource(CapabilityKind.SENSOR, 0), payload, content_format)


def test_unknown_resources_show_what_they_hold() -> None:
    """Long text is cut (not refused), objects are shown as compact JSON."""
    resource = _resource(CapabilityKind.SENSOR, 0, rt=None)
    shown = decode_value(resource, b"a" * 1000, 0)
    assert len(shown) == MAX_TEXT_SHOWN
    assert shown.endswith("…")
    assert decode_value(resource, b'{"a": [1, 2]}', 50) == '{"a":[1,2]}'
    with pytest.raises(ProfileError):
        decode_value(resource, cbor2.dumps(b"\x00\x01"), 60)


def test_cbor_that_json_cannot_show_is_refused() -> None:
    """CBOR maps with binary keys (found by scripts/fuzz) and values that contain themselves
    are refused with a ProfileError, not a TypeError or ValueError from the JSON encoder."""
    resource = _resource(CapabilityKind.SENSOR, 0, rt=None)
    with pytest.raises(ProfileError, match="JSON cannot show"):
        decode_value(resource, b"\xa2\x00\x00@\x00", 60)  # {0: 0, b"": 0}
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(ProfileError, match="JSON cannot show"):
        decode_value(resource, cbor2.dumps(cycle, value_sharing=True), 60)


@property_settings(200)
@given(
    payload=st.binary(max_size=300), content_format=st.sampled_from([None, 0, 42, 50, 60, 11542])
)
def test_any_payload_decodes_or_raises_profile_error(
    payload: bytes, content_format: int | None
) -> None:
    """Hostile payloads in any format never raise anything but ProfileError."""
    for rt in ("oic.r.temperature", None):
        resource = _resource(CapabilityKind.SENSOR, 0, rt=rt)
        with contextlib.suppress(ProfileError):
            decode_value(resource, payload, content_format)


COMMANDS = st.one_of(
    st.tuples(
        st.just(CapabilityKind.SWITCH), st.sampled_from(["turn_on", "turn_off"]), st.just({})
    ),
    st.tuples(
        st.just(CapabilityKind.LOCK), st.sampled_from(["lock", "unlock", "open"]), st.just({})
    ),
    st.tuples(
        st.just(CapabilityKind.NUMBER),
        st.just("set"),
        st.fixed_dictionaries(
            {
                "value": st.one_of(
                    st.integers(-(10**9), 10**9),
                    st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False),
                )
            }
        ),
    ),
    st.tuples(
        st.just(CapabilityKind.LIGHT),
        st.sampled_from(["turn_on", "turn_off"]),
        st.one_of(st.just({}), st.fixed_dictionaries({"brightness": st.integers(0, 255)})),
    ),
)


@property_settings(200)
@given(command=COMMANDS, content_format=FORMATS)
def test_command_round_trip(
    command: tuple[CapabilityKind, str, dict[str, Any]], content_format: ContentFormat
) -> None:
    """What a command PUTs reads back (as the device's answer would) as the wished value."""
    kind, action, params = command
    resource = _resource(kind, content_format)
    if (
        kind is CapabilityKind.LIGHT
        and content_format == 0
        and action == "turn_on"
        and params.get("brightness") is not None
    ):
        # Only a brightness in text is impossible, and said so before anything is sent.
        with pytest.raises(ProfileError, match="brightness"):
            encode_command(resource, action, params)
        return
    request = encode_command(resource, action, params)
    assert request.method == "PUT"
    assert request.content_format == content_format
    read = normalize(resource.capability, decode_value(resource, request.payload, content_format))
    wished = normalize(resource.capability, command_value(kind, action, params))
    if isinstance(wished, float):
        assert math.isclose(read, wished)
    elif kind is CapabilityKind.LIGHT and content_format == ContentFormat.TEXT:
        assert read["on"] == wished["on"]
    else:
        assert read == wished


def test_button_is_a_post_without_payload() -> None:
    """Pressing is POST; a button has no representation."""
    request = encode_command(_resource(CapabilityKind.BUTTON, 0), "press", {})
    assert (request.method, request.payload, request.content_format) == ("POST", b"", None)
    with pytest.raises(ProfileError):
        encode_command(_resource(CapabilityKind.SWITCH, ContentFormat.OCTET_STREAM), "turn_on", {})
    with pytest.raises(ProfileError):
        command_value(CapabilityKind.SENSOR, "set", {})


# Answers ------------------------------------------------------------------------------------


def test_success_with_new_state_confirms() -> None:
    """2.04 with the new representation confirms and carries the new state."""
    resource = _resource(CapabilityKind.LOCK, 0)
    reply = command_reply(resource, "id1", 68, b"open", 0)
    assert (reply.ok, reply.state, reply.reason) == (True, {"res": "open"}, None)
    # Without a (readable) payload the command is still confirmed, without a state.
    assert command_reply(resource, "id1", 68, b"", None).state is None
    assert command_reply(resource, "id1", 65, b"\xff", 50).state is None


def test_errors_reject_with_code_and_diagnostic_payload() -> None:
    """4.xx/5.xx: the device's diagnostic payload and the code are the reason."""
    resource = _resource(CapabilityKind.LOCK, 0)
    reply = command_reply(resource, "id1", 131, b"door blocked", 0)
    assert (reply.ok, reply.reason) == (False, "door blocked (4.03 Forbidden)")
    assert command_reply(resource, "id1", 160, b"", None).reason == "5.00 Internal Server Error"
    assert refusal_reason(140, b"expired") == "expired (4.12 Precondition Failed)"
    assert refusal_reason(159, b"") == "4.31"


@property_settings(150)
@given(code=st.integers(128, 191), payload=st.binary(max_size=2000))
def test_refusal_reason_is_bounded_text(code: int, payload: bytes) -> None:
    """Any diagnostic payload becomes one bounded line of text."""
    reason = refusal_reason(code, payload)
    assert len(reason) <= MAX_REASON_LENGTH + 40
    assert "\n" not in reason
    assert "\x00" not in reason


def test_invalid_value_in_answer_is_left_to_the_store() -> None:
    """The profile decodes; core/values.py decides (a lock cannot be 'maybe')."""
    resource = _resource(CapabilityKind.LOCK, 0)
    reply = command_reply(resource, "id1", 68, b"maybe", 0)
    assert reply.state == {"res": "maybe"}
    with pytest.raises(InvalidValue):
        normalize(resource.capability, reply.state["res"])


# Retransmission timing -----------------------------------------------------------------------


@property_settings(200)
@given(st.floats(0, 600, allow_nan=False))
def test_retransmissions_end_within_the_budget(budget: float) -> None:
    """No copy of a command leaves after its budget (the deadline, less transit)."""
    plan = retransmission_plan(budget)
    assert plan.last_send <= budget + 1e-9
    assert plan.ack_timeout >= MIN_ACK_TIMEOUT
    if budget >= MIN_ACK_TIMEOUT * 1.5 * (2**MIN_RETRANSMIT - 1):
        assert plan.max_retransmit >= MIN_RETRANSMIT


def test_rfc_timing_where_it_fits() -> None:
    """A generous deadline keeps RFC 7252's 2 s ACK timeout."""
    assert (retransmission_plan(45).ack_timeout, retransmission_plan(45).max_retransmit) == (2.0, 4)
    assert retransmission_plan(9).max_retransmit == 2
    assert retransmission_plan(2.7).ack_timeout == pytest.approx(0.6)
