"""LwM2M paths, values and the object registry (core/lwm2m: paths, values, registry)."""

from __future__ import annotations

import json
import math
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from custom_components.iot_bridge.core.lwm2m import (
    ROOT,
    CodecError,
    LwM2MPath,
    ObjectDefinition,
    ObjectLink,
    ObjectRegistry,
    Operations,
    PathError,
    RegistryError,
    ResourceType,
    ValueTypeError,
    default_registry,
)
from custom_components.iot_bridge.core.lwm2m.values import EpochTime, coerce

from .lwm2m_support import ROUND_TRIP

IDS = st.lists(st.integers(0, 65534), max_size=4)

# Paths


@ROUND_TRIP
@given(ids=IDS)
def test_path_text_round_trip(ids: list[int]) -> None:
    """str() and parse() are inverse, and the parts land in the right properties."""
    path = LwM2MPath(*ids)
    assert LwM2MPath.parse(str(path)) == path
    assert path.ids == tuple(ids)
    assert path.depth == len(ids)
    padded = [*ids, None, None, None, None]
    assert (path.object_id, path.instance_id, path.resource_id, path.resource_instance_id) == (
        tuple(padded[:4])
    )
    assert hash(path) == hash(LwM2MPath.parse(str(path)))
    assert pickle.loads(pickle.dumps(path)) == path


@ROUND_TRIP
@given(first=IDS, second=IDS)
def test_paths_order_like_their_ids(first: list[int], second: list[int]) -> None:
    """Ordering follows the id tuples: a parent sorts right before its children."""
    a, b = LwM2MPath(*first), LwM2MPath(*second)
    assert (a < b) == (tuple(first) < tuple(second))
    assert (a <= b) == (tuple(first) <= tuple(second))
    assert (a > b) == (tuple(first) > tuple(second))
    assert (a >= b) == (tuple(first) >= tuple(second))
    assert a.startswith(b) == (tuple(first[: len(second)]) == tuple(second))


def test_path_navigation() -> None:
    """Root, child, parent and level names."""
    path = LwM2MPath.parse("/3/0/7/1")
    assert str(path) == "/3/0/7/1"
    assert repr(path) == "LwM2MPath('/3/0/7/1')"
    assert path.level_name == "resource instance"
    assert path.parent == LwM2MPath(3, 0, 7)
    assert LwM2MPath(3).child(0) == LwM2MPath(3, 0)
    assert LwM2MPath.parse("/") == ROOT
    assert str(ROOT) == "/"
    assert ROOT.level_name == "root"
    assert ROOT.parent == ROOT
    assert path.startswith(ROOT)
    assert LwM2MPath(3, 0) != "/3/0"
    assert sorted([LwM2MPath(3, 0, 1), LwM2MPath(3), LwM2MPath(3, 0)]) == [
        LwM2MPath(3),
        LwM2MPath(3, 0),
        LwM2MPath(3, 0, 1),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must start with '/'"),
        ("3/0", "must start with '/'"),
        ("/a", "'a' is not a decimal id"),
        ("/3//1", "'' is not a decimal id"),
        ("/3/0/", "'' is not a decimal id"),
        ("/03", "'03' is not a decimal id"),
        ("/-1", "'-1' is not a decimal id"),
        ("/+1", "'\\+1' is not a decimal id"),
        ("/ 3", "is not a decimal id"),
        ("/３", "is not a decimal id"),  # noqa: RUF001 (a full-width digit int() accepts)
        ("/1_0", "is not a decimal id"),
        ("/65536", "object id 65536 is outside 0..65535"),
        ("/3/65535", "instance id 65535 is outside 0..65534"),
        ("/3/0/65536", "resource id 65536 is outside"),
        ("/3/0/1/2/3", "more than 4 ids"),
        ("/1/2/3/4/5/6/7/8/9", "more than 4 ids"),
    ],
)
def test_bad_paths_are_refused(text: str, message: str) -> None:
    """Each malformed path raises PathError saying what is wrong."""
    with pytest.raises(PathError, match=message):
        LwM2MPath.parse(text)


def test_path_construction_checks_ids() -> None:
    """Ids are checked on construction too; paths are immutable."""
    with pytest.raises(PathError, match="at most 4 ids"):
        LwM2MPath(1, 2, 3, 4, 5)
    with pytest.raises(PathError, match="must be an int"):
        LwM2MPath(True)
    with pytest.raises(PathError, match="must be an int"):
        LwM2MPath("3")  # type: ignore[arg-type]
    with pytest.raises(PathError, match="-1 is outside"):
        LwM2MPath(-1)
    assert LwM2MPath(65535, 65534, 65535, 65535).ids == (65535, 65534, 65535, 65535)
    with pytest.raises(AttributeError):
        LwM2MPath(3).anything = 1


# Values


def test_object_link_text() -> None:
    """Objlnk values read and write as "object:instance"."""
    assert ObjectLink.parse("3:0") == ObjectLink(3, 0)
    assert str(ObjectLink(65535, 65535)) == "65535:65535"
    for bad in ("3", "3:", ":0", "3:0:1", "a:b", "65536:0", " 3:0", "3:0 "):
        with pytest.raises(ValueTypeError):
            ObjectLink.parse(bad)
    with pytest.raises(ValueTypeError, match="object link ids"):
        ObjectLink(-1, 0)
    with pytest.raises(ValueTypeError, match="object link ids"):
        ObjectLink(True, 0)


PATH = LwM2MPath(3303, 0, 5700)


@pytest.mark.parametrize(
    ("resource_type", "raw", "expected"),
    [
        (ResourceType.INTEGER, 21.0, 21),
        (ResourceType.INTEGER, -(2**63), -(2**63)),
        (ResourceType.UNSIGNED, 2**64 - 1, 2**64 - 1),
        (ResourceType.TIME, 1700000000.0, 1700000000),
        (ResourceType.TIME, EpochTime(1700000000), 1700000000),
        (ResourceType.FLOAT, 21, 21.0),
        (ResourceType.FLOAT, 21.5, 21.5),
        (ResourceType.BOOLEAN, True, True),
        (ResourceType.BOOLEAN, 1, True),
        (ResourceType.BOOLEAN, 0.0, False),
        (ResourceType.STRING, "x", "x"),
        (ResourceType.CORELNK, "</3/0>", "</3/0>"),
        (ResourceType.OPAQUE, b"\x00", b"\x00"),
        (ResourceType.OBJLNK, "3:0", ObjectLink(3, 0)),
        (ResourceType.OBJLNK, ObjectLink(1, 2), ObjectLink(1, 2)),
        (None, EpochTime(5), 5),
        (None, 2**64 - 1, 2**64 - 1),
        (None, "s", "s"),
        (None, 1.5, 1.5),
    ],
)
def test_coerce_accepts_values_that_lose_nothing(
    resource_type: ResourceType | None, raw: object, expected: object
) -> None:
    """Numbers cross int/float only where the value survives; the type is canonical."""
    value = coerce(resource_type, raw, PATH)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("resource_type", "raw", "message"),
    [
        (ResourceType.FLOAT, "21", "value of wrong type for /3303/0/5700: float expected, got str"),
        (ResourceType.FLOAT, True, "float expected, got bool"),
        (ResourceType.FLOAT, math.nan, "nan is not allowed, LwM2M floats are finite"),
        (ResourceType.FLOAT, math.inf, "inf is not allowed"),
        (ResourceType.FLOAT, 2**70, "too large for a float resource"),
        (ResourceType.INTEGER, 21.5, "21.5 is not a whole number"),
        (ResourceType.INTEGER, math.inf, "not allowed"),
        (ResourceType.INTEGER, 2**63, "outside the integer range"),
        (ResourceType.INTEGER, False, "integer expected, got bool"),
        (ResourceType.UNSIGNED, -1, "outside the unsigned range"),
        (ResourceType.TIME, "now", "time expected, got str"),
        (ResourceType.BOOLEAN, 2, "boolean expected, got int"),
        (ResourceType.STRING, b"x", "string expected, got bytes"),
        (ResourceType.STRING, "\ud800", "not valid Unicode"),
        (ResourceType.OPAQUE, "x", "opaque expected, got str"),
        (ResourceType.OBJLNK, "3-0", "not 'object:instance'"),
        (ResourceType.OBJLNK, 3, "objlnk expected, got int"),
        (ResourceType.NONE, b"", "is executable and carries no value"),
        (None, None, "NoneType is not an LwM2M value"),
        (None, [1], "list is not an LwM2M value"),
        (None, math.nan, "not allowed"),
        (None, 2**64, "outside the integer range"),
        (None, "\udfff", "not valid Unicode"),
        (ResourceType.INTEGER, "y" * 100, r"got str 'y{36}\.\.\.$"),  # Long values shortened.
    ],
)
def test_coerce_refuses_wrong_values(
    resource_type: ResourceType | None, raw: object, message: str
) -> None:
    """Each mismatch is a ValueTypeError naming the path and what was expected."""
    with pytest.raises(ValueTypeError, match=message):
        coerce(resource_type, raw, PATH)


# Registry

LISTED_OBJECTS = [1, 3, 4, 5, 3200, 3201, 3202, 3300, 3301, 3303, 3304, 3305, 3306, 3308]
LISTED_OBJECTS += [3311, 3312, 3315, 3323, 3328, 3331, 3336, 3342, 3347, 10351, 10359]


@pytest.mark.parametrize("object_id", LISTED_OBJECTS)
def test_every_listed_object_loads(object_id: int) -> None:
    """Each object the server maps is in the registry with resources."""
    definition = default_registry().object(object_id)
    assert definition is not None
    assert definition.object_id == object_id
    assert definition.name
    assert definition.resources
    assert all(rid == r.resource_id for rid, r in definition.resources.items())


@pytest.mark.parametrize(
    ("path", "resource_type", "operations", "multiple"),
    [
        ("/3/0/0", ResourceType.STRING, Operations.R, False),
        ("/3/0/4", ResourceType.NONE, Operations.E, False),
        ("/3/0/6", ResourceType.INTEGER, Operations.R, True),
        ("/3/0/9", ResourceType.INTEGER, Operations.R, False),
        ("/3/0/13", ResourceType.TIME, Operations.RW, False),
        ("/3/0/22", ResourceType.OBJLNK, Operations.R, True),
        ("/1/0/1", ResourceType.INTEGER, Operations.RW, False),
        ("/1/0/11", ResourceType.UNSIGNED, Operations.R, False),
        ("/4/0/2", ResourceType.INTEGER, Operations.R, False),
        ("/4/0/4", ResourceType.STRING, Operations.R, True),
        ("/5/0/0", ResourceType.OPAQUE, Operations.W, False),
        ("/5/0/2", ResourceType.NONE, Operations.E, False),
        ("/3200/0/5500", ResourceType.BOOLEAN, Operations.R, False),
        ("/3201/0/5550", ResourceType.BOOLEAN, Operations.RW, False),
        ("/3202/0/5600", ResourceType.FLOAT, Operations.R, False),
        ("/3303/0/5700", ResourceType.FLOAT, Operations.R, False),
        ("/3303/0/5701", ResourceType.STRING, Operations.R, False),
        ("/3305/0/5800", ResourceType.FLOAT, Operations.R, False),
        ("/3306/0/5850", ResourceType.BOOLEAN, Operations.RW, False),
        ("/3308/0/5900", ResourceType.FLOAT, Operations.RW, False),
        ("/3311/0/5850", ResourceType.BOOLEAN, Operations.RW, False),
        ("/3311/0/5851", ResourceType.INTEGER, Operations.RW, False),
        ("/3311/0/5706", ResourceType.STRING, Operations.RW, False),
        ("/3312/0/5850", ResourceType.BOOLEAN, Operations.RW, False),
        ("/3336/0/6051", ResourceType.FLOAT, Operations.R, False),
        ("/3336/0/6052", ResourceType.FLOAT, Operations.R, False),
        ("/3342/0/5500", ResourceType.BOOLEAN, Operations.R, False),
        ("/3347/0/5500", ResourceType.BOOLEAN, Operations.R, False),
        ("/3347/0/5501", ResourceType.INTEGER, Operations.R, False),
        ("/10351/0/50", ResourceType.BOOLEAN, Operations.R, False),
        ("/10351/0/100", ResourceType.NONE, Operations.E, False),
        ("/10359/0/1", ResourceType.STRING, Operations.R, False),
        ("/10359/0/50", ResourceType.BOOLEAN, Operations.R, False),
        ("/10359/0/100", ResourceType.NONE, Operations.E, False),
    ],
)
def test_key_resources(
    path: str, resource_type: ResourceType, operations: Operations, multiple: bool
) -> None:
    """The resources the server maps to entities have the registry's type and operations."""
    registry = default_registry()
    definition = registry.resource(LwM2MPath.parse(path))
    assert definition is not None
    assert (definition.type, definition.operations, definition.multiple) == (
        resource_type,
        operations,
        multiple,
    )
    assert registry.resource_type(LwM2MPath.parse(path)) is resource_type
    # A resource-instance path has its resource's definition.
    assert registry.resource(LwM2MPath.parse(path).child(0)) is definition


def test_units_ranges_and_operation_flags() -> None:
    """Units and ranges come with the resources that have them."""
    registry = default_registry()
    battery = registry.resource(LwM2MPath(3, 0, 9))
    assert battery is not None
    assert (battery.units, battery.range, battery.mandatory) == ("/100", (0, 100), False)
    power = registry.resource(LwM2MPath(3305, 0, 5800))
    assert power is not None
    assert (power.units, power.range, power.mandatory) == ("W", None, True)
    flags = {op: (op.readable, op.writable, op.executable) for op in Operations}
    assert flags == {
        Operations.NONE: (False, False, False),
        Operations.R: (True, False, False),
        Operations.W: (False, True, False),
        Operations.RW: (True, True, False),
        Operations.E: (False, False, True),
    }
    device = registry.object(3)
    assert device is not None
    assert (device.multiple, device.mandatory, device.version) == (False, True, "1.2")
    assert device.resource(9) is battery
    assert device.resource(999) is None
    lock = registry.object(10359)
    assert lock is not None
    assert lock.multiple


def test_unknown_objects_and_short_paths_answer_none() -> None:
    """Lookups never raise: vendor objects are normal."""
    registry = default_registry()
    assert registry.object(31024) is None
    assert registry.resource(LwM2MPath(31024, 0, 1)) is None
    assert registry.resource(LwM2MPath(3, 0, 9999)) is None
    assert registry.resource(LwM2MPath(3, 0)) is None
    assert registry.resource(ROOT) is None
    assert registry.resource_type(LwM2MPath(31024, 0, 1)) is None
    assert len(registry) >= len(LISTED_OBJECTS)
    assert [d.object_id for d in registry] == sorted(d.object_id for d in registry)
    assert default_registry() is registry  # Loaded once.


def test_registry_file_is_facts_in_our_format() -> None:
    """objects.json holds only the documented keys (no copied descriptions)."""
    from custom_components.iot_bridge.core.lwm2m.registry import OBJECTS_FILE

    document = json.loads(OBJECTS_FILE.read_text())
    object_keys = {"id", "name", "version", "multiple", "mandatory", "resources"}
    resource_keys = {"id", "name", "type", "operations", "multiple", "mandatory"}
    for obj in document["objects"]:
        assert set(obj) == object_keys
        for resource in obj["resources"]:
            assert resource_keys <= set(resource) <= resource_keys | {"units", "range"}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("not json", "malformed"),
        ('{"objects": [{"id": 1}]}', "malformed: KeyError"),
        (
            '{"objects": [{"id": 1, "name": "a", "version": "1.0", "multiple": true,'
            ' "mandatory": false, "resources": []}, {"id": 1, "name": "a", "version": "1.0",'
            ' "multiple": true, "mandatory": false, "resources": []}]}',
            "object 1 is defined twice",
        ),
        (
            '{"objects": [{"id": 70000, "name": "a", "version": "1.0", "multiple": true,'
            ' "mandatory": false, "resources": []}]}',
            "id 70000 is not an int",
        ),
        (
            '{"objects": [{"id": 1, "name": 5, "version": "1.0", "multiple": true,'
            ' "mandatory": false, "resources": []}]}',
            "5 is not a string",
        ),
        (
            '{"objects": [{"id": 1, "name": "a", "version": "1.0", "multiple": "yes",'
            ' "mandatory": false, "resources": []}]}',
            "'yes' is not true or false",
        ),
        (
            '{"objects": [{"id": 1, "name": "a", "version": "1.0", "multiple": true,'
            ' "mandatory": false, "resources": [{"id": 0, "name": "r", "type": "none",'
            ' "operations": "R", "multiple": false, "mandatory": false}]}]}',
            "only executable resources have no type",
        ),
        (
            '{"objects": [{"id": 1, "name": "a", "version": "1.0", "multiple": true,'
            ' "mandatory": false, "resources": [{"id": 0, "name": "r", "type": "string",'
            ' "operations": "R", "multiple": false, "mandatory": false}, {"id": 0,'
            ' "name": "r", "type": "string", "operations": "R", "multiple": false,'
            ' "mandatory": false}]}]}',
            "resource 0 twice",
        ),
        (
            '{"objects": [{"id": 1, "name": "a", "version": "1.0", "multiple": true,'
            ' "mandatory": false, "resources": [{"id": 0, "name": "r", "type": "integer",'
            ' "operations": "R", "multiple": false, "mandatory": false, "range": ["a", 1]}]}]}',
            "range bound 'a' is not a number",
        ),
        (
            '{"objects": [{"id": 1, "name": "a", "version": "1.0", "multiple": true,'
            ' "mandatory": false, "resources": [{"id": 0, "name": "r", "type": "decimal",'
            ' "operations": "R", "multiple": false, "mandatory": false}]}]}',
            "malformed: ValueError",
        ),
    ],
)
def test_malformed_definitions_fail_clearly(document: str, message: str) -> None:
    """A broken definition file is a RegistryError (a CodecError) saying what is wrong."""
    with pytest.raises(RegistryError, match=message) as caught:
        ObjectRegistry.from_json(document)
    assert isinstance(caught.value, CodecError)


def test_custom_registry_with_defaults() -> None:
    """A registry can be built from definitions directly (e.g. a vendor's objects)."""
    registry = ObjectRegistry([ObjectDefinition(31024, "Vendor")])
    vendor = registry.object(31024)
    assert vendor is not None
    assert vendor.resource(0) is None
    assert registry.object(3) is None
