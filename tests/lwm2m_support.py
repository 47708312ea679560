"""Hypothesis strategies and example counts shared by the LwM2M data-layer tests.

Example counts come from tests/fuzz_settings.py (IOT_BRIDGE_FUZZ_EXAMPLES for a long run).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from custom_components.iot_bridge.core.lwm2m import (
    LwM2MPath,
    ObjectLink,
    ResourceDefinition,
    ResourceType,
    Value,
    default_registry,
)
from custom_components.iot_bridge.core.lwm2m.values import INT64_MAX, INT64_MIN, UINT64_MAX

from .fuzz_settings import property_settings

ROUND_TRIP = property_settings(60)
FUZZ = property_settings(300)

REGISTRY = default_registry()
# Object ids the registry does not define (vendor range).
UNKNOWN_OBJECT_IDS = st.integers(20000, 42000)

VALUES_BY_TYPE: dict[ResourceType, st.SearchStrategy[Any]] = {
    ResourceType.STRING: st.text(max_size=30),
    ResourceType.CORELNK: st.text(max_size=30),
    ResourceType.INTEGER: st.integers(INT64_MIN, INT64_MAX),
    ResourceType.TIME: st.integers(INT64_MIN, INT64_MAX),
    ResourceType.UNSIGNED: st.integers(0, UINT64_MAX),
    ResourceType.FLOAT: st.floats(allow_nan=False, allow_infinity=False),
    ResourceType.BOOLEAN: st.booleans(),
    ResourceType.OPAQUE: st.binary(max_size=40),
    ResourceType.OBJLNK: st.builds(ObjectLink, st.integers(0, 65535), st.integers(0, 65535)),
}
# What each format keeps exactly at a path the registry does not know (the format itself
# carries the type): the round trip of unknown paths draws from these.
ANY_UNTYPED = st.one_of(
    VALUES_BY_TYPE[ResourceType.STRING],
    VALUES_BY_TYPE[ResourceType.INTEGER],
    VALUES_BY_TYPE[ResourceType.FLOAT],
    VALUES_BY_TYPE[ResourceType.BOOLEAN],
    VALUES_BY_TYPE[ResourceType.OPAQUE],
    VALUES_BY_TYPE[ResourceType.OBJLNK],
)
UNTYPED_BY_FORMAT: dict[str, st.SearchStrategy[Any]] = {
    "text": VALUES_BY_TYPE[ResourceType.STRING],
    "opaque": VALUES_BY_TYPE[ResourceType.OPAQUE],
    "cbor": st.one_of(
        VALUES_BY_TYPE[ResourceType.STRING],
        VALUES_BY_TYPE[ResourceType.INTEGER],
        VALUES_BY_TYPE[ResourceType.FLOAT],
        VALUES_BY_TYPE[ResourceType.BOOLEAN],
        VALUES_BY_TYPE[ResourceType.OPAQUE],
    ),
    "senml": ANY_UNTYPED,
    "lwm2m_json": st.one_of(
        VALUES_BY_TYPE[ResourceType.STRING],
        VALUES_BY_TYPE[ResourceType.INTEGER],
        VALUES_BY_TYPE[ResourceType.FLOAT],
        VALUES_BY_TYPE[ResourceType.BOOLEAN],
        VALUES_BY_TYPE[ResourceType.OBJLNK],
    ),
}


def _valued_resources() -> list[tuple[int, ResourceDefinition]]:
    return [
        (definition.object_id, resource)
        for definition in REGISTRY
        for resource in definition.resources.values()
        if resource.type is not ResourceType.NONE
    ]


KNOWN_RESOURCES = _valued_resources()
KNOWN_OBJECT_IDS = sorted({object_id for object_id, _ in KNOWN_RESOURCES})


@st.composite
def resource_values(
    draw: st.DrawFn,
    prefix: tuple[int, ...],
    value_for: Callable[[tuple[int, ...]], st.SearchStrategy[Any]],
) -> dict[LwM2MPath, Value]:
    """Values of one resource: a single value or a few resource instances."""
    if len(prefix) == 4 or (len(prefix) == 3 and draw(st.booleans())):
        return {LwM2MPath(*prefix): draw(value_for(prefix))}
    instance_ids = draw(st.lists(st.integers(0, 65535), min_size=1, max_size=3, unique=True))
    return {LwM2MPath(*prefix, i): draw(value_for(prefix)) for i in instance_ids}


def _value_strategy(unknown: st.SearchStrategy[Any]) -> Callable[[tuple[int, ...]], Any]:
    def value_for(ids: tuple[int, ...]) -> st.SearchStrategy[Any]:
        resource_type = REGISTRY.resource_type(LwM2MPath(*ids[:3]))
        return unknown if resource_type is None else VALUES_BY_TYPE[resource_type]

    return value_for


@st.composite
def values_below(
    draw: st.DrawFn,
    base_depth: int,
    *,
    known: bool,
    unknown_values: st.SearchStrategy[Any] = ANY_UNTYPED,
) -> tuple[LwM2MPath, dict[LwM2MPath, Value]]:
    """A base path of the given depth and a flat set of values below (or at) it.

    known=True draws objects and resources from the registry, known=False vendor ids it
    does not define.
    """
    value_for = _value_strategy(unknown_values)
    object_id = draw(st.sampled_from(KNOWN_OBJECT_IDS) if known else UNKNOWN_OBJECT_IDS)
    resource_ids = (
        st.sampled_from(
            [resource.resource_id for oid, resource in KNOWN_RESOURCES if oid == object_id]
        )
        if known
        else st.integers(0, 65535)
    )
    base_ids: tuple[int, ...] = (object_id, draw(st.integers(0, 65534)))[: max(base_depth, 1)]
    if base_depth >= 3:
        base_ids = (*base_ids, draw(resource_ids))
    if base_depth == 4:
        base_ids = (*base_ids, draw(st.integers(0, 65535)))
    if base_depth >= 3:
        return LwM2MPath(*base_ids), draw(resource_values(base_ids, value_for))
    values: dict[LwM2MPath, Value] = {}
    instances = (
        [base_ids[1]]
        if base_depth == 2
        else draw(st.lists(st.integers(0, 65534), min_size=1, max_size=3, unique=True))
    )
    for instance in instances:
        for resource_id in draw(st.lists(resource_ids, min_size=1, max_size=5, unique=True)):
            values |= draw(resource_values((object_id, instance, resource_id), value_for))
    return LwM2MPath(*base_ids[:base_depth]), values
