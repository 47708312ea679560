"""The LwM2M object registry as data: which objects and resources exist, and their types.

The definitions live in objects.json (facts from the OMA LwM2M registry). Unknown objects are
normal: devices carry vendor objects nobody registered, so lookups answer None, never raise.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from .errors import CodecError
from .paths import LwM2MPath
from .values import ResourceType

OBJECTS_FILE: Final = Path(__file__).with_name("objects.json")


class RegistryError(CodecError):
    """An object definition file is malformed."""


class Operations(StrEnum):
    """What a server may do with a resource; NONE: only a bootstrap server touches it."""

    NONE = "none"
    R = "R"
    W = "W"
    RW = "RW"
    E = "E"

    @property
    def readable(self) -> bool:
        """Read and Observe are allowed."""
        return "R" in self.value

    @property
    def writable(self) -> bool:
        """Write is allowed."""
        return "W" in self.value

    @property
    def executable(self) -> bool:
        """Execute is allowed."""
        return self is Operations.E


@dataclass(frozen=True, slots=True)
class ResourceDefinition:
    """One resource of an object, as the registry defines it."""

    resource_id: int
    name: str
    type: ResourceType
    operations: Operations
    multiple: bool = False
    mandatory: bool = False
    units: str | None = None
    # For numbers the value range; for strings and opaque values the length range.
    range: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True)
class ObjectDefinition:
    """One object of the registry with its resources."""

    object_id: int
    name: str
    version: str = "1.0"
    multiple: bool = False
    mandatory: bool = False
    resources: Mapping[int, ResourceDefinition] = field(
        default_factory=lambda: MappingProxyType({})
    )

    def resource(self, resource_id: int) -> ResourceDefinition | None:
        """The resource definition, or None when the object has no such resource."""
        return self.resources.get(resource_id)


class ObjectRegistry:
    """Object definitions by id; lookups of unknown objects or resources answer None."""

    def __init__(self, objects: Iterable[ObjectDefinition]) -> None:
        self._objects: dict[int, ObjectDefinition] = {}
        for definition in objects:
            if definition.object_id in self._objects:
                raise RegistryError(f"object {definition.object_id} is defined twice")
            self._objects[definition.object_id] = definition

    @classmethod
    def from_json(cls, text: str | bytes) -> ObjectRegistry:
        """Build a registry from the objects.json format."""
        try:
            document = json.loads(text)
            return cls(_object(raw) for raw in document["objects"])
        except RegistryError:
            raise
        except (KeyError, TypeError, ValueError) as err:
            raise RegistryError(f"object definitions are malformed: {err!r}") from err

    def object(self, object_id: int) -> ObjectDefinition | None:
        """The object definition, or None for an object the registry does not know."""
        return self._objects.get(object_id)

    def resource(self, path: LwM2MPath) -> ResourceDefinition | None:
        """The definition of the resource a resource or resource-instance path names."""
        if path.object_id is None or path.resource_id is None:
            return None
        definition = self._objects.get(path.object_id)
        return definition.resource(path.resource_id) if definition else None

    def resource_type(self, path: LwM2MPath) -> ResourceType | None:
        """The type of the resource at path, or None when the registry does not know it."""
        definition = self.resource(path)
        return definition.type if definition else None

    def __iter__(self) -> Iterator[ObjectDefinition]:
        return iter(sorted(self._objects.values(), key=lambda d: d.object_id))

    def __len__(self) -> int:
        return len(self._objects)


@functools.cache
def default_registry() -> ObjectRegistry:
    """The registry shipped in objects.json, loaded once."""
    return ObjectRegistry.from_json(OBJECTS_FILE.read_bytes())


def _object(raw: dict[str, Any]) -> ObjectDefinition:
    object_id = _id(raw["id"])
    resources: dict[int, ResourceDefinition] = {}
    for item in raw["resources"]:
        resource = _resource(item, object_id)
        if resource.resource_id in resources:
            raise RegistryError(f"object {object_id}: resource {resource.resource_id} twice")
        resources[resource.resource_id] = resource
    return ObjectDefinition(
        object_id=object_id,
        name=_text(raw["name"]),
        version=_text(raw["version"]),
        multiple=_flag(raw["multiple"]),
        mandatory=_flag(raw["mandatory"]),
        resources=MappingProxyType(resources),
    )


def _resource(raw: dict[str, Any], object_id: int) -> ResourceDefinition:
    resource_id = _id(raw["id"])
    resource_type = ResourceType(raw["type"])
    operations = Operations(raw["operations"])
    if (resource_type is ResourceType.NONE) != operations.executable:
        raise RegistryError(
            f"object {object_id} resource {resource_id}: only executable resources have no type"
        )
    low, high = raw.get("range") or (None, None)
    return ResourceDefinition(
        resource_id=resource_id,
        name=_text(raw["name"]),
        type=resource_type,
        operations=operations,
        multiple=_flag(raw["multiple"]),
        mandatory=_flag(raw["mandatory"]),
        units=_text(raw["units"]) if "units" in raw else None,
        range=None if low is None else (_number(low), _number(high)),
    )


def _id(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
        raise RegistryError(f"id {value!r} is not an int in 0..65535")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise RegistryError(f"{value!r} is not a string")
    return value


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise RegistryError(f"{value!r} is not true or false")
    return value


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RegistryError(f"range bound {value!r} is not a number")
    return value
