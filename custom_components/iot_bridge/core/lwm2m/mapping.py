"""From LwM2M objects to capabilities: which entity each object instance becomes.

The table is data (entities.json); this module reads it and turns a client's object
instances and resource values into `Capability` objects plus a `Binding` per capability
that knows which resources feed its state and how a command becomes an LwM2M operation.
Objects without a rule still appear: their readable resources as diagnostic sensors and,
where the registry says so, their executable resources as buttons.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any, Final

from ..model import Capability, CapabilityKind, DeviceInfo
from .paths import LwM2MPath
from .registry import ObjectRegistry, default_registry
from .values import ObjectLink, ResourceType, Value

MISSING: Final = object()
_CONFIRMABLE: Final = frozenset(
    {CapabilityKind.LOCK, CapabilityKind.SWITCH, CapabilityKind.LIGHT, CapabilityKind.NUMBER}
)


class Method(StrEnum):
    """The LwM2M operation a command becomes."""

    EXECUTE = "execute"
    WRITE = "write"


@dataclass(frozen=True, slots=True)
class Expectation:
    """What the device must report for a command to count as carried out."""

    path: LwM2MPath
    value: Value

    def met_by(self, value: object) -> bool:
        """Whether a reported value is the expected one (numbers within rounding)."""
        expected = self.value
        if isinstance(expected, bool) or isinstance(value, bool):
            return _as_bool(value) is _as_bool(expected)
        if isinstance(expected, int | float) and isinstance(value, int | float):
            return math.isclose(expected, value, rel_tol=1e-6, abs_tol=1e-6)
        return value == expected


@dataclass(frozen=True, slots=True)
class Operation:
    """One LwM2M request that carries out a command."""

    method: Method
    path: LwM2MPath
    # Execute: the argument list as sent ("1", "0='x'"); Write: the values to write.
    arguments: str = ""
    values: Mapping[LwM2MPath, Value] = field(default_factory=dict)
    expect: Expectation | None = None

    @property
    def repeatable(self) -> bool:
        """Whether sending it twice is harmless: a Write sets a value, an Execute acts."""
        return self.method is Method.WRITE


@dataclass(frozen=True, slots=True)
class Rule:
    """One line of entities.json: an entity an object instance becomes."""

    kind: CapabilityKind
    resource: int
    name: str | None = None
    name_resource: int | None = None
    device_class: str | None = None
    unit: str | None = None
    unit_resource: int | None = None
    state_class: str | None = None
    category: str | None = None
    enabled: bool = True
    dimmer: int | None = None
    longitude: int | None = None
    control: int | None = None
    open_object: int | None = None
    confirm: tuple[int, Value] | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class Binding:
    """A capability and the LwM2M resources behind it."""

    capability: Capability
    instance: LwM2MPath
    rule: Rule | None = None
    resource: int | None = None  # for rule-less (fallback) capabilities
    # The paired door of a lock (same instance id), when the client has one: "open".
    open_instance: LwM2MPath | None = None
    # Resources whose values make up the capability's state: asked for on every
    # notification, so computed once (it was ~15 % of handling a notification).
    state_paths: tuple[LwM2MPath, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "state_paths", self._state_paths())

    def _state_paths(self) -> tuple[LwM2MPath, ...]:
        rule = self.rule
        if rule is None:
            if self.capability.kind is CapabilityKind.BUTTON or self.resource is None:
                return ()
            return (self.instance.child(self.resource),)
        return rule_state_paths(self.instance, rule)

    def state(self, values: Mapping[LwM2MPath, Value]) -> Any:
        """The capability's state from resource values; MISSING if they do not say."""
        rule = self.rule
        main = _value_at(values, self.state_paths[0]) if self.state_paths else MISSING
        if main is MISSING:
            return MISSING
        if rule is None:
            return _plain(main)
        if rule.kind is CapabilityKind.LOCK:
            return "locked" if _as_bool(main) else "unlocked"
        if rule.kind is CapabilityKind.LIGHT:
            dimmer = values.get(self.instance.child(rule.dimmer)) if rule.dimmer else None
            brightness = None
            if isinstance(dimmer, int | float) and not isinstance(dimmer, bool):
                brightness = round(max(0.0, min(100.0, float(dimmer))) * 255 / 100)
            return {"on": _as_bool(main), "brightness": brightness}
        if rule.kind is CapabilityKind.DEVICE_TRACKER and rule.longitude is not None:
            longitude = values.get(self.instance.child(rule.longitude), MISSING)
            if longitude is MISSING:
                return MISSING
            return {"latitude": main, "longitude": longitude}
        return _plain(main)

    def operation(self, action: str, params: Mapping[str, Any]) -> Operation:
        """The LwM2M request for a command (actions were validated against the kind)."""
        rule = self.rule
        kind = self.capability.kind
        if kind is CapabilityKind.BUTTON:
            resource = rule.resource if rule is not None else self.resource
            assert resource is not None
            expect = None
            if rule is not None and rule.confirm is not None:
                expect = Expectation(self.instance.child(rule.confirm[0]), rule.confirm[1])
            arguments = rule.arguments if rule is not None else ""
            return Operation(
                Method.EXECUTE, self.instance.child(resource), arguments=arguments, expect=expect
            )
        assert rule is not None  # only rule-backed capabilities take other commands
        state = self.instance.child(rule.resource)
        if kind is CapabilityKind.LOCK:
            return self._lock_operation(rule, state, action)
        if kind is CapabilityKind.NUMBER:
            value = float(params["value"])
            return Operation(Method.WRITE, state, values={state: value}, expect=_exp(state, value))
        on = action == "turn_on"
        values: dict[LwM2MPath, Value] = {state: on}
        if kind is CapabilityKind.LIGHT and on and "brightness" in params and rule.dimmer:
            dimmer = round(float(params["brightness"]) * 100 / 255)
            values[self.instance.child(rule.dimmer)] = dimmer
        target = self.instance if len(values) > 1 else state
        return Operation(Method.WRITE, target, values=values, expect=_exp(state, on))

    def _lock_operation(self, rule: Rule, state: LwM2MPath, action: str) -> Operation:
        if action == "open":
            if self.open_instance is None:
                raise ValueError("this lock has no door to open (no Door object instance)")
            door = self.open_instance
            # The Door object's control: argument 1 opens (0 would close).
            return Operation(
                Method.EXECUTE,
                door.child(100),
                arguments="1",
                expect=Expectation(door.child(50), True),
            )
        assert rule.control is not None
        lock = action == "lock"
        return Operation(
            Method.EXECUTE,
            self.instance.child(rule.control),
            arguments="1" if lock else "0",
            expect=Expectation(state, lock),
        )


def rule_state_paths(instance: LwM2MPath, rule: Rule) -> tuple[LwM2MPath, ...]:
    """Resources of an instance whose values make up the state of a rule's entity."""
    if rule.kind is CapabilityKind.BUTTON:
        return ()
    extra = (rule.dimmer, rule.longitude)
    ids = [rule.resource, *(resource for resource in extra if resource is not None)]
    return tuple(instance.child(resource) for resource in ids)


def _value_at(values: Mapping[LwM2MPath, Value], path: LwM2MPath) -> Any:
    """A resource's value; for a multiple resource (4/0/4 IP addresses) its first instance."""
    value = values.get(path, MISSING)
    if value is not MISSING:
        return value
    instances = [p for p in values if p.depth == 4 and p.parent == path]
    return values[min(instances)] if instances else MISSING


def _exp(path: LwM2MPath, value: Value) -> Expectation:
    return Expectation(path, value)


def _as_bool(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "on"}
    return bool(value)


def _plain(value: object) -> Any:
    """A resource value as the model holds it (links and bytes as text)."""
    if isinstance(value, ObjectLink):
        return str(value)
    if isinstance(value, bytes):
        return value.hex() if len(value) <= 64 else f"{len(value)} bytes"
    return value


@dataclass(frozen=True, slots=True)
class EntityTable:
    """The rules of entities.json, by object id."""

    rules: Mapping[int, tuple[Rule, ...]]
    units: Mapping[str, str]
    device_info: Mapping[str, LwM2MPath]
    # Objects about the LwM2M relationship itself (security, server accounts, ...).
    not_entities: frozenset[int] = frozenset()

    def unit(self, ucum: object) -> str | None:
        """Home Assistant's unit for a UCUM unit a device reports; None when unknown."""
        return self.units.get(ucum) if isinstance(ucum, str) else None


def _rule(raw: Mapping[str, Any]) -> Rule:
    confirm = raw.get("confirm")
    return Rule(
        kind=CapabilityKind(raw["kind"]),
        resource=int(raw["resource"]),
        name=raw.get("name"),
        name_resource=raw.get("name_resource"),
        device_class=raw.get("device_class"),
        unit=raw.get("unit"),
        unit_resource=raw.get("unit_resource"),
        state_class=raw.get("state_class"),
        category=raw.get("category"),
        enabled=bool(raw.get("enabled", True)),
        dimmer=raw.get("dimmer"),
        longitude=raw.get("longitude"),
        control=raw.get("control"),
        open_object=raw.get("open_object"),
        confirm=(int(confirm["resource"]), confirm["value"]) if confirm else None,
        arguments=str(raw.get("arguments", "")),
    )


@cache
def entity_table() -> EntityTable:
    """The table shipped with IoT Bridge (read once)."""
    text = resources.files(__package__).joinpath("entities.json").read_text("utf-8")
    document = json.loads(text)
    rules = {
        int(entry["object"]): tuple(_rule(raw) for raw in entry["entities"])
        for entry in document["objects"]
    }
    info = {key: LwM2MPath.parse(path) for key, path in document["device_info"].items()}
    return EntityTable(
        rules=rules,
        units=dict(document["units"]),
        device_info=info,
        not_entities=frozenset(int(i) for i in document.get("not_entities", ())),
    )


def device_info(values: Mapping[LwM2MPath, Value], table: EntityTable | None = None) -> DeviceInfo:
    """Manufacturer, model, versions and serial from the Device object (3/0)."""
    table = table or entity_table()

    def text(key: str) -> str | None:
        value = values.get(table.device_info[key])
        return str(value)[:64] if isinstance(value, str | int | float) and value != "" else None

    return DeviceInfo(
        manufacturer=text("manufacturer"),
        model=text("model"),
        sw_version=text("sw_version"),
        hw_version=text("hw_version"),
        serial_number=text("serial_number"),
    )


def capability_key(instance: LwM2MPath, resource: int | None = None) -> str:
    """A capability key from a path: "3303_0" or "3303_0_5700"."""
    ids = (*instance.ids, resource) if resource is not None else instance.ids
    return "_".join(str(i) for i in ids)


class Mapper:
    """Builds a client's bindings from its object instances and what they read back."""

    def __init__(
        self, registry: ObjectRegistry | None = None, table: EntityTable | None = None
    ) -> None:
        self.registry = registry or default_registry()
        self.table = table or entity_table()

    def shown(self, object_id: int) -> bool:
        """Whether an object can become entities at all (not Security, Server, ...)."""
        return object_id not in self.table.not_entities

    def mapped(self, object_id: int) -> bool:
        """Whether the table has rules for the object."""
        return object_id in self.table.rules

    def bindings(
        self,
        instances: Iterable[LwM2MPath],
        values: Mapping[LwM2MPath, Value],
        observed: frozenset[LwM2MPath] = frozenset(),
    ) -> list[Binding]:
        """Every capability of the client; `observed`: instances whose observation holds
        (a fallback sensor of such an instance is enabled: it has live values)."""
        instances = sorted(instances)
        counts: dict[int, int] = {}
        for instance in instances:
            object_id = instance.object_id
            assert object_id is not None
            counts[object_id] = counts.get(object_id, 0) + 1
        present = set(instances)
        result: list[Binding] = []
        for instance in instances:
            object_id = instance.object_id
            assert object_id is not None
            if object_id in self.table.not_entities:
                continue
            several = counts[object_id] > 1
            rules = self.table.rules.get(object_id)
            if rules is None:
                result += self._fallback(instance, values, instance in observed)
                continue
            for rule in rules:
                result.append(self._binding(instance, rule, values, several, present))
        return result

    def _binding(
        self,
        instance: LwM2MPath,
        rule: Rule,
        values: Mapping[LwM2MPath, Value],
        several: bool,
        present: set[LwM2MPath],
    ) -> Binding:
        key = (
            capability_key(instance)
            if rule.kind in (CapabilityKind.LOCK, CapabilityKind.LIGHT)
            else capability_key(instance, rule.resource)
        )
        unit = rule.unit
        if rule.unit_resource is not None:
            unit = self.table.unit(values.get(instance.child(rule.unit_resource))) or unit
        open_instance = None
        if rule.open_object is not None:
            door = LwM2MPath(rule.open_object, instance.instance_id or 0)
            open_instance = door if door in present else None
        capability = Capability(
            kind=rule.kind,
            key=key,
            name=self._name(instance, rule, values, several),
            device_class=rule.device_class,
            unit=unit,
            state_class=rule.state_class,
            confirmable=rule.kind in _CONFIRMABLE or rule.confirm is not None,
            category=rule.category,
            enabled_by_default=rule.enabled,
            **self._range(instance, rule),
        )
        return Binding(capability, instance, rule, open_instance=open_instance)

    def _name(
        self, instance: LwM2MPath, rule: Rule, values: Mapping[LwM2MPath, Value], several: bool
    ) -> str | None:
        if rule.name_resource is not None:
            given = values.get(instance.child(rule.name_resource))
            if isinstance(given, str) and given.strip():
                base = given.strip()[:48]
                return f"{base} {rule.name}" if rule.name else base
        definition = self.registry.object(instance.object_id or 0)
        name = rule.name or (definition.name if definition is not None else None)
        if name is None:
            return None
        if rule.name is None and rule.device_class is not None and not several:
            return None  # Home Assistant names it after its device class
        return f"{name} {instance.instance_id}" if several else name

    def _range(self, instance: LwM2MPath, rule: Rule) -> dict[str, Any]:
        if rule.kind is not CapabilityKind.NUMBER:
            return {}
        definition = self.registry.resource(instance.child(rule.resource))
        if definition is None or definition.range is None:
            return {}
        low, high = definition.range
        return {"minimum": low, "maximum": high}

    def _fallback(
        self, instance: LwM2MPath, values: Mapping[LwM2MPath, Value], observed: bool
    ) -> list[Binding]:
        """An object nobody mapped: what it reads back, and what the registry says runs."""
        result: list[Binding] = []
        readable = sorted(
            {p.resource_id for p in values if p.startswith(instance) and p.resource_id is not None}
        )
        definition = self.registry.object(instance.object_id or 0)
        prefix = definition.name if definition is not None else f"Object {instance.object_id}"
        for resource in readable:
            resource_definition = self.registry.resource(instance.child(resource))
            label = resource_definition.name if resource_definition else f"resource {resource}"
            numeric = isinstance(values.get(instance.child(resource)), int | float)
            result.append(
                Binding(
                    Capability(
                        kind=CapabilityKind.SENSOR,
                        key=capability_key(instance, resource),
                        name=f"{prefix} {instance.instance_id} {label}",
                        state_class="measurement" if numeric else None,
                        category="diagnostic",
                        enabled_by_default=observed,
                    ),
                    instance,
                    resource=resource,
                )
            )
        if definition is not None:
            for resource_definition in definition.resources.values():
                if resource_definition.type is not ResourceType.NONE:
                    continue
                resource = resource_definition.resource_id
                result.append(
                    Binding(
                        Capability(
                            kind=CapabilityKind.BUTTON,
                            key=capability_key(instance, resource),
                            name=f"{prefix} {instance.instance_id} {resource_definition.name}",
                            category="config",
                        ),
                        instance,
                        resource=resource,
                    )
                )
        return result
