"""Path-addressed LwM2M operations an automation asks for (`iot_bridge.send_command`
without a capability): what each one needs, checked before anything goes on the wire.

This module only turns an action name and its parameters into a `RawOperation`; the
bridge sends it (bridge.py `operate`) and turns the answer into response data.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from ..bridge import OperationError, OperationFailure
from .paths import ROOT, LwM2MPath
from .registry import ObjectRegistry
from .values import ObjectLink, Value, coerce


class RawAction(StrEnum):
    """The LwM2M operations `send_command` offers, by the name an automation uses."""

    READ = "read"
    READ_COMPOSITE = "read_composite"
    WRITE = "write"
    WRITE_PARTIAL = "write_partial"
    EXECUTE = "execute"
    DISCOVER = "discover"
    WRITE_ATTRIBUTES = "write_attributes"
    OBSERVE = "observe"
    CANCEL_OBSERVE = "cancel_observe"
    CREATE = "create"
    DELETE = "delete"


# Notification attributes of LwM2M 1.0-1.2 (Write-Attributes).
_ATTRIBUTES: Final = frozenset({"pmin", "pmax", "gt", "lt", "st", "epmin", "epmax", "edge"})
# Path depths (object 1, instance 2, resource 3, resource instance 4) each action accepts.
_DEPTHS: Final[dict[RawAction, tuple[int, ...]]] = {
    RawAction.READ: (1, 2, 3, 4),
    RawAction.WRITE: (2, 3, 4),
    RawAction.WRITE_PARTIAL: (2, 3),
    RawAction.EXECUTE: (3,),
    RawAction.DISCOVER: (1, 2, 3),
    RawAction.WRITE_ATTRIBUTES: (1, 2, 3, 4),
    RawAction.OBSERVE: (1, 2, 3, 4),
    RawAction.CANCEL_OBSERVE: (1, 2, 3, 4),
    RawAction.CREATE: (1,),
    RawAction.DELETE: (2,),
}
_MAX_ARGUMENTS: Final = 1024
_MAX_PATHS: Final = 64
# LwM2M's Execute argument list: digit [ "=" "'" value "'" ], comma separated; a value is
# printable ASCII without quotes.
_ARGUMENT: Final = r"[0-9](='[ !#-&(-~]*')?"
_ARGUMENT_LIST: Final = re.compile(rf"{_ARGUMENT}(,{_ARGUMENT})*")


@dataclass(frozen=True, slots=True)
class RawOperation:
    """One checked operation: where, and what it carries."""

    action: RawAction
    path: LwM2MPath
    values: Mapping[LwM2MPath, Value] = field(default_factory=dict)
    arguments: str = ""
    query: tuple[str, ...] = ()
    # A Create that lets the client pick the instance id: `values` sit below instance 0.
    unnamed: bool = False
    # Read-Composite: the paths asked for (the request itself goes to the root).
    paths: tuple[LwM2MPath, ...] = ()


def raw_actions() -> list[str]:
    """The action names, for messages and the action's documentation."""
    return [action.value for action in RawAction]


def parse_operation(
    action: str, params: Mapping[str, Any], registry: ObjectRegistry
) -> RawOperation:
    """Check an action and its `params`; an OperationError (INVALID) says what is wrong."""
    try:
        raw_action = RawAction(action)
    except ValueError:
        raise _invalid(
            f"unknown action {action!r}; LwM2M offers {', '.join(raw_actions())}"
        ) from None
    if raw_action is RawAction.READ_COMPOSITE:
        return RawOperation(raw_action, ROOT, paths=_paths(params.get("paths")))
    path = _path(params.get("path"), raw_action)
    if raw_action is RawAction.EXECUTE:
        return RawOperation(raw_action, path, arguments=_arguments(params.get("arguments")))
    if raw_action is RawAction.WRITE_ATTRIBUTES:
        return RawOperation(raw_action, path, query=_query(params.get("attributes")))
    if raw_action in (RawAction.WRITE, RawAction.WRITE_PARTIAL, RawAction.CREATE):
        values = _values(raw_action, path, params, registry)
        unnamed = raw_action is RawAction.CREATE and params.get("instance") is None
        return RawOperation(raw_action, path, values=values, unnamed=unnamed)
    return RawOperation(raw_action, path)


def _invalid(reason: str) -> OperationError:
    return OperationError(OperationFailure.INVALID, reason)


def _path(raw: object, action: RawAction) -> LwM2MPath:
    if not isinstance(raw, str) or not raw:
        raise _invalid('"path" is required, for example "/3303/0/5700"')
    try:
        path = LwM2MPath.parse(raw)
    except ValueError as err:
        raise _invalid(f"path {raw[:40]!r} is not an LwM2M path: {err}") from None
    if path.depth not in _DEPTHS[action]:
        levels = ("object", "instance", "resource", "resource instance")
        allowed = " or ".join(levels[depth - 1] for depth in _DEPTHS[action])
        raise _invalid(f"{action} needs the path of an {allowed}, not {path}")
    return path


def _paths(raw: object) -> tuple[LwM2MPath, ...]:
    if not isinstance(raw, list | tuple) or not raw or len(raw) > _MAX_PATHS:
        raise _invalid(
            f'"paths" must list 1 to {_MAX_PATHS} paths, for example ["/3/0/9", "/3303/0/5700"]'
        )
    return tuple(_path(item, RawAction.READ) for item in raw)


def _arguments(raw: object) -> str:
    if raw is None:
        return ""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        raw = str(raw)
    if (
        not isinstance(raw, str)
        or len(raw) > _MAX_ARGUMENTS
        or not (raw == "" or _ARGUMENT_LIST.fullmatch(raw))
    ):
        raise _invalid(
            '"arguments" must be an LwM2M argument list: digits, each optionally with a '
            'quoted value, separated by commas ("1", "0=\'x\',3")'
        )
    return raw


def _query(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, Mapping) or not raw:
        raise _invalid('"attributes" must name attributes, for example {"pmin": 5, "pmax": 60}')
    query = []
    for name, value in raw.items():
        if name not in _ATTRIBUTES:
            raise _invalid(f"unknown attribute {name!r}; known: {', '.join(sorted(_ATTRIBUTES))}")
        if value is None:  # the attribute is removed
            query.append(str(name))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            query.append(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}")
        else:
            raise _invalid(f"attribute {name} must be a number (or null to remove it)")
    return tuple(query)


def _values(
    action: RawAction, path: LwM2MPath, params: Mapping[str, Any], registry: ObjectRegistry
) -> dict[LwM2MPath, Value]:
    """`value` for a resource, or `values` by resource id (below the instance or object)."""
    if path.depth >= 3 and action is not RawAction.WRITE_PARTIAL:
        if "value" not in params:
            raise _invalid(f'write of {path} needs "value"')
        return {path: _coerce(registry, path, params["value"])}
    raw = params.get("values")
    if not isinstance(raw, Mapping) or (not raw and action is not RawAction.CREATE):
        raise _invalid(f'{action} of {path} needs "values", for example {{"5850": true}}')
    base = path
    if action is RawAction.CREATE:
        instance = params.get("instance", 0)
        if not isinstance(instance, int) or isinstance(instance, bool):
            raise _invalid('"instance" must be a whole number')
        base = _child(path, instance)
    values: dict[LwM2MPath, Value] = {}
    for key, value in raw.items():
        target = _below(base, key)
        values[target] = _coerce(registry, target, value)
    return values


def _below(base: LwM2MPath, key: object) -> LwM2MPath:
    """A resource id ("5850", 5850) or a path relative to `base` ("5850/0")."""
    text = str(key).strip("/")
    try:
        ids = [int(part) for part in text.split("/")]
        path = base
        for child in ids:
            path = _child(path, child)
    except ValueError:
        raise _invalid(f"{key!r} is not a resource id below {base}") from None
    return path


def _child(path: LwM2MPath, child: int) -> LwM2MPath:
    try:
        return path.child(child)
    except ValueError as err:
        raise _invalid(f"{child!r} below {path}: {err}") from None


def _coerce(registry: ObjectRegistry, path: LwM2MPath, raw: object) -> Value:
    try:
        return coerce(registry.resource_type(path), raw, path)
    except ValueError as err:
        raise _invalid(str(err)) from None


def plain_value(value: Value) -> Any:
    """A value as response data can carry it (JSON): opaque as base64, links as text."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, ObjectLink):
        return str(value)
    return value
