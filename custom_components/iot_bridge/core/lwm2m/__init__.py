"""LwM2M data layer: paths, values, the object registry and the content-format codecs.

Pure data, no I/O (beyond reading objects.json once) and no Home Assistant: the LwM2M server
builds on it. Modules:

- paths.py      `LwM2MPath` (/object/instance/resource/resource-instance), parse and order.
- values.py     `ResourceType`, `ObjectLink`, the `Value` union, `Record` (path, value, time)
                and `coerce`, the one set of value rules every codec applies both ways.
- registry.py   `ObjectRegistry` over objects.json (facts from the OMA LwM2M registry):
                `default_registry().object(3)`, `.resource(path)`; unknown ids answer None.
- codec.py      `ContentFormat` and the entry points `decode`/`decode_records`/`encode`/
                `encode_records`, dispatching to:
- plain.py      text/plain (0), opaque (42), CBOR (60): one resource value each.
- tlv.py        OMA TLV (11542), typed through the registry.
- senml.py      SenML JSON (110), SenML CBOR (112), LwM2M JSON (11543): one record resolver.
- cbor.py       cbor2 narrowed to LwM2M (semantic tags other than time refused).
- linkformat.py Register/Update payloads and Discover answers (aiocoap parses the grammar).
- errors.py     `CodecError` (a ValueError) and its subclasses; payload and entry limits.

Every malformed input raises a `CodecError` whose message says what is wrong and where;
nothing else escapes a decoder, and payload size and entry counts bound the work.
"""

from .codec import ContentFormat, decode, decode_records, encode, encode_records, latest_values
from .errors import (
    MAX_ENTRIES,
    MAX_PAYLOAD_BYTES,
    CodecError,
    FormatError,
    LimitError,
    PathError,
    UnsupportedFormatError,
    ValueTypeError,
)
from .linkformat import (
    DiscoveredLink,
    RegisteredObjects,
    SupportedObject,
    parse_discover,
    parse_registration,
)
from .paths import ROOT, LwM2MPath
from .registry import (
    ObjectDefinition,
    ObjectRegistry,
    Operations,
    RegistryError,
    ResourceDefinition,
    default_registry,
)
from .values import ObjectLink, Record, ResourceType, Value

__all__ = [
    "MAX_ENTRIES",
    "MAX_PAYLOAD_BYTES",
    "ROOT",
    "CodecError",
    "ContentFormat",
    "DiscoveredLink",
    "FormatError",
    "LimitError",
    "LwM2MPath",
    "ObjectDefinition",
    "ObjectLink",
    "ObjectRegistry",
    "Operations",
    "PathError",
    "Record",
    "RegisteredObjects",
    "RegistryError",
    "ResourceDefinition",
    "ResourceType",
    "SupportedObject",
    "UnsupportedFormatError",
    "Value",
    "ValueTypeError",
    "decode",
    "decode_records",
    "default_registry",
    "encode",
    "encode_records",
    "latest_values",
    "parse_discover",
    "parse_registration",
]
