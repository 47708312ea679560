"""Link format (40) with LwM2M's meaning: registration payloads and Discover answers.

aiocoap parses the CoRE link-format grammar; this module adds what the links mean to LwM2M
(the alternate root path, object versions, instances, notification attributes). aiocoap's
parser backtracks badly on a few shapes of input (an unclosed '<', long runs of spaces), so
those are refused before it runs: no input costs more than a few milliseconds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from aiocoap.util import linkformat

from .errors import FormatError, PathError, check_entry_count, check_payload_size
from .paths import LwM2MPath

LWM2M_ROOT_TYPE: Final = "oma.lwm2m"
_VERSION: Final = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}")
_WHITESPACE_RUN: Final = re.compile(r"\s{17,}")
_INTEGER: Final = re.compile(r"[+-]?[0-9]{1,20}")
_DECIMAL: Final = re.compile(r"[+-]?(?:[0-9]{1,20}(?:\.[0-9]{0,20})?|\.[0-9]{1,20})")
# Notification and Discover attributes with numeric values (LwM2M 1.1 core, 5.1.2).
_INTEGER_ATTRIBUTES: Final = frozenset({"pmin", "pmax", "epmin", "epmax", "dim", "ssid", "hqmax"})
_DECIMAL_ATTRIBUTES: Final = frozenset({"gt", "lt", "st"})

type AttributeValue = int | float | str | None
type RawLink = tuple[str, list[tuple[str, str | None]]]


@dataclass(frozen=True, slots=True)
class SupportedObject:
    """One object a client registered: its version (if it said) and its instances."""

    object_id: int
    version: str | None = None
    instances: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class RegisteredObjects:
    """What a Register or Update payload says about the client."""

    root: str = "/"
    content_formats: tuple[int, ...] = ()
    objects: Mapping[int, SupportedObject] = field(default_factory=lambda: MappingProxyType({}))

    def instance_paths(self) -> list[LwM2MPath]:
        """Every registered object instance, in order."""
        return [
            LwM2MPath(obj.object_id, instance)
            for obj in sorted(self.objects.values(), key=lambda o: o.object_id)
            for instance in obj.instances
        ]


@dataclass(frozen=True, slots=True)
class DiscoveredLink:
    """One link of a Discover answer: a path and its attributes (numbers typed)."""

    path: LwM2MPath
    attributes: Mapping[str, AttributeValue] = field(default_factory=lambda: MappingProxyType({}))


def parse_registration(payload: bytes) -> RegisteredObjects:
    """Parse the link-format payload of a Register or Update request."""
    links = _parse_links(payload, "registration")
    root, content_formats = "/", tuple[int, ...]()
    root_links = [link for link in links if _has_lwm2m_type(link)]
    if len(root_links) > 1:
        raise FormatError(f"registration names {len(root_links)} roots (rt={LWM2M_ROOT_TYPE!r})")
    if root_links:
        href, root_attributes = root_links[0]
        root = _root_path(href)
        content_formats = _content_formats(dict(root_attributes).get("ct"))
    versions: dict[int, str | None] = {}
    instances: dict[int, set[int]] = {}
    for link in links:
        if link in root_links:
            continue
        path = _link_path(link[0], root, "registration")
        if path.depth > 2:
            raise FormatError(
                f"registration link {path} names a resource; only objects and instances"
            )
        object_id = path.ids[0]
        versions.setdefault(object_id, None)
        object_instances = instances.setdefault(object_id, set())
        if path.instance_id is not None:
            object_instances.add(path.instance_id)
        attributes = dict(link[1])
        if "ver" in attributes:
            versions[object_id] = _version(attributes["ver"], path)
    objects = {
        object_id: SupportedObject(object_id, version, tuple(sorted(instances[object_id])))
        for object_id, version in versions.items()
    }
    return RegisteredObjects(root, content_formats, MappingProxyType(objects))


def parse_discover(payload: bytes, root: str = "/") -> tuple[DiscoveredLink, ...]:
    """Parse a Discover answer into paths with their attributes."""
    links = _parse_links(payload, "discover answer")
    return tuple(
        DiscoveredLink(
            _link_path(href, root, "discover answer"),
            MappingProxyType({name: _attribute(name, value, href) for name, value in pairs}),
        )
        for href, pairs in links
    )


def _parse_links(payload: bytes, what: str) -> list[RawLink]:
    check_payload_size(payload, what)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FormatError(f"{what} is not UTF-8 (byte {err.start})") from None
    if text.rfind("<") > text.rfind(">"):
        raise FormatError(f"{what}: '<' at character {text.rfind('<')} is never closed")
    if (run := _WHITESPACE_RUN.search(text)) is not None:
        raise FormatError(f"{what}: run of whitespace at character {run.start()}")
    check_entry_count(text.count("<"), what)
    try:
        parsed = linkformat.parse(text)
    except Exception as err:  # A third-party parser fed device input: any failure is bad input.
        raise FormatError(f"{what} is not valid link format: {err}") from None
    return [
        (
            str(link.href),
            [(str(name), None if value is None else str(value)) for name, value in link.attr_pairs],
        )
        for link in parsed.links
    ]


def _has_lwm2m_type(link: RawLink) -> bool:
    return any(name == "rt" and value == LWM2M_ROOT_TYPE for name, value in link[1])


def _root_path(href: str) -> str:
    if href == "/":
        return href
    try:
        LwM2MPath.parse(href)
    except PathError:
        pass
    else:
        raise FormatError(f"alternate root {href!r} would hide an LwM2M path")
    if not href.startswith("/") or href.endswith("/") or "//" in href:
        raise FormatError(f"alternate root {href[:40]!r} is not an absolute path")
    return href


def _link_path(href: str, root: str, what: str) -> LwM2MPath:
    relative = href
    if root != "/":
        if not href.startswith(f"{root}/"):
            raise FormatError(f"{what} link {href[:40]!r} lies outside the root {root!r}")
        relative = href[len(root) :]
    try:
        path = LwM2MPath.parse(relative)
    except PathError as err:
        raise FormatError(f"{what} link {href[:40]!r}: {err}") from None
    if path.depth == 0:
        raise FormatError(f"{what} link {href[:40]!r} names no object")
    return path


def _content_formats(value: str | None) -> tuple[int, ...]:
    if value is None:
        return ()
    formats = value.split()
    if not formats or not all(
        _INTEGER.fullmatch(item) and 0 <= int(item) <= 65535 for item in formats
    ):
        raise FormatError(f"root link ct={value[:40]!r} is not a list of content formats")
    return tuple(int(item) for item in formats)


def _version(value: str | None, path: LwM2MPath) -> str:
    if value is None:
        raise FormatError(f"link {path}: ver has no value")
    if not _VERSION.fullmatch(value):
        raise FormatError(f"link {path}: ver={value[:20]!r} is not a version like 1.1")
    return value


def _attribute(name: str, value: str | None, href: str) -> AttributeValue:
    if value is None or (name not in _INTEGER_ATTRIBUTES and name not in _DECIMAL_ATTRIBUTES):
        return value
    pattern = _INTEGER if name in _INTEGER_ATTRIBUTES else _DECIMAL
    if not pattern.fullmatch(value):
        raise FormatError(f"link {href[:40]!r}: {name}={value[:20]!r} is not a number")
    return int(value) if name in _INTEGER_ATTRIBUTES else float(value)
