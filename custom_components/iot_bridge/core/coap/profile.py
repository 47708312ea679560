"""The CoAP device profile (docs/protocols/coap.md): what a device's links mean, and codecs.

A CoAP device describes itself in CoRE link format (RFC 6690) at /.well-known/core. Every
link to a resource becomes one capability: its resource type (`rt`) and interface (`if`) say
what it is, `obs` whether IoT Bridge observes it, `ct` how its representation is encoded.
Resource types are the established OCF names (`oic.r.*`) and IPSO object URNs where they
exist; IoT Bridge defines its own only where neither has one (`iot-bridge.*`). Nothing here
sends anything: the bridge and the config flow use these functions on what they received.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Final, Literal
from urllib.parse import unquote

import cbor2
from aiocoap.util import linkformat

from ..model import ACTIONS_BY_KIND, Capability, CapabilityKind, CommandReply, DeviceInfo

# Bounds at the edge: a device cannot grow Home Assistant's memory through its description.
MAX_LINK_FORMAT_BYTES: Final = 32 * 1024
MAX_RESOURCES: Final = 128
MAX_PAYLOAD_BYTES: Final = 16 * 1024
MAX_TITLE_LENGTH: Final = 64
MAX_REASON_LENGTH: Final = 200
# What Home Assistant shows of a resource of unknown type (longer text is cut, not refused).
MAX_TEXT_SHOWN: Final = 255
WELL_KNOWN_CORE: Final = (".well-known", "core")
# Device ids: an OCF `di` (a UUID) or an endpoint name; both fit this.
_DEVICE_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_KEY_CHARS: Final = re.compile(r"[^A-Za-z0-9_-]+")
_CONTROL_CHARS: Final = re.compile(r"[\x00-\x1f\x7f]")
_INTEGER: Final = re.compile(r"[-+]?[0-9]{1,15}")

# CoRE interface descriptions (draft-ietf-core-interfaces): read-only or settable.
IF_SENSOR: Final = "core.s"
IF_ACTUATOR: Final = "core.a"
IF_PARAMETER: Final = "core.p"
IF_READ_ONLY_PARAMETER: Final = "core.rp"
_READ_ONLY_INTERFACES: Final = frozenset({IF_SENSOR, IF_READ_ONLY_PARAMETER})
_SETTABLE_INTERFACES: Final = frozenset({IF_ACTUATOR, IF_PARAMETER})
# Collections and link lists describe other resources; they have no value of their own.
_COLLECTION_INTERFACES: Final = frozenset({"core.ll", "core.b", "core.lb"})
# Device information (OCF device and platform resources): read for the device's identity.
DEVICE_INFO_TYPES: Final = frozenset({"oic.wk.d", "oic.wk.p"})

# What a read-only interface turns an actuator type into.
_READ_ONLY_KIND: Final = {
    CapabilityKind.SWITCH: CapabilityKind.BINARY_SENSOR,
    CapabilityKind.LIGHT: CapabilityKind.BINARY_SENSOR,
    CapabilityKind.LOCK: CapabilityKind.SENSOR,
    CapabilityKind.NUMBER: CapabilityKind.SENSOR,
}
LOCK_TARGET: Final = {"lock": "locked", "unlock": "unlocked", "open": "open"}

type Method = Literal["PUT", "POST"]


class ContentFormat(IntEnum):
    """CoAP Content-Format numbers (IANA registry) IoT Bridge reads."""

    TEXT = 0
    LINK_FORMAT = 40
    OCTET_STREAM = 42
    JSON = 50
    CBOR = 60


_WRITABLE_FORMATS: Final = (ContentFormat.TEXT, ContentFormat.JSON, ContentFormat.CBOR)


class ProfileError(ValueError):
    """A description or payload does not follow the profile; str() says why."""


@dataclass(frozen=True, slots=True)
class ResourceType:
    """What a resource type means in Home Assistant's terms."""

    kind: CapabilityKind
    device_class: str | None = None
    unit: str | None = None
    state_class: str | None = None
    # Where the value sits in a JSON/CBOR object representation (OCF property name).
    prop: str = "value"
    # The kind when the link says the value can be set (if="core.a" or "core.p").
    settable: CapabilityKind | None = None
    diagnostic: bool = False


def _measurement(
    device_class: str | None, unit: str | None, prop: str = "value", **extra: Any
) -> ResourceType:
    return ResourceType(
        CapabilityKind.SENSOR,
        device_class,
        unit,
        "measurement",
        prop,
        settable=CapabilityKind.NUMBER,
        **extra,
    )


def _binary(device_class: str | None, prop: str = "value") -> ResourceType:
    return ResourceType(CapabilityKind.BINARY_SENSOR, device_class, prop=prop)


def _ipso(object_id: int) -> str:
    """The resource type of an IPSO Smart Object, as LwM2M registers it."""
    return f"urn:oma:lwm2m:ext:{object_id}"


RESOURCE_TYPES: Final[Mapping[str, ResourceType]] = {
    # OCF resource types (oneIoTa data models) with their value property.
    "oic.r.temperature": _measurement("temperature", "°C", "temperature"),
    "oic.r.humidity": _measurement("humidity", "%", "humidity"),
    "oic.r.sensor.illuminance": _measurement("illuminance", "lx", "illuminance"),
    "oic.r.sensor.atmosphericpressure": _measurement(
        "atmospheric_pressure", "hPa", "atmosphericPressure"
    ),
    "oic.r.sensor.carbondioxide": _measurement("carbon_dioxide", "ppm", "measurement"),
    "oic.r.energy.battery": _measurement("battery", "%", "charge", diagnostic=True),
    "oic.r.signalstrength": _measurement("signal_strength", "dBm", "rssi", diagnostic=True),
    "oic.r.sensor.contact": _binary("opening"),
    "oic.r.sensor.motion": _binary("motion"),
    "oic.r.sensor.presence": _binary("presence"),
    "oic.r.sensor.water": _binary("moisture"),
    "oic.r.sensor.smoke": _binary("smoke"),
    "oic.r.sensor.carbonmonoxide": _binary("carbon_monoxide"),
    "oic.r.sensor.glassbreak": _binary("safety"),
    "oic.r.door": _binary("door", "openState"),
    "oic.r.button": _binary(None),
    "oic.r.switch.binary": ResourceType(CapabilityKind.SWITCH),
    "oic.r.lock.status": ResourceType(CapabilityKind.LOCK, prop="lockState"),
    # IPSO Smart Objects (the objects LwM2M devices use), by their registered URN.
    _ipso(3200): _binary(None),
    _ipso(3201): ResourceType(CapabilityKind.SWITCH),
    _ipso(3202): _measurement(None, None),
    _ipso(3203): ResourceType(CapabilityKind.NUMBER),
    _ipso(3300): _measurement(None, None),
    _ipso(3301): _measurement("illuminance", "lx"),
    _ipso(3302): _binary("occupancy"),
    _ipso(3303): _measurement("temperature", "°C"),
    _ipso(3304): _measurement("humidity", "%"),
    _ipso(3306): ResourceType(CapabilityKind.SWITCH),
    _ipso(3308): ResourceType(CapabilityKind.NUMBER),
    _ipso(3311): ResourceType(CapabilityKind.LIGHT),
    _ipso(3312): ResourceType(CapabilityKind.SWITCH),
    _ipso(3315): _measurement("atmospheric_pressure", "hPa"),
    _ipso(3316): _measurement("voltage", "V"),
    _ipso(3317): _measurement("current", "A"),
    _ipso(3323): _measurement("pressure", "Pa"),
    _ipso(3328): _measurement("power", "W"),
    _ipso(3331): ResourceType(CapabilityKind.SENSOR, "energy", "Wh", "total_increasing"),
    _ipso(3342): _binary(None),
    # IoT Bridge's own: a stateless action, triggered by POST (neither OCF nor IPSO has one).
    "iot-bridge.button": ResourceType(CapabilityKind.BUTTON),
}


@dataclass(frozen=True, slots=True)
class Resource:
    """One resource of a device and the capability Home Assistant sees for it."""

    path: tuple[str, ...]
    capability: Capability
    content_format: int
    observable: bool
    resource_type: str | None = None  # the known type that decided the kind; None: unknown
    interfaces: tuple[str, ...] = ()
    prop: str = "value"

    @property
    def key(self) -> str:
        """The capability key (unique per device)."""
        return self.capability.key

    @property
    def href(self) -> str:
        """The resource's path as a link names it."""
        return "/" + "/".join(self.path)

    @property
    def known(self) -> bool:
        """Whether its type is one the profile names."""
        return self.resource_type is not None


@dataclass(slots=True)
class Description:
    """What a device's /.well-known/core says."""

    resources: dict[str, Resource] = field(default_factory=dict)
    info_paths: list[tuple[str, ...]] = field(default_factory=list)
    endpoint_name: str | None = None
    # Links that describe nothing IoT Bridge can use (collections, other hosts, ...).
    skipped: int = 0

    @property
    def usable(self) -> bool:
        """Whether at least one resource becomes an entity."""
        return bool(self.resources)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a device says it is (OCF device/platform resources)."""

    device_id: str | None = None
    name: str | None = None
    info: DeviceInfo = field(default_factory=DeviceInfo)


# -- link format ---------------------------------------------------------------------------


def parse_description(payload: bytes) -> Description:
    """Turn a /.well-known/core payload into resources; ProfileError if it is not link format."""
    if len(payload) > MAX_LINK_FORMAT_BYTES:
        raise ProfileError(f"link format is {len(payload)} bytes, limit {MAX_LINK_FORMAT_BYTES}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ProfileError(f"link format is not UTF-8: {err}") from err
    try:
        links = linkformat.parse(text).links if text.strip() else []
    except Exception as err:  # the vendored parser raises its own ParseException
        raise ProfileError(f"not CoRE link format: {err}") from err
    description = Description()
    keys: set[str] = set()
    for link in links:
        _add_link(description, link.href, [(str(k), v) for k, v in link.attr_pairs], keys)
    return description


def _add_link(
    description: Description,
    href: str,
    attributes: list[tuple[str, str | None]],
    keys: set[str],
) -> None:
    def values(name: str) -> list[str]:
        return [
            word for key, value in attributes if key == name and value for word in value.split()
        ]

    endpoint = next(iter(values("ep")), None)
    if (
        endpoint is not None
        and description.endpoint_name is None
        and _DEVICE_ID.fullmatch(endpoint)
    ):
        description.endpoint_name = endpoint
    path = _path(href)
    types = values("rt")
    interfaces = tuple(values("if"))
    formats = _formats(values("ct"))
    if (
        path is None
        or path == WELL_KNOWN_CORE
        or any(rt.startswith("core.") for rt in types)
        or _COLLECTION_INTERFACES.intersection(interfaces)
        or ContentFormat.LINK_FORMAT in formats
    ):
        description.skipped += 1
        return
    if DEVICE_INFO_TYPES.intersection(types):
        description.info_paths.append(path)
        return
    if len(description.resources) >= MAX_RESOURCES:
        description.skipped += 1
        return
    resource = _resource(path, types, interfaces, formats, attributes, keys)
    if resource is None:
        description.skipped += 1
        return
    keys.add(resource.key)
    description.resources[resource.key] = resource


def _path(href: str) -> tuple[str, ...] | None:
    """The path of a link on this device; None for other hosts, queries and fragments."""
    if not href.startswith("/") or href.startswith("//") or "?" in href or "#" in href:
        return None
    segments = [unquote(segment) for segment in href[1:].split("/")]
    while segments and not segments[-1]:
        segments.pop()
    return tuple(segments)


def _formats(values: Iterable[str]) -> list[int]:
    formats = []
    for value in values:
        if value.isdigit() and int(value) < 65536:
            formats.append(int(value))
    return formats


def _resource(
    path: tuple[str, ...],
    types: list[str],
    interfaces: tuple[str, ...],
    formats: list[int],
    attributes: list[tuple[str, str | None]],
    keys: set[str],
) -> Resource | None:
    known = next((rt for rt in types if rt in RESOURCE_TYPES), None)
    observable = any(key == "obs" for key, _ in attributes)
    title = next((value for key, value in attributes if key == "title" and value), None)
    key = _key(path, keys)
    content_format = next(
        (ct for ct in formats if ct in _WRITABLE_FORMATS), formats[0] if formats else 0
    )
    name = _title(title)
    if known is None:
        # Any server is usable: a resource of no known type is shown as it reads, as a
        # diagnostic sensor that is off by default unless the device pushes it.
        capability = Capability(
            CapabilityKind.SENSOR,
            key,
            name=name,
            category="diagnostic",
            enabled_by_default=observable,
        )
        return Resource(path, capability, content_format, observable, None, interfaces)
    rtype = RESOURCE_TYPES[known]
    kind = _kind(rtype, interfaces)
    if kind is None:
        return None
    numeric = kind in (CapabilityKind.SENSOR, CapabilityKind.NUMBER) and rtype.kind in (
        CapabilityKind.SENSOR,
        CapabilityKind.NUMBER,
    )
    capability = Capability(
        kind,
        key,
        name=name,
        device_class=rtype.device_class,
        unit=rtype.unit if numeric else None,
        state_class=rtype.state_class if kind is CapabilityKind.SENSOR and numeric else None,
        # Every CoAP command is confirmed: the response is its outcome.
        confirmable=bool(ACTIONS_BY_KIND[kind]),
        category="diagnostic" if rtype.diagnostic else None,
    )
    return Resource(path, capability, content_format, observable, known, interfaces, rtype.prop)


def _kind(rtype: ResourceType, interfaces: tuple[str, ...]) -> CapabilityKind | None:
    """The kind a type takes under the link's interfaces (read-only actuators are sensors)."""
    read_only = bool(_READ_ONLY_INTERFACES.intersection(interfaces))
    settable = bool(_SETTABLE_INTERFACES.intersection(interfaces))
    if ACTIONS_BY_KIND[rtype.kind]:
        if read_only and not settable:
            return _READ_ONLY_KIND.get(rtype.kind)  # a read-only button means nothing
        return rtype.kind
    if settable and rtype.settable is not None:
        return rtype.settable
    return rtype.kind


def _key(path: tuple[str, ...], taken: set[str]) -> str:
    """A capability key from the path: stable, unique per device, within the profile's rules."""
    base = _KEY_CHARS.sub("_", "_".join(path)).strip("_")[:60] or "root"
    key, number = base, 2
    while key in taken:
        key, number = f"{base}_{number}", number + 1
    return key


def _title(value: str | None) -> str | None:
    if value is None:
        return None
    text = _CONTROL_CHARS.sub("", value).strip()[:MAX_TITLE_LENGTH]
    return text or None


# -- identity ----------------------------------------------------------------------------

# OCF device (oic.wk.d) and platform (oic.wk.p) properties IoT Bridge reads.
_INFO_FIELDS: Final = {
    "mnmn": "manufacturer",
    "mnmo": "model",
    "mnfv": "sw_version",
    "mnhw": "hw_version",
}


def parse_identity(payloads: Iterable[tuple[bytes, int | None]], endpoint: str | None) -> Identity:
    """Merge the device information resources; the id is `di`, else the endpoint name.

    A malformed information resource is skipped (ProfileError from none of them): the
    device is still usable, only less well described.
    """
    merged: dict[str, str] = {}
    for payload, content_format in payloads:
        try:
            data = _load(payload, content_format)
        except ProfileError:
            continue
        if isinstance(data, dict):
            for key, value in data.items():
                if isinstance(key, str) and isinstance(value, str) and key not in merged:
                    merged[key] = value
    device_id = merged.get("di")
    if device_id is None or not _DEVICE_ID.fullmatch(device_id):
        device_id = endpoint
    info = DeviceInfo(**{field: _title(merged.get(key)) for key, field in _INFO_FIELDS.items()})
    return Identity(device_id=device_id, name=_title(merged.get("n")), info=info)


# -- values ------------------------------------------------------------------------------


class _NoValue:
    """An empty representation: the resource has no value to show (yet)."""

    def __repr__(self) -> str:
        return "NO_VALUE"


NO_VALUE: Final = _NoValue()


def _load(payload: bytes, content_format: int | None) -> Any:
    """Decode a representation into plain values (text stays text)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProfileError(f"payload is {len(payload)} bytes, limit {MAX_PAYLOAD_BYTES}")
    if content_format == ContentFormat.JSON:
        try:
            return json.loads(payload)
        except (UnicodeDecodeError, ValueError, RecursionError) as err:
            raise ProfileError(f"not valid JSON: {err}") from err
    if content_format == ContentFormat.CBOR:
        try:
            return cbor2.loads(payload)
        except (
            cbor2.CBORError,
            ValueError,
            TypeError,
            OverflowError,
            RecursionError,
            LookupError,
        ) as err:
            raise ProfileError(f"not valid CBOR: {err}") from err
    try:
        return payload.decode("utf-8").strip()
    except UnicodeDecodeError as err:
        label = (
            "text" if content_format in (None, ContentFormat.TEXT) else f"format {content_format}"
        )
        raise ProfileError(f"{label} payload is not UTF-8 text: {err}") from err


def decode_value(resource: Resource, payload: bytes, content_format: int | None) -> Any:
    """The raw value of a representation (core/values.py checks it), or NO_VALUE if empty.

    `content_format` is the response's Content-Format option; without one the link's `ct`
    applies.
    """
    if not payload:
        return NO_VALUE
    data = _load(payload, resource.content_format if content_format is None else content_format)
    if not resource.known:
        return _shown(data)
    if resource.capability.kind is CapabilityKind.LIGHT:
        return data
    if isinstance(data, dict):
        for key in (resource.prop, "value"):
            if key in data:
                return data[key]
        if len(data) == 1:
            return next(iter(data.values()))
        raise ProfileError(f"object has no '{resource.prop}' or 'value' member")
    if isinstance(data, list):
        raise ProfileError("an array is not a value")
    if isinstance(data, str) and _INTEGER.fullmatch(data):
        return int(data)  # text "400" is the number 400, as JSON's 400 would be
    return data


def _shown(data: Any) -> Any:
    """A resource of unknown type shows what it holds; long text is cut, not refused."""
    if isinstance(data, dict | list):
        try:
            data = json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=repr)
        except (TypeError, ValueError, RecursionError):
            # CBOR can hold what JSON cannot spell: map keys that are not text, shared
            # values that contain themselves.
            raise ProfileError("a value JSON cannot show (non-text keys or a cycle)") from None
    if isinstance(data, str) and len(data) > MAX_TEXT_SHOWN:
        return data[: MAX_TEXT_SHOWN - 1] + "…"
    if isinstance(data, bytes):
        raise ProfileError("binary value")
    return data


# -- commands ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """How one command goes on the wire (the id and deadline travel as Uri-Query)."""

    method: Method
    payload: bytes
    content_format: int | None


def command_value(kind: CapabilityKind, action: str, params: Mapping[str, Any]) -> Any:
    """The representation a command asks the resource to take."""
    if kind is CapabilityKind.LOCK:
        return LOCK_TARGET[action]
    if kind is CapabilityKind.SWITCH:
        return action == "turn_on"
    if kind is CapabilityKind.NUMBER:
        return params["value"]
    if kind is CapabilityKind.LIGHT:
        light: dict[str, Any] = {"on": action == "turn_on"}
        if action == "turn_on" and params.get("brightness") is not None:
            light["brightness"] = round(params["brightness"])
        return light
    raise ProfileError(f"a {kind.value} takes no value")


def encode_command(resource: Resource, action: str, params: Mapping[str, Any]) -> CommandRequest:
    """PUT the new representation (POST with no payload for a button)."""
    kind = resource.capability.kind
    if kind is CapabilityKind.BUTTON:
        return CommandRequest("POST", b"", None)
    value = command_value(kind, action, params)
    content_format = resource.content_format
    if content_format == ContentFormat.TEXT:
        return CommandRequest("PUT", _text(value).encode(), content_format)
    if content_format == ContentFormat.JSON:
        return CommandRequest(
            "PUT", json.dumps(value, separators=(",", ":")).encode(), content_format
        )
    if content_format == ContentFormat.CBOR:
        return CommandRequest("PUT", cbor2.dumps(value), content_format)
    raise ProfileError(f"cannot write content format {content_format}")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dict):
        if value.get("brightness") is not None:
            raise ProfileError("brightness needs a JSON or CBOR light (ct=50 or 60)")
        return "1" if value["on"] else "0"
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    return str(value)


def is_success(code: int) -> bool:
    """2.xx response codes."""
    return code >> 5 == 2


def code_text(code: int) -> str:
    """A response code the way people read it: '4.03 Forbidden'."""
    dotted = f"{code >> 5}.{code & 31:02d}"
    name = _CODE_NAMES.get(code)
    return f"{dotted} {name}" if name else dotted


_CODE_NAMES: Final = {
    65: "Created",
    66: "Deleted",
    67: "Valid",
    68: "Changed",
    69: "Content",
    128: "Bad Request",
    129: "Unauthorized",
    130: "Bad Option",
    131: "Forbidden",
    132: "Not Found",
    133: "Method Not Allowed",
    134: "Not Acceptable",
    137: "Conflict",
    140: "Precondition Failed",
    141: "Request Entity Too Large",
    143: "Unsupported Content-Format",
    150: "Unprocessable Entity",
    157: "Too Many Requests",
    160: "Internal Server Error",
    161: "Not Implemented",
    162: "Bad Gateway",
    163: "Service Unavailable",
    164: "Gateway Timeout",
}


def refusal_reason(code: int, payload: bytes) -> str:
    """The device's diagnostic payload (RFC 7252 5.5.2) with the code, e.g.
    'door blocked (4.03 Forbidden)'."""
    text = _CONTROL_CHARS.sub(" ", payload[: MAX_REASON_LENGTH * 4].decode("utf-8", "replace"))
    text = text.strip()[:MAX_REASON_LENGTH]
    return f"{text} ({code_text(code)})" if text else code_text(code)


def command_reply(
    resource: Resource,
    command_id: str,
    code: int,
    payload: bytes,
    content_format: int | None,
) -> CommandReply:
    """The device's response is the command's outcome: 2.xx confirms, anything else refuses.

    The new state comes from a successful response's payload when it decodes; otherwise the
    caller applies what the action implies.
    """
    if not is_success(code):
        return CommandReply(command_id, ok=False, reason=refusal_reason(code, payload))
    try:
        value = decode_value(resource, payload, content_format)
    except ProfileError:
        value = NO_VALUE
    state = None if value is NO_VALUE else {resource.key: value}
    return CommandReply(command_id, ok=True, state=state)
