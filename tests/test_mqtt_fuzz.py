"""Fuzzing the MQTT inbound decoders: device input never raises anything but ProfileError.

Every decoder (discovery config, state, availability, answers) gets arbitrary bytes,
arbitrary JSON values, and documents shaped like the profile with wrong types in every
field, NaN and infinities, huge numbers, huge strings and deep nesting. What decodes must
satisfy the profile's invariants (docs/protocols/mqtt.md, "Limits"); state that decodes then
goes through the value checks every protocol shares, which may only refuse it with
InvalidValue. IOT_BRIDGE_FUZZ_EXAMPLES raises the example counts for a long run
(scripts/fuzz).
"""

from __future__ import annotations

import json
import math
import string
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from custom_components.iot_bridge.core.devices import DeviceStore
from custom_components.iot_bridge.core.model import (
    Capability,
    CapabilityKind,
    CommandReply,
    Device,
)
from custom_components.iot_bridge.core.mqtt.profile import (
    MAX_CAPABILITIES,
    MAX_COMMAND_ID_LENGTH,
    MAX_FIELD_LENGTH,
    MAX_NAME_LENGTH,
    MAX_NESTING,
    MAX_OPTION_LENGTH,
    MAX_OPTIONS,
    MAX_REASON_LENGTH,
    ProfileError,
    parse_availability,
    parse_device_config,
    parse_reply,
    parse_state,
)
from custom_components.iot_bridge.core.values import (
    LOCK_STATES,
    MAX_MAGNITUDE,
    MAX_TEXT_LENGTH,
)

from .fuzz_settings import property_settings

FUZZ = property_settings(300)
DEVICE_ID = "fuzz1"
IDS = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=64)
KINDS = [kind.value for kind in CapabilityKind]

# Numbers a device should not send: non-finite, beyond any sane reading, beyond a float.
ODD_NUMBERS = st.one_of(
    st.floats(),  # NaN and ±Infinity included (Python's json writes and reads them)
    st.integers(),
    # Powers of ten past the magnitude limit, past a float's range, past both signs.
    st.builds(
        lambda e, sign: sign * 10**e, st.sampled_from([15, 16, 308, 400]), st.sampled_from([1, -1])
    ),
    st.sampled_from([1e15 + 1, 1e308, 5e-324, -0.0]),
)
# Text of any size: the drawn part is short (fast to generate), the repeat makes it huge.
HUGE_TEXT = st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=4), st.integers(0, 6000))
# Text around the profile's length limits (64, 128, 255).
LONG_TEXT = st.builds(lambda c, n: c * n, st.characters(), st.integers(0, 300))
# Huge text is one choice in eight: often enough to hit every limit, rarely enough that
# most documents still fit in 16 KiB.
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    ODD_NUMBERS,
    ODD_NUMBERS,
    st.text(max_size=20),
    st.text(max_size=20),
    st.text(max_size=20),
    HUGE_TEXT,
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)


# Wrong values for a field: any JSON but huge text (which alone would make most documents
# too large to reach the field checks; the field strategies draw long text themselves).
WRONG_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), ODD_NUMBERS, st.text(max_size=20)),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
# In a hostile document one choice in six is the odd one (sampled_from keeps duplicates,
# one_of would merge them); half the documents are not hostile, so that some get through
# to the checks of what a decoded document holds.
_ODD_ONE_OUT = st.shared(st.booleans(), key="hostile").flatmap(
    lambda hostile: st.sampled_from([False, False, False, True, False, False])
    if hostile
    else st.just(False)
)
# Bounds of any size, sane ones included.
BOUNDS = st.one_of(st.integers(-100, 100), st.floats(-1e15, 1e15), ODD_NUMBERS)


def _maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a value of the right shape; sometimes any JSON value at all."""
    return _ODD_ONE_OUT.flatmap(lambda odd: WRONG_VALUES if odd else valid)


def _fields(
    required: dict[str, st.SearchStrategy[Any]] | None = None,
    **optional: st.SearchStrategy[Any],
) -> st.SearchStrategy[dict[str, Any]]:
    """An object with its required fields (each sometimes left out) and optional ones."""
    drawn = {
        key: _ODD_ONE_OUT.flatmap(
            lambda odd, strategy=strategy: st.just(_ABSENT) if odd else strategy
        )
        for key, strategy in (required or {}).items()
    }
    return st.fixed_dictionaries(drawn, optional=optional).map(
        lambda fields: {key: value for key, value in fields.items() if value is not _ABSENT}
    )


_ABSENT = object()


CAPABILITIES = _fields(
    {"kind": _maybe(st.sampled_from(KINDS)), "key": _maybe(IDS)},
    name=_maybe(st.text(max_size=MAX_NAME_LENGTH + 2) | LONG_TEXT),
    device_class=_maybe(st.sampled_from(["temperature", "door", "enum", "timestamp"])),
    unit=_maybe(st.text(max_size=MAX_FIELD_LENGTH + 2)),
    state_class=_maybe(st.sampled_from(["measurement", "total"])),
    confirmable=_maybe(st.booleans()),
    options=_maybe(st.lists(st.text(max_size=8) | LONG_TEXT, max_size=MAX_OPTIONS + 2)),
    min=_maybe(BOUNDS),
    max=_maybe(BOUNDS),
    step=_maybe(BOUNDS),
)
CONFIGS = st.builds(
    lambda fields, capabilities, padding: {
        **fields,
        "capabilities": capabilities + [{"kind": "sensor", "key": f"p{i}"} for i in range(padding)]
        if isinstance(capabilities, list)
        else capabilities,
    },
    _fields(
        {
            "id": _maybe(st.just(DEVICE_ID)),
            "name": _maybe(st.text(max_size=MAX_NAME_LENGTH + 2) | LONG_TEXT),
        },
        manufacturer=_maybe(st.text(max_size=20)),
        model=_maybe(st.text(max_size=20) | ODD_NUMBERS),
        sw_version=_maybe(st.text(max_size=MAX_NAME_LENGTH + 2)),
        serial_number=_maybe(LONG_TEXT),
    ),
    _maybe(st.lists(CAPABILITIES, max_size=6)),
    st.integers(0, MAX_CAPABILITIES + 2) | st.just(0),
)
STATE_VALUES = st.one_of(
    JSON_VALUES,
    # Values some capability accepts, so the checks keep some and refuse others.
    st.booleans(),
    st.integers(-20, 20),
    st.floats(-20, 20),
    st.sampled_from(["on", "off", "eco", "boost", "21.5", " 1 "]),
    st.sampled_from(sorted(LOCK_STATES)),
    st.fixed_dictionaries({}, optional={"on": JSON_VALUES, "brightness": ODD_NUMBERS}),
    st.fixed_dictionaries({"latitude": ODD_NUMBERS, "longitude": ODD_NUMBERS}),
)
REPLIES = _fields(
    {"id": _maybe(IDS | LONG_TEXT), "status": _maybe(st.sampled_from(["ok", "error"]))},
    reason=_maybe(st.text(max_size=20) | LONG_TEXT),
    state=_maybe(st.dictionaries(IDS, STATE_VALUES, max_size=4)),
)


def _encode(value: Any) -> bytes:
    return json.dumps(value).encode()


def _deeply_nested(depth: int, wrap: int) -> bytes:
    """Arrays `depth` deep inside `wrap` objects: up to what 16 KiB can hold."""
    return ('{"x":' * wrap + "[" * depth + "]" * depth + "}" * wrap).encode()


# Any document: raw bytes, any JSON value, or nesting down to the size limit.
ANY_PAYLOAD = st.one_of(
    st.binary(max_size=300),
    JSON_VALUES.map(_encode),
    st.builds(_deeply_nested, st.integers(0, 8100), st.integers(0, 20)),
)


def _nesting(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_nesting, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_nesting, value), default=0)
    return 0


def _check_error(err: ProfileError) -> None:
    """A refusal says why in one short line and names its cause."""
    event(f"refused: {err.code}")  # --hypothesis-show-statistics shows what was reached
    assert err.code
    assert str(err)
    assert len(str(err)) <= 300
    assert "\n" not in str(err)


def _is_sane_number(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value) and abs(value) <= MAX_MAGNITUDE


def _check_capability(capability: Capability) -> None:
    assert isinstance(capability.kind, CapabilityKind)
    assert isinstance(capability.key, str)
    assert 1 <= len(capability.key) <= 64
    assert capability.name is None or len(capability.name) <= MAX_NAME_LENGTH
    for text in (capability.device_class, capability.unit, capability.state_class):
        assert text is None or (isinstance(text, str) and len(text) <= MAX_FIELD_LENGTH)
    assert isinstance(capability.confirmable, bool)
    if capability.kind is CapabilityKind.LOCK:
        assert capability.confirmable
    if capability.options is not None:
        assert 1 <= len(capability.options) <= MAX_OPTIONS
        assert all(1 <= len(o) <= MAX_OPTION_LENGTH for o in capability.options)
    for bound in (capability.minimum, capability.maximum, capability.step):
        assert bound is None or _is_sane_number(bound)
    if capability.minimum is not None and capability.maximum is not None:
        assert capability.minimum <= capability.maximum
    assert capability.step is None or capability.step > 0


def _check_device(device: Device) -> None:
    assert device.device_id == DEVICE_ID
    assert device.name
    assert device.name == device.name.strip()
    assert len(device.name) <= MAX_NAME_LENGTH
    assert len(device.capabilities) <= MAX_CAPABILITIES
    for key, capability in device.capabilities.items():
        assert key == capability.key
        _check_capability(capability)
    info = device.info
    for text in (
        info.manufacturer,
        info.model,
        info.sw_version,
        info.hw_version,
        info.serial_number,
    ):
        assert text is None or (isinstance(text, str) and len(text) <= MAX_NAME_LENGTH)


def _config_or_error(payload: bytes) -> Device | None:
    try:
        device = parse_device_config(DEVICE_ID, payload)
    except ProfileError as err:
        _check_error(err)
        return None
    assert device is not None or payload == b""
    if device is not None:
        event("decoded")
        _check_device(device)
    return device


@FUZZ
@given(payload=ANY_PAYLOAD)
def test_config_decoder_takes_anything(payload: bytes) -> None:
    """Discovery config: arbitrary bytes, JSON and nesting give a sane device or a
    ProfileError, nothing else."""
    _config_or_error(payload)


@FUZZ
@given(config=CONFIGS)
def test_config_decoder_takes_wrong_fields(config: dict[str, Any]) -> None:
    """Discovery config shaped like the profile, with wrong types, non-finite and absurd
    numbers, huge strings and too many capabilities in any field."""
    device = _config_or_error(_encode(config))
    if device is not None:
        # What was accepted went through the checks, not around them.
        assert config["id"] == DEVICE_ID
        assert len(config["capabilities"]) == len(device.capabilities)


# Every kind once, with every option the checks read, so decoded state reaches each checker.
STATE_DEVICE_CAPABILITIES = [
    Capability(CapabilityKind.SENSOR, "sensor"),
    Capability(CapabilityKind.SENSOR, "reading", unit="W"),
    Capability(CapabilityKind.SENSOR, "mode", options=("eco", "boost")),
    Capability(CapabilityKind.BINARY_SENSOR, "binary_sensor"),
    Capability(CapabilityKind.SWITCH, "switch"),
    Capability(CapabilityKind.LOCK, "lock", confirmable=True),
    Capability(CapabilityKind.BUTTON, "button"),
    Capability(CapabilityKind.NUMBER, "number", minimum=-10.0, maximum=10.0, step=0.5),
    Capability(CapabilityKind.NUMBER, "unbounded"),
    Capability(CapabilityKind.LIGHT, "light"),
    Capability(CapabilityKind.EVENT, "event"),
    Capability(CapabilityKind.DEVICE_TRACKER, "device_tracker"),
]
STATE_KEYS = [capability.key for capability in STATE_DEVICE_CAPABILITIES]
STATES = st.one_of(
    st.dictionaries(st.sampled_from(STATE_KEYS) | st.text(max_size=8), STATE_VALUES, max_size=6),
    JSON_VALUES,
).map(_encode)


class _Listener:
    """Counts what the store reports (a BridgeListener)."""

    def __init__(self) -> None:
        self.changes = 0

    def device_discovered(self, device: Device, previous: Device | None) -> None:
        """Not needed here."""

    def device_removed(self, device_id: str) -> None:
        """Not needed here."""

    def device_state_changed(self, device: Device, changed: frozenset[str] | None) -> None:
        """A state change."""
        self.changes += 1

    def connection_changed(self, connected: bool) -> None:
        """Not needed here."""


def _check_value(capability: Capability, value: Any) -> None:
    """What the store keeps is what Home Assistant can show."""
    kind = capability.kind
    if kind is CapabilityKind.NUMBER:
        assert isinstance(value, int | float)
        assert not isinstance(value, bool)
        assert math.isfinite(value)
        assert abs(value) <= MAX_MAGNITUDE
        low, high = capability.minimum, capability.maximum
        assert low is None or value >= low
        assert high is None or value <= high
    elif kind is CapabilityKind.SENSOR:
        if capability.options is not None:
            assert value in capability.options
        elif isinstance(value, str):
            assert len(value) <= MAX_TEXT_LENGTH
        else:
            assert isinstance(value, int | float)
            assert math.isfinite(value)
            assert abs(value) <= MAX_MAGNITUDE
    elif kind in (CapabilityKind.BINARY_SENSOR, CapabilityKind.SWITCH):
        assert isinstance(value, bool)
    elif kind is CapabilityKind.LOCK:
        assert value in LOCK_STATES
    elif kind is CapabilityKind.LIGHT:
        assert isinstance(value["on"], bool)
        assert value["brightness"] is None or 0 <= value["brightness"] <= 255
    elif kind is CapabilityKind.EVENT:
        assert isinstance(value, int)
        assert value >= 0
    elif kind is CapabilityKind.DEVICE_TRACKER:
        assert -90 <= value["latitude"] <= 90
        assert -180 <= value["longitude"] <= 180
    else:
        raise AssertionError(f"a {kind} holds no state, got {value!r}")


def _apply_state(payload: bytes) -> None:
    try:
        values = parse_state(payload)
    except ProfileError as err:
        _check_error(err)
        return
    assert isinstance(values, dict)
    assert _nesting(values) <= MAX_NESTING
    event("decoded")
    listener = _Listener()
    store = DeviceStore(listener)
    capabilities = {c.key: c for c in STATE_DEVICE_CAPABILITIES}
    store.announce(Device(DEVICE_ID, "Fuzz", capabilities=capabilities))
    # The same values for a device not announced yet: kept within the early-state bounds.
    store.apply_state("unknown", values)
    store.apply_state(DEVICE_ID, values)
    device = store.devices[DEVICE_ID]
    assert set(device.state) <= set(values)
    for key, value in device.state.items():
        _check_value(capabilities[key], value)
    event(f"values kept: {min(len(device.state), 3)}{'+' if len(device.state) >= 3 else ''}")


@FUZZ
@given(payload=ANY_PAYLOAD)
def test_state_decoder_takes_anything(payload: bytes) -> None:
    """State: arbitrary bytes, JSON and nesting give an object or a ProfileError; whatever
    decodes, the value checks keep or refuse without raising."""
    _apply_state(payload)


@FUZZ
@given(payload=STATES)
def test_state_values_are_checked(payload: bytes) -> None:
    """State objects naming real capabilities with values of every wrong type, NaN,
    infinities, huge numbers and strings: only sane values reach the device's state."""
    _apply_state(payload)


@FUZZ
@given(
    payload=st.one_of(
        st.binary(max_size=100),
        st.sampled_from([b"online", b"offline", b" ONLINE\n", b"Offline\r\n"]),
        HUGE_TEXT.map(str.encode),
        st.builds(
            lambda word, pad: (pad + word + pad).encode(),
            st.sampled_from(["online", "offline"]),
            st.text(alphabet=" \t\r\n", max_size=80),
        ),
    )
)
def test_availability_decoder_takes_anything(payload: bytes) -> None:
    """Availability: a boolean for online/offline, a ProfileError for anything else."""
    try:
        available = parse_availability(payload)
    except ProfileError as err:
        _check_error(err)
        return
    assert isinstance(available, bool)
    event("decoded")
    assert payload.decode().strip().lower() == ("online" if available else "offline")


def _check_reply(payload: bytes, correlation: bytes | None) -> CommandReply | None:
    try:
        reply = parse_reply(payload, correlation)
    except ProfileError as err:
        _check_error(err)
        return None
    assert isinstance(reply.command_id, str)
    assert 1 <= len(reply.command_id) <= MAX_COMMAND_ID_LENGTH
    assert isinstance(reply.ok, bool)
    assert reply.reason is None or (
        isinstance(reply.reason, str) and len(reply.reason) <= MAX_REASON_LENGTH
    )
    assert reply.state is None or isinstance(reply.state, dict)
    event("decoded")
    return reply


CORRELATION = st.none() | st.binary(max_size=80)


@FUZZ
@given(payload=ANY_PAYLOAD, correlation=CORRELATION)
def test_reply_decoder_takes_anything(payload: bytes, correlation: bytes | None) -> None:
    """Answers: arbitrary bytes, JSON and nesting give a sane reply or a ProfileError."""
    _check_reply(payload, correlation)


@FUZZ
@given(reply=REPLIES, correlation=CORRELATION)
def test_reply_decoder_takes_wrong_fields(reply: dict[str, Any], correlation: bytes | None) -> None:
    """Answers shaped like the profile with any field of the wrong type or size."""
    decoded = _check_reply(_encode(reply), correlation)
    if decoded is not None:
        assert decoded.ok == (reply["status"] == "ok")
