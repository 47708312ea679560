"""The LwM2M objects a simulated device exposes, derived from its DeviceModel.

The layout follows the model's capabilities, so every model (parcel locker, climate node,
sensor node) gets objects without a table per device:

| capability                         | object instance | resources                           |
|------------------------------------|-----------------|-------------------------------------|
| (always)                           | 1/0 Server      | 0 id, 1 lifetime, 2/3 pmin/pmax, 6, 7 binding, 8 update trigger (E) |
| (always)                           | 3/0 Device      | 0 maker, 1 model, 2 serial, 3 fw, 4 reboot (E), 9 battery, 11 error, 16 binding, 17 type, 18 hw, 19 sw |
| lock `K`                           | 10359/n Lock    | 1 name, 50 status (1 locked), 100 control (E: arg 1 lock, 0 unlock) |
| binary_sensor door `D`             | 10351/n Door    | 1 name, 50 status (1 open), 100 control (E: open lock `D_lock`) |
| other binary_sensor                | 3200/n          | 5500 state                          |
| sensor (temperature, humidity, ..) | 3303/3304/..    | 5700 value, 5701 units              |
| light                              | 3311/n          | 5850 on/off (RW), 5851 dimmer 0-100 (RW) |
| switch                             | 3312/n          | 5850 on/off (RW)                    |
| number                             | 3308/n          | 5900 set point (RW), 5701 units     |
| (vendor_object=True)               | 31024/0         | 0 counter, 1 label (RW), 2 blink (E: counter + 1) |

A capability with an `lwm2m_object` entry names its object itself (showcase_node() has one
of each object IoT Bridge maps beyond the ones above):

| lwm2m_object | capability                | resources                                         |
|--------------|---------------------------|---------------------------------------------------|
| 4            | sensor, state: dBm        | 0 bearer, 2 signal strength, 3 link quality, 4 IP addresses |
| 3200/3302/3342 | binary_sensor           | 5500 state                                        |
| 3201         | switch                    | 5550 state (RW)                                   |
| 3202         | sensor                    | 5600 value                                        |
| 3305         | sensor, `<key>_energy` too | 5800 power (W), 5805 cumulative energy (Wh)      |
| 3306         | light                     | 5850 on/off (RW), 5851 dimmer (RW)                |
| 3336         | device_tracker, {latitude, longitude} | 6051 latitude, 6052 longitude         |
| 3347         | event, state: press count | 5500 pressed now, 5501 press counter              |

Instances count per object in capability order (door1_lock is 10359/0, door2_lock 10359/1).
31024 is an object no registry defines (IoT Bridge's unknown-object fallback); it is also
the one object whose instances a server may Create and Delete.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from custom_components.iot_bridge.core.lwm2m import LwM2MPath, Value, default_registry

from .devices import DeviceModel, Params

SERVER_OBJECT: Final = 1
DEVICE_OBJECT: Final = 3
LOCK_OBJECT: Final = 10359
DOOR_OBJECT: Final = 10351
VENDOR_OBJECT: Final = 31024
# device_class -> (IPSO object, units as IPSO writes them)
SENSOR_OBJECTS: Final = {
    "temperature": (3303, "Cel"),
    "humidity": (3304, "%RH"),
    "illuminance": (3301, "lx"),
    "atmospheric_pressure": (3315, "hPa"),
    "pressure": (3323, "hPa"),
    "power": (3328, "W"),
    "energy": (3331, "Wh"),
}
UNITS: Final = {"°C": "Cel", "%": "%"}
# LwM2M 1.1 argument list (core spec 5.4.3.1): digit, optionally ='text'.
_ARGUMENT: Final = re.compile(r"([0-9])(?:='([^']*)')?")

type Reading = Value | Mapping[int, Value]  # a multiple resource reads as instance -> value


class Lwm2mError(Exception):
    """A request the device answers with an error code; str() is the diagnostic payload."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code  # dotted, e.g. "4.04"


def not_found(path: LwM2MPath) -> Lwm2mError:
    return Lwm2mError("4.04", f"{path} does not exist")


def not_allowed(path: LwM2MPath, operation: str) -> Lwm2mError:
    return Lwm2mError("4.05", f"{operation} is not allowed on {path}")


@dataclass(frozen=True, slots=True)
class Command:
    """A Write or Execute turned into a command for the device model."""

    capability: str
    action: str
    params: Params = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.action} {self.capability}" + (f" {self.params}" if self.params else "")


# What a Write or Execute does: a model command (subject to the failure modes), or a change
# of the client itself (a stored value, a reboot) that happens at once.
type Effect = Command | Callable[[], None]
type Writer = Callable[[Value], Effect]
type Executor = Callable[[tuple[tuple[int, str | None], ...]], Effect]


@dataclass(frozen=True, slots=True)
class Resource:
    """One resource of an instance: how to read, write or execute it."""

    read: Callable[[], Reading] | None = None
    write: Writer | None = None
    execute: Executor | None = None

    @property
    def operations(self) -> str:
        if self.execute is not None:
            return "E"
        return ("R" if self.read else "") + ("W" if self.write else "")


class ClientHooks(Protocol):
    """What the objects need from the LwM2M client that serves them."""

    lifetime: int
    default_pmin: int
    default_pmax: int

    @property
    def binding(self) -> str: ...

    def reboot(self) -> None: ...

    def trigger_update(self) -> None: ...


def parse_arguments(payload: bytes) -> tuple[tuple[int, str | None], ...]:
    """Execute arguments: "1", "0='x',3" -> ((1, None),) / ((0, "x"), (3, None))."""
    text = payload.decode("utf-8", errors="strict").strip()
    if not text:
        return ()
    arguments = []
    for item in text.split(","):
        match = _ARGUMENT.fullmatch(item.strip())
        if match is None:
            raise Lwm2mError("4.00", f"argument {item[:20]!r} is not digit or digit='value'")
        arguments.append((int(match[1]), match[2]))
    return tuple(arguments)


class ObjectTree:
    """Object instances by path, each a map of resource id -> Resource."""

    def __init__(self, model: DeviceModel, hooks: ClientHooks, *, vendor_object: bool) -> None:
        self.model = model
        self.hooks = hooks
        self.instances: dict[LwM2MPath, dict[int, Resource]] = {}
        self.stored: dict[LwM2MPath, Value] = {}  # values the server wrote or created
        self.capability_instances: dict[str, list[LwM2MPath]] = {}
        self._add_server_object()
        self._add_device_object()
        self._add_capabilities()
        if vendor_object:
            self.create(LwM2MPath(VENDOR_OBJECT, 0), {})

    # -- queries ------------------------------------------------------------------------

    def object_ids(self) -> list[int]:
        return sorted({path.ids[0] for path in self.instances})

    def instance_paths(self, object_id: int | None = None) -> list[LwM2MPath]:
        return sorted(p for p in self.instances if object_id is None or p.ids[0] == object_id)

    def exists(self, path: LwM2MPath) -> bool:
        if path.depth == 1:
            return any(p.ids[0] == path.ids[0] for p in self.instances)
        instance = self.instances.get(LwM2MPath(*path.ids[:2]))
        if instance is None:
            return False
        if path.depth == 2:
            return True
        resource = instance.get(path.ids[2])
        if resource is None:
            return False
        if path.depth == 4:
            reading = resource.read() if resource.read else None
            return isinstance(reading, Mapping) and path.ids[3] in reading
        return True

    def resource(self, path: LwM2MPath) -> Resource:
        """The resource a resource path names, or 4.04."""
        if path.depth < 3:
            raise Lwm2mError("4.05", f"{path} is not a resource")
        resource = self.instances.get(LwM2MPath(*path.ids[:2]), {}).get(path.ids[2])
        if resource is None:
            raise not_found(path)
        return resource

    def read(self, path: LwM2MPath) -> dict[LwM2MPath, Value]:
        """Every readable value at or below `path` (4.04 if absent, 4.05 if not readable)."""
        if not self.exists(path) or path.depth == 0:
            raise not_found(path)
        if path.depth >= 3:
            resource = self.resource(path)
            if resource.read is None:
                raise not_allowed(path, "Read")
            below = self._values(LwM2MPath(*path.ids[:3]), resource.read())
            return {p: v for p, v in below.items() if p.startswith(path)}
        values: dict[LwM2MPath, Value] = {}
        for instance_path in self.instance_paths(path.ids[0]):
            if not instance_path.startswith(path):
                continue
            for resource_id, resource in sorted(self.instances[instance_path].items()):
                if resource.read is not None:
                    values |= self._values(instance_path.child(resource_id), resource.read())
        return values

    @staticmethod
    def _values(path: LwM2MPath, reading: Reading) -> dict[LwM2MPath, Value]:
        if isinstance(reading, Mapping):
            return {path.child(i): v for i, v in sorted(reading.items())}
        return {path: reading}

    def links(self, path: LwM2MPath) -> Iterator[LwM2MPath]:
        """The paths a Discover on `path` lists: the path itself and everything below."""
        if path.depth == 1:
            yield path
        for instance_path in self.instance_paths(path.ids[0]):
            if not instance_path.startswith(path) and not path.startswith(instance_path):
                continue
            if path.depth <= 2:
                yield instance_path
            for resource_id in sorted(self.instances[instance_path]):
                resource_path = instance_path.child(resource_id)
                if resource_path.startswith(path) or path.depth <= 2:
                    yield resource_path

    def dimension(self, path: LwM2MPath) -> int | None:
        """Number of instances of a multiple resource (Discover's dim attribute)."""
        resource = self.instances.get(LwM2MPath(*path.ids[:2]), {}).get(path.ids[2])
        reading = resource.read() if resource and resource.read else None
        return len(reading) if isinstance(reading, Mapping) else None

    # -- create / delete -----------------------------------------------------------------

    def create(self, instance: LwM2MPath, values: Mapping[LwM2MPath, Value]) -> None:
        """A new instance of the vendor object (the only one instances can be created of)."""
        if instance.ids[0] != VENDOR_OBJECT:
            raise not_allowed(LwM2MPath(instance.ids[0]), "Create")
        if instance in self.instances:
            raise Lwm2mError("4.00", f"{instance} already exists")
        for path in values:
            if path.depth != 3 or not path.startswith(instance) or path.ids[2] not in (0, 1):
                raise Lwm2mError("4.00", f"{path} cannot be set on Create")
        self.stored[instance.child(0)] = 0
        self.stored[instance.child(1)] = f"vendor instance {instance.ids[1]}"
        for path, value in values.items():
            self._check_type(path, value, int if path.ids[2] == 0 else str)
            self.stored[path] = value
        counter, label = instance.child(0), instance.child(1)
        self.instances[instance] = {
            0: Resource(read=lambda: self.stored[counter]),
            1: Resource(read=lambda: self.stored[label], write=self._store(label, str)),
            2: Resource(execute=lambda _args: lambda: self._count(counter)),
        }

    def free_instance_id(self, object_id: int) -> int:
        used = {p.ids[1] for p in self.instance_paths(object_id)}
        return next(i for i in range(65535) if i not in used)

    def delete(self, instance: LwM2MPath) -> None:
        if instance not in self.instances:
            raise not_found(instance)
        if instance.ids[0] in (SERVER_OBJECT, DEVICE_OBJECT):
            raise not_allowed(instance, "Delete")
        del self.instances[instance]
        self.stored = {p: v for p, v in self.stored.items() if not p.startswith(instance)}

    def _count(self, counter: LwM2MPath) -> None:
        count = self.stored[counter]
        assert isinstance(count, int)
        self.stored[counter] = count + 1

    # -- building --------------------------------------------------------------------------

    def _add(self, object_id: int, resources: dict[int, Resource], capability: str = "") -> None:
        instance = LwM2MPath(object_id, len(self.instance_paths(object_id)))
        self.instances[instance] = resources
        if capability:
            self.capability_instances.setdefault(capability, []).append(instance)

    def _state(self, key: str, convert: Callable[[Any], Value]) -> Callable[[], Value]:
        return lambda: convert(self.model.state.get(key))

    def _store(self, path: LwM2MPath, kind: type) -> Writer:
        def write(value: Value) -> Effect:
            self._check_type(path, value, kind)
            return lambda: self.stored.__setitem__(path, value)

        return write

    @staticmethod
    def _check_type(path: LwM2MPath, value: Value, kind: type) -> None:
        if type(value) is not kind:
            raise Lwm2mError("4.00", f"{path} takes a {kind.__name__}, got {value!r}")

    def _add_server_object(self) -> None:
        hooks = self.hooks

        def setter(name: str) -> Writer:
            def write(value: Value) -> Effect:
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise Lwm2mError("4.00", f"{name} must be a whole number >= 0")

                def apply() -> None:
                    setattr(hooks, name, value)
                    if name == "lifetime":
                        hooks.trigger_update()

                return apply

            return write

        self._add(
            SERVER_OBJECT,
            {
                0: Resource(read=lambda: 1),
                1: Resource(read=lambda: hooks.lifetime, write=setter("lifetime")),
                2: Resource(read=lambda: hooks.default_pmin, write=setter("default_pmin")),
                3: Resource(read=lambda: hooks.default_pmax, write=setter("default_pmax")),
                6: Resource(read=lambda: False),
                7: Resource(read=lambda: hooks.binding),
                8: Resource(execute=lambda _args: hooks.trigger_update),
            },
        )

    def _add_device_object(self) -> None:
        model, hooks = self.model, self.hooks
        self._add(
            DEVICE_OBJECT,
            {
                0: Resource(read=lambda: model.manufacturer or "IoT Bridge simulator"),
                1: Resource(read=lambda: model.model or "simulated"),
                2: Resource(read=lambda: f"SIM-{model.device_id}"),
                3: Resource(read=lambda: model.sw_version or "0"),
                4: Resource(execute=lambda _args: hooks.reboot),
                9: Resource(read=self._state("battery", lambda v: 100 if v is None else round(v))),
                11: Resource(read=lambda: {0: 0}),
                16: Resource(read=lambda: hooks.binding),
                17: Resource(read=lambda: model.name),
                18: Resource(read=lambda: model.hw_version or "0"),
                19: Resource(read=lambda: model.sw_version or "0"),
            },
        )

    def _add_capabilities(self) -> None:
        builders: dict[str, Callable[[dict[str, Any]], None]] = {
            "lock": self._add_lock,
            "binary_sensor": self._add_binary_sensor,
            "sensor": self._add_sensor,
            "light": self._add_light,
            "switch": self._add_switch,
            "number": self._add_number,
        }
        for capability in self.model.capabilities:
            if "lwm2m_object" in capability:
                self._add_named_object(capability)
            elif builder := builders.get(str(capability.get("kind"))):
                builder(capability)

    def _add_named_object(self, cap: dict[str, Any]) -> None:
        """A capability that names its IPSO object (see the module's second table)."""
        key, object_id = cap["key"], int(cap["lwm2m_object"])
        state = self.model.state

        def coordinate(name: str) -> Callable[[], Value]:
            return lambda: _float((state.get(key) or {}).get(name))

        resources: dict[int, Resource]
        if object_id == 4:
            resources = {
                0: Resource(read=lambda: 0),  # GSM
                2: Resource(read=self._state(key, lambda v: int(v or 0))),
                3: Resource(read=lambda: 90),
                4: Resource(read=lambda: {0: "192.0.2.10"}),
            }
        elif object_id in (3200, 3302, 3342):
            resources = {5500: Resource(read=self._state(key, bool))}
        elif object_id == 3201:
            resources = {5550: Resource(read=self._state(key, bool), write=_switch(key))}
        elif object_id == 3202:
            resources = {5600: Resource(read=self._state(key, _float))}
        elif object_id == 3305:
            resources = {
                5800: Resource(read=self._state(key, _float)),
                5805: Resource(read=self._state(f"{key}_energy", _float)),
            }
        elif object_id == 3306:
            self._add_light(cap, object_id)
            return
        elif object_id == 3336:
            resources = {
                6051: Resource(read=coordinate("latitude")),
                6052: Resource(read=coordinate("longitude")),
            }
        elif object_id == 3347:
            resources = {
                5500: Resource(read=lambda: False),
                5501: Resource(read=self._state(key, lambda v: int(v or 0))),
            }
        else:
            raise ValueError(f"{key}: the simulator has no object {object_id}")
        self._add(object_id, resources, key)

    def _add_lock(self, cap: dict[str, Any]) -> None:
        key = cap["key"]

        def control(arguments: tuple[tuple[int, str | None], ...]) -> Effect:
            if len(arguments) != 1 or arguments[0][0] not in (0, 1):
                raise Lwm2mError("4.00", "lock control takes argument 1 (lock) or 0 (unlock)")
            return Command(key, "lock" if arguments[0][0] == 1 else "unlock")

        self._add(
            LOCK_OBJECT,
            {
                1: Resource(read=lambda: str(cap.get("name", key))),
                50: Resource(read=self._state(key, lambda v: v == "locked")),
                100: Resource(execute=control),
            },
            key,
        )

    def _add_binary_sensor(self, cap: dict[str, Any]) -> None:
        key = cap["key"]
        state = Resource(read=self._state(key, bool))
        if cap.get("device_class") != "door":
            self._add(3200, {5500: state}, key)
            return
        lock = f"{key}_lock"
        lock_cap = self.model.capability(lock)
        # A door is named like its lock ("Door 2"), as a real locker names its compartments.
        name = str((lock_cap or cap).get("name", key))
        resources = {1: Resource(read=lambda: name), 50: state}
        if lock_cap is not None:
            resources[100] = Resource(execute=lambda _args: Command(lock, "open"))
        self._add(DOOR_OBJECT, resources, key)

    def _add_sensor(self, cap: dict[str, Any]) -> None:
        object_id, units = SENSOR_OBJECTS.get(str(cap.get("device_class")), (3300, ""))
        units = units or UNITS.get(str(cap.get("unit")), str(cap.get("unit", "")))
        self._add(
            object_id,
            {
                5700: Resource(read=self._state(cap["key"], _float)),
                5701: Resource(read=lambda: units),
            },
            cap["key"],
        )

    def _add_switch(self, cap: dict[str, Any]) -> None:
        key = cap["key"]
        self._add(3312, {5850: Resource(read=self._state(key, bool), write=_switch(key))}, key)

    def _add_light(self, cap: dict[str, Any], object_id: int = 3311) -> None:
        key, model = cap["key"], self.model

        def light() -> dict[str, Any]:
            value = model.state.get(key)
            return value if isinstance(value, dict) else {"on": bool(value), "brightness": 255}

        def dimmer(value: Value) -> Effect:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
                raise Lwm2mError("4.00", f"dimmer takes 0-100, got {value!r}")
            brightness = round(value * 255 / 100)
            if light()["on"]:
                return Command(key, "turn_on", {"brightness": brightness})
            # A dimmed-off light keeps its level for the next turn_on: no command to run.
            return lambda: model.state.__setitem__(key, {"on": False, "brightness": brightness})

        self._add(
            object_id,
            {
                5850: Resource(read=lambda: bool(light()["on"]), write=_switch(key)),
                5851: Resource(read=lambda: round(light()["brightness"] * 100 / 255), write=dimmer),
            },
            key,
        )

    def _add_number(self, cap: dict[str, Any]) -> None:
        key = cap["key"]
        units = UNITS.get(str(cap.get("unit")), str(cap.get("unit", "")))

        def write(value: Value) -> Effect:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise Lwm2mError("4.00", f"set point takes a number, got {value!r}")
            return Command(key, "set", {"value": value})

        self._add(
            3308,
            {
                5900: Resource(read=self._state(key, _float), write=write),
                5701: Resource(read=lambda: units),
            },
            key,
        )


def showcase_node(device_id: str = "showcase1") -> DeviceModel:
    """One instance of each IPSO object IoT Bridge maps that the other models lack."""
    return DeviceModel(
        device_id=device_id,
        name="Showcase",
        manufacturer="IoT Bridge",
        model="SC-1",
        sw_version="1.0.0",
        capabilities=[
            {"kind": "sensor", "key": "signal", "lwm2m_object": 4},
            {"kind": "binary_sensor", "key": "input", "lwm2m_object": 3200},
            {"kind": "switch", "key": "output", "lwm2m_object": 3201},
            {"kind": "sensor", "key": "analog", "lwm2m_object": 3202},
            {"kind": "binary_sensor", "key": "presence", "lwm2m_object": 3302},
            {"kind": "sensor", "key": "power", "lwm2m_object": 3305},
            {"kind": "light", "key": "actuator", "lwm2m_object": 3306},
            {"kind": "device_tracker", "key": "position", "lwm2m_object": 3336},
            {"kind": "binary_sensor", "key": "on_off", "lwm2m_object": 3342},
            {"kind": "event", "key": "button", "lwm2m_object": 3347},
        ],
        state={
            "signal": -70,
            "input": False,
            "output": False,
            "analog": 1.5,
            "presence": False,
            "power": 100.0,
            "power_energy": 1000.0,
            "actuator": {"on": False, "brightness": 255},
            "position": {"latitude": 48.85, "longitude": 2.35},
            "on_off": False,
            "button": 0,
        },
    )


def _float(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _switch(key: str) -> Writer:
    def write(value: Value) -> Effect:
        if not isinstance(value, bool):
            raise Lwm2mError("4.00", f"on/off takes a boolean, got {value!r}")
        return Command(key, "turn_on" if value else "turn_off")

    return write


def registry_version(object_id: int) -> str | None:
    """The object's version to announce at registration (None for 1.0 and unknown objects)."""
    definition = default_registry().object(object_id)
    return None if definition is None or definition.version == "1.0" else definition.version
