"""The MQTT profile codecs (core/mqtt/profile.py): hand-written, so tested hardest."""

from __future__ import annotations

import json
import string
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
