"""Protocol-neutral device models: what a device offers and how its state reacts to commands.

A model knows nothing about MQTT, CoAP or LwM2M; a transport feeds it commands and publishes
its config and state in whatever shape that protocol wants.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

type State = dict[str, Any]
type Capability = dict[str, Any]  # one entry of the config's "capabilities" list
type Params = dict[str, Any]
# Extra state a device derives from a new capability value (a lock opening also opens the door).
type SideEffect = Callable[[Any], State]
type KindHandler = Callable[[DeviceModel, Capability, str, Params], Answer]

LOCK_ACTIONS = {"lock": "locked", "unlock": "unlocked", "open": "open"}
SWITCH_ACTIONS = {"turn_on": True, "turn_off": False}


@dataclass(frozen=True, slots=True)
class Answer:
    """Result of one command: ok, or a reason; `state` holds only the keys that changed."""

    ok: bool
    reason: str | None = None
    state: State = field(default_factory=dict)


def refused(reason: str, state: State | None = None) -> Answer:
    return Answer(ok=False, reason=reason, state=state or {})


@dataclass
class DeviceModel:
    """A device's description (as in the profile's config JSON) and its current state."""

    device_id: str
    name: str
    manufacturer: str | None = None
    model: str | None = None
    sw_version: str | None = None
    hw_version: str | None = None
    capabilities: list[Capability] = field(default_factory=list)
    state: State = field(default_factory=dict)
    side_effects: dict[str, SideEffect] = field(default_factory=dict)

    def config_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"id": self.device_id, "name": self.name}
        optional = {
            "manufacturer": self.manufacturer,
            "model": self.model,
            "sw_version": self.sw_version,
            "hw_version": self.hw_version,
        }
        payload |= {key: value for key, value in optional.items() if value is not None}
        payload["capabilities"] = [dict(cap) for cap in self.capabilities]
        return payload

    def capability(self, key: str) -> Capability | None:
        return next((cap for cap in self.capabilities if cap.get("key") == key), None)

    def perform(self, capability: str, action: str, params: Params) -> Answer:
        """Carry out a command and apply the changed values to `state`."""
        cap = self.capability(capability)
        if cap is None:
            return refused(f"unknown capability {capability!r}")
        handler = KIND_HANDLERS.get(str(cap.get("kind")))
        if handler is None:
            return refused(f"{cap.get('kind')} {capability!r} takes no commands")
        answer = handler(self, cap, action, params)
        if not answer.ok:
            return answer
        changes = dict(answer.state)
        for key, value in answer.state.items():
            if effect := self.side_effects.get(key):
                changes |= effect(value)
        self.state |= changes
        return Answer(ok=True, state=changes)


def _unknown_action(cap: Capability, action: str) -> Answer:
    return refused(f"{cap['kind']} {cap['key']!r} has no action {action!r}")


def _lock(_model: DeviceModel, cap: Capability, action: str, _params: Params) -> Answer:
    if action not in LOCK_ACTIONS:
        return _unknown_action(cap, action)
    return Answer(ok=True, state={cap["key"]: LOCK_ACTIONS[action]})


def _switch(_model: DeviceModel, cap: Capability, action: str, _params: Params) -> Answer:
    if action not in SWITCH_ACTIONS:
        return _unknown_action(cap, action)
    return Answer(ok=True, state={cap["key"]: SWITCH_ACTIONS[action]})


def _light(model: DeviceModel, cap: Capability, action: str, params: Params) -> Answer:
    if action not in SWITCH_ACTIONS:
        return _unknown_action(cap, action)
    current = model.state.get(cap["key"])
    brightness = current.get("brightness", 255) if isinstance(current, dict) else 255
    if action == "turn_on" and "brightness" in params:
        value = params["brightness"]
        if not _is_number(value) or not 0 <= value <= 255:
            return refused(f"brightness must be a number 0-255, got {value!r}")
        brightness = round(value)
    light = {"on": action == "turn_on", "brightness": brightness}
    return Answer(ok=True, state={cap["key"]: light})


def _number(_model: DeviceModel, cap: Capability, action: str, params: Params) -> Answer:
    if action != "set":
        return _unknown_action(cap, action)
    value = params.get("value")
    if not _is_number(value):
        return refused(f"set needs a numeric 'value', got {value!r}")
    low, high = cap.get("min"), cap.get("max")
    if (low is not None and value < low) or (high is not None and value > high):
        return refused(f"value {value} outside {low}..{high}")
    return Answer(ok=True, state={cap["key"]: value})


def _button(_model: DeviceModel, cap: Capability, action: str, _params: Params) -> Answer:
    return Answer(ok=True) if action == "press" else _unknown_action(cap, action)


def _is_number(value: Any) -> bool:
    # bool is an int subclass, but `true` is not a number in the profile.
    return isinstance(value, int | float) and not isinstance(value, bool)


KIND_HANDLERS: dict[str, KindHandler] = {
    "lock": _lock,
    "switch": _switch,
    "light": _light,
    "number": _number,
    "button": _button,
}


def _door_follows_lock(door_key: str) -> SideEffect:
    """Opening the lock swings the door open; locking implies it was shut first."""

    def effect(value: Any) -> State:
        if value == "open":
            return {door_key: True}
        if value == "locked":
            return {door_key: False}
        return {}

    return effect


def _temperature(key: str = "temperature") -> dict[str, Any]:
    return {
        "kind": "sensor",
        "key": key,
        "device_class": "temperature",
        "unit": "°C",
        "state_class": "measurement",
    }


def parcel_locker(device_id: str = "locker1") -> DeviceModel:
    capabilities: list[Capability] = []
    state: State = {}
    effects: dict[str, SideEffect] = {}
    for n in range(1, 4):
        lock_key, door_key = f"door{n}_lock", f"door{n}"
        capabilities += [
            {"kind": "lock", "key": lock_key, "name": f"Door {n}", "confirmable": True},
            {
                "kind": "binary_sensor",
                "key": door_key,
                "name": f"Door {n} open",
                "device_class": "door",
            },
        ]
        state |= {lock_key: "locked", door_key: False}
        effects[lock_key] = _door_follows_lock(door_key)
    capabilities.append(_temperature())
    state["temperature"] = 21.5
    return DeviceModel(
        device_id=device_id,
        name="Parcel locker",
        manufacturer="IoT Bridge demo",
        model="PL-3",
        sw_version="1.0.0",
        hw_version="sim",
        capabilities=capabilities,
        state=state,
        side_effects=effects,
    )


def climate_node(device_id: str = "climate1") -> DeviceModel:
    capabilities: list[Capability] = [
        _temperature(),
        {
            "kind": "sensor",
            "key": "humidity",
            "device_class": "humidity",
            "unit": "%",
            "state_class": "measurement",
        },
        {"kind": "switch", "key": "relay", "confirmable": True},
        {
            "kind": "number",
            "key": "setpoint",
            "unit": "°C",
            "min": 5,
            "max": 30,
            "step": 0.5,
            "confirmable": True,
        },
    ]
    return DeviceModel(
        device_id=device_id,
        name="Climate node",
        manufacturer="IoT Bridge demo",
        model="CN-1",
        sw_version="1.0.0",
        hw_version="sim",
        capabilities=capabilities,
        state={"temperature": 21.0, "humidity": 45.0, "relay": False, "setpoint": 21.0},
    )


def sensor_node(device_id: str = "sensor1") -> DeviceModel:
    """The climate node plus a dimmable light: every kind of value an IPSO sensor node has."""
    model = climate_node(device_id)
    model.name = "Sensor node"
    model.model = "SN-1"
    model.capabilities.append({"kind": "light", "key": "light", "confirmable": True})
    model.state["light"] = {"on": False, "brightness": 128}
    return model


DEVICE_FACTORIES: dict[str, Callable[..., DeviceModel]] = {
    "locker": parcel_locker,
    "climate": climate_node,
    "sensor": sensor_node,
}
