"""Values checked at the edge (core/values.py) and the device store that applies them."""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from custom_components.iot_bridge.core.devices import (
    MAX_EARLY_DEVICES,
    MAX_EARLY_KEYS,
    DeviceStore,
)
from custom_components.iot_bridge.core.model import Capability, CapabilityKind, Device
from custom_components.iot_bridge.core.values import (
    InvalidValue,
    as_bool,
    is_numeric_sensor,
    normalize,
)

TEMPERATURE = Capability(
    CapabilityKind.SENSOR, "t", device_class="temperature", unit="°C", state_class="measurement"
)
TEXT = Capability(CapabilityKind.SENSOR, "note")
MODE = Capability(CapabilityKind.SENSOR, "mode", options=("eco", "boost"))
DOOR = Capability(CapabilityKind.BINARY_SENSOR, "door")
LOCK = Capability(CapabilityKind.LOCK, "lock", confirmable=True)
SETPOINT = Capability(CapabilityKind.NUMBER, "sp", minimum=5, maximum=30)
LAMP = Capability(CapabilityKind.LIGHT, "lamp")
BUTTON = Capability(CapabilityKind.BUTTON, "reboot")


@pytest.mark.parametrize(
    ("capability", "raw", "expected"),
    [
        (TEMPERATURE, 21.5, 21.5),
        (TEMPERATURE, "21.5", 21.5),
        (TEMPERATURE, 3, 3),
        (TEXT, "hello", "hello"),
        (TEXT, True, "on"),
        (TEXT, 7, 7),
        (MODE, "boost", "boost"),
        (DOOR, "OPEN", True),
        (DOOR, 0, False),
        (LOCK, " Locked ", "locked"),
        (LOCK, "jammed", "jammed"),
        (SETPOINT, 30, 30),
        (LAMP, True, {"on": True, "brightness": None}),
        (LAMP, {"on": "off", "brightness": 127.6}, {"on": False, "brightness": 128}),
    ],
)
def test_good_values_become_canonical(capability: Capability, raw: Any, expected: Any) -> None:
    assert normalize(capability, raw) == expected


@pytest.mark.parametrize(
    ("capability", "raw", "message"),
    [
        (TEMPERATURE, float("nan"), "expected a number"),
        (TEMPERATURE, float("inf"), "expected a number"),
        (TEMPERATURE, 1e308, "out of range"),
        (TEMPERATURE, "n/a", "expected a number"),
        (TEMPERATURE, True, "expected a number"),
        (TEMPERATURE, {"v": 1}, "expected a number"),
        (TEXT, "x" * 256, "256 characters"),
        (TEXT, [1, 2], "number or text"),
        (MODE, "turbo", "not one of"),
        (DOOR, "ajar", "expected on/off"),
        (DOOR, float("nan"), "expected on/off"),
        (LOCK, "unlocked-ish", "not a lock state"),
        (LOCK, 1, "not a lock state"),
        (SETPOINT, 31, "outside 5..30"),
        (SETPOINT, float("-inf"), "expected a number"),
        (LAMP, {"on": True, "brightness": 300}, "outside 0..255"),
        (LAMP, {"on": True, "colour": "red"}, "unknown light field"),
        (LAMP, {"brightness": 3}, "expected on/off"),
        (BUTTON, "pressed", "has no state"),
    ],
)
def test_bad_values_are_refused_with_a_reason(
    capability: Capability, raw: Any, message: str
) -> None:
    with pytest.raises(InvalidValue, match=message):
        normalize(capability, raw)


def test_refusal_messages_stay_short() -> None:
    with pytest.raises(InvalidValue) as err:
        normalize(LOCK, "x" * 100_000)
    assert len(str(err.value)) < 200


def test_numeric_sensors() -> None:
    assert is_numeric_sensor(TEMPERATURE)
    assert is_numeric_sensor(Capability(CapabilityKind.SENSOR, "w", unit="W"))
    assert not is_numeric_sensor(TEXT)
    assert not is_numeric_sensor(MODE)
    assert not is_numeric_sensor(Capability(CapabilityKind.SENSOR, "ts", device_class="timestamp"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (0, False),
        (2.5, True),
        ("ON", True),
        (" off ", False),
        ("open", True),
        ("maybe", None),
        (None, None),
        (float("nan"), None),
    ],
)
def test_as_bool(value: Any, expected: bool | None) -> None:
    """Binary values in the forms devices send them."""
    assert as_bool(value) is expected


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=300),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


@given(raw=_JSON)
def test_any_json_value_is_either_canonical_or_refused(raw: Any) -> None:
    """Whatever a device sends, each kind either accepts a sane value or says why not."""
    for capability in (TEMPERATURE, TEXT, MODE, DOOR, LOCK, SETPOINT, LAMP, BUTTON):
        try:
            value = normalize(capability, raw)
        except InvalidValue:
            continue
        if isinstance(value, float):
            assert math.isfinite(value)
        if isinstance(value, str):
            assert len(value) <= 255


class Recorder:
    """A BridgeListener that remembers what it heard."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def device_discovered(self, device: Device, previous: Device | None) -> None:
        self.events.append(("discovered", device.device_id))

    def device_removed(self, device_id: str) -> None:
        self.events.append(("removed", device_id))

    def device_state_changed(self, device: Device, changed: frozenset[str] | None) -> None:
        self.events.append(("changed", changed))

    def connection_changed(self, connected: bool) -> None:
        self.events.append(("connection", connected))


def _device(*capabilities: Capability) -> Device:
    return Device("d1", "D", capabilities={c.key: c for c in capabilities})


def test_store_applies_only_good_values_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    listener = Recorder()
    store = DeviceStore(listener)
    store.announce(_device(TEMPERATURE, LOCK))
    caplog.set_level(logging.DEBUG)
    for _ in range(5):
        store.apply_state("d1", {"t": "NaN", "lock": "locked"})
    assert store.devices["d1"].state == {"lock": "locked"}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "value of t from device d1" in warnings[0].getMessage()
    assert store.rejects.counts["value of t"] == 5
    assert ("changed", frozenset({"lock"})) in listener.events
    # A good value clears the warning; the next bad one is logged again.
    store.apply_state("d1", {"t": 20})
    store.apply_state("d1", {"t": "bad"})
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2
    assert store.devices["d1"].state["t"] == 20


def test_kind_change_drops_the_old_value() -> None:
    store = DeviceStore(Recorder())
    store.announce(_device(Capability(CapabilityKind.SENSOR, "x", unit="W")))
    store.apply_state("d1", {"x": 1})
    store.announce(_device(Capability(CapabilityKind.LOCK, "x")))
    assert "x" not in store.devices["d1"].state
    store.announce(_device(Capability(CapabilityKind.SENSOR, "x", unit="kW")))
    store.apply_state("d1", {"x": 2})
    store.announce(_device(Capability(CapabilityKind.SENSOR, "x", unit="W")))
    assert store.devices["d1"].state["x"] == 2  # same kind: the reading carries over


def test_early_state_is_bounded() -> None:
    store = DeviceStore(Recorder())
    for n in range(MAX_EARLY_DEVICES + 50):
        store.apply_state(f"ghost{n}", {f"k{i}": i for i in range(MAX_EARLY_KEYS * 2)})
    assert len(store._early_state) == MAX_EARLY_DEVICES
    assert all(len(values) == MAX_EARLY_KEYS for values in store._early_state.values())
    assert store.rejects.counts["early_state_evicted"] == 50
    for n in range(MAX_EARLY_DEVICES * 2):
        store.set_available(f"ghost{n}", False)
    assert len(store._early_availability) == MAX_EARLY_DEVICES
    # A device announced late still gets what it sent early (validated).
    late = f"ghost{MAX_EARLY_DEVICES + 49}"
    store.announce(
        Device(
            late,
            "Late",
            capabilities={"k1": Capability(CapabilityKind.SENSOR, "k1", unit="W")},
        )
    )
    assert store.devices[late].state == {"k1": 1}
    assert store.devices[late].available is False
