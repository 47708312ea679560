"""The MQTT profile codecs (core/mqtt/profile.py): hand-written, so tested hardest."""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from custom_components.iot_bridge.core.model import (
    Capability,
    CapabilityKind,
    Command,
    validate_params,
)
from custom_components.iot_bridge.core.mqtt.profile import (
    MAX_PAYLOAD_BYTES,
    ProfileError,
    Topics,
    encode_command,
    parse_availability,
    parse_device_config,
    parse_reply,
    parse_state,
)

IDS = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=64)
KINDS = st.sampled_from([kind.value for kind in CapabilityKind])
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)


def _capability(kind: str, key: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "key": key, **extra}


def _config(device_id: str, capabilities: list[dict[str, Any]], **extra: Any) -> bytes:
    return json.dumps(
        {"id": device_id, "name": "Device", "capabilities": capabilities, **extra}
    ).encode()


@settings(max_examples=60, deadline=None)
@given(
    device_id=IDS,
    capabilities=st.lists(
        st.tuples(KINDS, IDS, st.booleans(), st.none() | st.text(min_size=1, max_size=10)),
        max_size=8,
        unique_by=lambda c: c[1],
    ),
)
def test_device_config_round_trip(
    device_id: str, capabilities: list[tuple[str, str, bool, str | None]]
) -> None:
    """Every declared capability comes back with its kind, key, unit and confirmation."""
    raw = [
        _capability(kind, key, confirmable=confirmable, **({"unit": unit} if unit else {}))
        for kind, key, confirmable, unit in capabilities
    ]
    device = parse_device_config(device_id, _config(device_id, raw, manufacturer="Acme", model=7))
    assert device is not None
    assert device.device_id == device_id
    assert device.info.manufacturer == "Acme"
    assert device.info.model == "7"
    assert list(device.capabilities) == [key for _, key, _, _ in capabilities]
    for kind, key, confirmable, unit in capabilities:
        capability = device.capabilities[key]
        assert capability.kind.value == kind
        assert capability.unit == unit
        # Locks are always confirmed, whatever the device says.
        assert capability.confirmable == (confirmable or kind == "lock")


@settings(max_examples=60, deadline=None)
@given(
    command_id=IDS,
    capability=IDS,
    action=st.sampled_from(["open", "lock", "set", "turn_on"]),
    params=st.dictionaries(st.text(max_size=8), JSON_SCALARS, max_size=4),
    deadline=st.floats(1e9, 4e9),
)
def test_command_payload_round_trip(
    command_id: str, capability: str, action: str, params: dict[str, Any], deadline: float
) -> None:
    """What the hub sends decodes, on the device side, to exactly the command."""
    command = Command(command_id, "dev", capability, action, params, deadline)
    decoded = json.loads(encode_command(command, "p/_bridge/c/reply"))
    assert decoded == {
        "id": command_id,
        "capability": capability,
        "action": action,
        "params": params,
        "deadline": round(deadline, 3),
        "reply_to": "p/_bridge/c/reply",
    }


@settings(max_examples=60, deadline=None)
@given(
    command_id=IDS,
    ok=st.booleans(),
    reason=st.none() | st.text(max_size=30),
    state=st.none() | st.dictionaries(IDS, JSON_SCALARS, max_size=4),
    v5=st.booleans(),
)
def test_reply_round_trip(
    command_id: str, ok: bool, reason: str | None, state: dict[str, Any] | None, v5: bool
) -> None:
    """An answer decodes to the same id, status, reason and state (v5 and v3.1.1)."""
    body: dict[str, Any] = {"status": "ok" if ok else "error"}
    if not v5:
        body["id"] = command_id
    if reason is not None:
        body["reason"] = reason
    if state is not None:
        body["state"] = state
    reply = parse_reply(json.dumps(body).encode(), command_id.encode() if v5 else None)
    assert (reply.command_id, reply.ok, reply.reason, reply.state) == (
        command_id,
        ok,
        reason,
        state,
    )


def test_correlation_data_wins_over_payload_id() -> None:
    """MQTT 5 correlation data identifies the command even if the payload id differs."""
    reply = parse_reply(b'{"id": "other", "status": "ok"}', b"real")
    assert reply.command_id == "real"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"id": "x", "name": "D", "capabilities": []}', "does not match"),
        (b'{"id": "dev", "capabilities": []}', "'name' is required"),
        (b'{"id": "dev", "name": "D", "capabilities": {}}', "'capabilities' must be a list"),
        (b'{"id": "dev", "name": "D", "capabilities": [1]}', "must be a JSON object"),
        (
            b'{"id": "dev", "name": "D", "capabilities": [{"kind": "lock", "key": "a b"}]}',
            "invalid characters",
        ),
        (
            b'{"id": "dev", "name": "D", "capabilities": [{"kind": "oven", "key": "k"}]}',
            "unknown kind 'oven'",
        ),
        (
            b'{"id": "dev", "name": "D", "capabilities": [{"kind": "lock", "key": "k"}, {"kind": "lock", "key": "k"}]}',
            "appears twice",
        ),
        (
            b'{"id": "dev", "name": "D", "capabilities": [{"kind": "number", "key": "k", "min": "0"}]}',
            "'min' must be a number",
        ),
        (
            b'{"id": "dev", "name": "D", "capabilities": [{"kind": "sensor", "key": "k", "unit": []}]}',
            "'unit' must be a string",
        ),
        (
            b'{"id": "dev", "name": "D", "capabilities": [{"kind": "sensor", "key": "k", "options": [1]}]}',
            "list of strings",
        ),
        (
            b'{"id": "dev", "name": "D", "capabilities": [], "model": {"x": 1}}',
            "'model' must be a string",
        ),
    ],
)
def test_bad_device_configs_say_why(payload: bytes, message: str) -> None:
    """Each malformed description is refused with a reason a maker can act on."""
    with pytest.raises(ProfileError, match=message):
        parse_device_config("dev", payload)


def test_empty_config_means_removal_and_size_limit() -> None:
    """An empty payload removes the device; an oversized one is refused before parsing."""
    assert parse_device_config("dev", b"") is None
    with pytest.raises(ProfileError, match=f"limit is {MAX_PAYLOAD_BYTES}"):
        parse_state(b" " * (MAX_PAYLOAD_BYTES + 1))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b'{"status": "ok"}', "no command id"),
        (b'{"id": "a", "status": "done"}', "status must be"),
        (b'{"id": "a", "status": "ok", "state": 3}', "'state' must be a JSON object"),
    ],
)
def test_bad_replies_say_why(payload: bytes, message: str) -> None:
    """Answers without an id, with an unknown status or a bad state are refused."""
    with pytest.raises(ProfileError, match=message):
        parse_reply(payload, None)


def test_availability() -> None:
    """online/offline (any case, blanks) are understood; anything else is refused."""
    assert parse_availability(b" Online\n") is True
    assert parse_availability(b"offline") is False
    with pytest.raises(ProfileError, match="'online' or 'offline'"):
        parse_availability(b"sleeping")


def test_topics() -> None:
    """Device ids are read only from well-formed device topics under the prefix."""
    topics = Topics("home/iot", "client-1")
    assert topics.reply == "home/iot/_bridge/client-1/reply"
    assert topics.device_filter("state") == "home/iot/+/state"
    assert topics.device_topic("d1", "command") == "home/iot/d1/command"
    assert topics.device_id_of("home/iot/d1/state") == "d1"
    assert topics.device_id_of("other/d1/state") is None
    assert topics.device_id_of("home/iot/bad id/state") is None
    assert topics.device_id_of("home/iot/") is None
    assert topics.device_id_of("home/iot/d1\n/state") is None


@pytest.mark.parametrize(
    ("capability", "action", "params", "error"),
    [
        (
            Capability(CapabilityKind.NUMBER, "sp", minimum=5, maximum=30),
            "set",
            {"value": 21.5},
            None,
        ),
        (
            Capability(CapabilityKind.NUMBER, "sp", minimum=5, maximum=30),
            "set",
            {"value": 31},
            "outside 5..30",
        ),
        (Capability(CapabilityKind.NUMBER, "sp"), "set", {}, "numeric 'value'"),
        (Capability(CapabilityKind.NUMBER, "sp"), "set", {"value": True}, "numeric 'value'"),
        (Capability(CapabilityKind.LIGHT, "l"), "turn_on", {"brightness": 128}, None),
        (Capability(CapabilityKind.LIGHT, "l"), "turn_on", {"brightness": 300}, "0 to 255"),
        (
            Capability(CapabilityKind.LIGHT, "l"),
            "turn_off",
            {"brightness": 1},
            "no parameter brightness",
        ),
        (Capability(CapabilityKind.LOCK, "k"), "open", {"code": "1234"}, None),
        (Capability(CapabilityKind.LOCK, "k"), "fly", {}, "does not accept 'fly'"),
        (Capability(CapabilityKind.SWITCH, "s"), "turn_on", {"x": 1}, "no parameter x"),
    ],
)
def test_validate_params(
    capability: Capability, action: str, params: dict[str, Any], error: str | None
) -> None:
    """Parameters are checked against the capability before anything is sent."""
    if error is None:
        validate_params(capability, action, params)
    else:
        with pytest.raises(ValueError, match=error):
            validate_params(capability, action, params)


def _one_capability(**fields: Any) -> bytes:
    return _config("dev", [{"kind": "number", "key": "k", **fields}])


HOSTILE_CONFIGS: list[tuple[bytes, str]] = [
    # Fields of the wrong JSON type: refused with a reason, not a TypeError.
    (_config("dev", [{"kind": ["sensor"], "key": "k"}]), "unknown kind a JSON array"),
    (_config("dev", [{"kind": {"a": 1}, "key": "k"}]), "unknown kind a JSON object"),
    (_config("dev", [{"kind": "sensor", "key": ["k"]}]), "key a JSON array is missing"),
    (_config("dev", [], id=["dev"]), "'id' a JSON array does not match"),
    (_config("dev", [], name=["D"]), "'name' is required"),
    (_config("dev", [{"kind": "sensor", "key": "k", "name": {}}]), "'name' must be a string"),
    (_one_capability(options="eco"), "list of strings"),
    (_one_capability(min=[0]), "'min' must be a number"),
    # Bounds that are not finite, absurd or contradictory.
    (
        b'{"id":"dev","name":"D","capabilities":[{"kind":"number","key":"k","min":NaN}]}',
        "'min' must be a finite number",
    ),
    (
        b'{"id":"dev","name":"D","capabilities":[{"kind":"number","key":"k","max":Infinity}]}',
        "'max' must be a finite number",
    ),
    (
        b'{"id":"dev","name":"D","capabilities":[{"kind":"number","key":"k","step":-Infinity}]}',
        "'step' must be a finite number",
    ),
    (_one_capability(max=1e300), "'max' must be a finite number"),
    (_one_capability(max=10**400 // 10**100), "'max' must be a finite number"),
    (_one_capability(min=5, max=1), "'min' 5 is above 'max' 1"),
    (_one_capability(step=0), "'step' must be above 0"),
    (_one_capability(step=-0.5), "'step' must be above 0"),
    # confirmable is a JSON boolean, not anything truthy.
    (_one_capability(confirmable="false"), "'confirmable' must be true or false"),
    (_one_capability(confirmable=1), "'confirmable' must be true or false"),
    (_one_capability(confirmable=None), "'confirmable' must be true or false"),
    # Lengths and counts.
    (_config("dev", [], name="D" * 129), "'name' is 129 characters long, limit is 128"),
    (_one_capability(name="n" * 129), "'name' is 129 characters long"),
    (_one_capability(unit="u" * 65), "'unit' is 65 characters long, limit is 64"),
    (_one_capability(device_class="c" * 65), "'device_class' is 65 characters"),
    (_config("dev", [], model="m" * 129), "'model' is 129 characters long"),
    (_one_capability(options=[]), "1 to 64 strings"),
    (_one_capability(options=[str(i) for i in range(65)]), "1 to 64 strings"),
    (_one_capability(options=["x" * 256]), "1 to 255 characters"),
    (_one_capability(options=[""]), "1 to 255 characters"),
    (
        _config("dev", [{"kind": "sensor", "key": f"k{i}"} for i in range(129)]),
        "129 capabilities, limit is 128",
    ),
]


@pytest.mark.parametrize(
    ("payload", "message"), HOSTILE_CONFIGS, ids=[message for _, message in HOSTILE_CONFIGS]
)
def test_hostile_device_configs_are_profile_errors(payload: bytes, message: str) -> None:
    """Wrong types, non-finite or absurd bounds, non-boolean flags and oversized text or
    counts are refused with a ProfileError saying why, never another exception."""
    with pytest.raises(ProfileError, match=message):
        parse_device_config("dev", payload)


def test_limits_are_inclusive() -> None:
    """Exactly at every limit a description is still accepted."""
    capabilities = [{"kind": "sensor", "key": f"k{i}"} for i in range(127)]
    capabilities.append(
        {
            "kind": "sensor",
            "key": "last",
            "name": "n" * 128,
            "unit": "u" * 64,
            "options": ["o" * 255] + [str(i) for i in range(63)],
        }
    )
    capabilities.append({"kind": "number", "key": "n", "min": -1e15, "max": 1e15, "step": 1e-9})
    device = parse_device_config("dev", _config("dev", capabilities[1:], name="D" * 128))
    assert device is not None
    assert len(device.capabilities) == 128
    assert device.name == "D" * 128
    last = device.capabilities["last"]
    assert last.options is not None
    assert len(last.options) == 64
    number = device.capabilities["n"]
    assert (number.minimum, number.maximum, number.step) == (-1e15, 1e15, 1e-9)


@pytest.mark.parametrize("decoder", ["config", "state", "reply"])
def test_deep_nesting_is_a_profile_error(decoder: str) -> None:
    """Nesting as deep as 16 KiB allows (8000 levels: enough to exhaust the stack of whatever
    walks the value later, e.g. repr in a log line), or just past the profile's limit, is
    refused as too deep."""
    for depth in (8000, 16):
        inner = "[" * depth + "]" * depth
        payload = f'{{"id": "dev", "name": "D", "capabilities": [], "x": {inner}}}'.encode()
        decode: Callable[[bytes], object] = {
            "config": lambda p: parse_device_config("dev", p),
            "state": parse_state,
            "reply": lambda p: parse_reply(p, b"id"),
        }[decoder]
        with pytest.raises(ProfileError, match="nested deeper than 16 levels") as caught:
            decode(payload)
        assert caught.value.code == "too_deep"
    # 15 levels inside the document's own object (16 in all): still fine.
    assert parse_state(b'{"x": ' + b"[" * 15 + b"]" * 15 + b"}")["x"][0][0][0][0] == [
        [[[[[[[[[[]]]]]]]]]]
    ]


def test_confirmable_accepts_json_booleans() -> None:
    """true and false (and leaving it out) are what 'confirmable' takes."""
    for value, expected in ((True, True), (False, False)):
        device = parse_device_config("dev", _one_capability(confirmable=value))
        assert device is not None
        assert device.capabilities["k"].confirmable is expected
    device = parse_device_config("dev", _one_capability())
    assert device is not None
    assert device.capabilities["k"].confirmable is False


def test_hostile_replies_and_availability() -> None:
    """Long reasons are cut, not refused; wrong types and oversized ids are refused."""
    reply = parse_reply(b'{"id": "a", "status": "error", "reason": "' + b"r" * 5000 + b'"}', None)
    assert reply.reason == "r" * 255
    with pytest.raises(ProfileError, match="'reason' must be a string"):
        parse_reply(b'{"id": "a", "status": "error", "reason": {"x": 1}}', None)
    with pytest.raises(ProfileError, match="status must be 'ok' or 'error', got a JSON array"):
        parse_reply(b'{"id": "a", "status": ["ok"]}', None)
    with pytest.raises(ProfileError, match="limit is 64"):
        parse_reply(b'{"status": "ok"}', b"i" * 65)
    with pytest.raises(ProfileError, match="'online' or 'offline'"):
        parse_availability(b"online" + b" " * 100)
