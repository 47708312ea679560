"""Record formats: SenML JSON (110), SenML CBOR (112) and the older LwM2M JSON (11543).

All three are lists of records, each a name and a value with an optional time, where a base
name and base time carry over to later records (RFC 8428). Each format only maps its own
syntax onto SenML labels; one resolver turns labelled records into paths and typed values,
and one writer builds them, so the three agree on every rule.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from typing import Any, Final

from .cbor import dump_cbor, load_cbor
from .errors import (
    FormatError,
    PathError,
    UnsupportedFormatError,
    ValueTypeError,
    check_entry_count,
)
from .paths import LwM2MPath, check_disjoint
from .registry import ObjectRegistry
from .values import INT64_MAX, INT64_MIN, ObjectLink, Record, ResourceType, Value, coerce

type Labels = dict[str, object]

# RFC 8428's labels (and LwM2M's "vlo"), with the Python type each must hold once decoded.
_NUMBER: Final = (int, float)
_LABEL_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "bn": (str,),
    "bt": _NUMBER,
    "bu": (str,),
    "bver": (int,),
    "n": (str,),
    "u": (str,),
    "t": _NUMBER,
    "ut": _NUMBER,
    "v": _NUMBER,
    "vs": (str,),
    "vb": (bool,),
    "vd": (bytes,),
    "vlo": (str,),
}
_VALUE_LABELS: Final = ("v", "vs", "vb", "vd", "vlo")
# Valid SenML that LwM2M never sends; a device using them would mean values we misread.
_REFUSED_LABELS: Final = {"bv": "base value", "bs": "base sum", "s": "sum"}
_SENML_VERSION: Final = 10
_CBOR_LABELS: Final[dict[int | str, str]] = {
    -1: "bver",
    -2: "bn",
    -3: "bt",
    -4: "bu",
    -5: "bv",
    -6: "bs",
    0: "n",
    1: "u",
    2: "v",
    3: "vs",
    4: "vb",
    5: "s",
    6: "t",
    7: "ut",
    8: "vd",
    "vlo": "vlo",
}
_CBOR_KEYS: Final = {label: key for key, label in _CBOR_LABELS.items()}
# LwM2M JSON names its values differently; everything else is the same record model.
_LWM2M_JSON_VALUES: Final = {"v": "v", "sv": "vs", "bv": "vb", "ov": "vlo"}
_LWM2M_JSON_KEYS: Final = {label: key for key, label in _LWM2M_JSON_VALUES.items()}


# Resolving labelled records into paths and values


def resolve(
    raw_records: Sequence[Labels],
    base: LwM2MPath,
    registry: ObjectRegistry,
    what: str,
    *,
    opaque_as_text: bool = False,
) -> list[Record]:
    """Apply base names and times, check every label, type every value by the registry."""
    check_entry_count(len(raw_records), what)
    records: list[Record] = []
    base_name = ""
    base_time: float | None = None
    for index, labels in enumerate(raw_records):
        where = f"{what} record {index}"
        _check_labels(labels, where)
        base_name = _get(labels, "bn", str, base_name)
        if "bt" in labels:
            base_time = _time(labels["bt"], where)
        path = _record_path(base_name + _get(labels, "n", str, ""), base, where)
        time = _record_time(labels, base_time, where)
        raw = _record_value(labels, where)
        resource_type = registry.resource_type(path)
        if opaque_as_text and resource_type is ResourceType.OPAQUE and isinstance(raw, str):
            raw = _base64(raw, where, altchars=None)
        records.append(Record(path, coerce(resource_type, raw, path), time))
    return records


def _check_labels(labels: Labels, where: str) -> None:
    for label, value in labels.items():
        if label in _REFUSED_LABELS:
            raise FormatError(f"{where}: label {label!r} ({_REFUSED_LABELS[label]}) is not LwM2M")
        expected = _LABEL_TYPES.get(label)
        if expected is None:
            raise FormatError(f"{where}: unknown SenML label {label[:20]!r}")
        if (isinstance(value, bool) and bool not in expected) or not isinstance(value, expected):
            names = " or ".join(kind.__name__ for kind in expected)
            raise FormatError(f"{where}: {label!r} must be {names}, got {type(value).__name__}")
    version = labels.get("bver", _SENML_VERSION)
    if not isinstance(version, int) or version > _SENML_VERSION:
        raise FormatError(f"{where}: SenML version {version} is newer than {_SENML_VERSION}")


def _get[T](labels: Labels, label: str, kind: type[T], default: T) -> T:
    value = labels.get(label, default)
    assert isinstance(value, kind)  # _check_labels checked every label's type
    return value


def _record_path(name: str, base: LwM2MPath, where: str) -> LwM2MPath:
    if not name:
        raise FormatError(f"{where} has no name")
    try:
        path = LwM2MPath.parse(name)
    except PathError as err:
        raise FormatError(f"{where}: name does not resolve to a path: {err}") from None
    if path.depth < 3:
        raise FormatError(f"{where}: {path} is an {path.level_name}, values sit at resources")
    if not path.startswith(base):
        raise FormatError(f"{where}: {path} lies outside {base}")
    return path


def _record_time(labels: Labels, base_time: float | None, where: str) -> float | None:
    if "t" not in labels:
        return base_time
    time = _time(labels["t"], where)
    total = time if base_time is None else base_time + time
    if not math.isfinite(total):
        raise FormatError(f"{where}: base time plus time is out of range")
    return total


def _time(value: object, where: str) -> float:
    assert isinstance(value, int | float)
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise FormatError(f"{where}: time {value} is out of range")
    if not math.isfinite(value):
        raise FormatError(f"{where}: time must be finite, got {value!r}")
    return float(value)


def _record_value(labels: Labels, where: str) -> object:
    present = [label for label in _VALUE_LABELS if label in labels]
    if len(present) != 1:
        problem = "no value" if not present else f"several values ({', '.join(present)})"
        raise FormatError(f"{where} has {problem}")
    raw = labels[present[0]]
    if present[0] == "vlo":
        assert isinstance(raw, str)
        try:
            return ObjectLink.parse(raw)
        except ValueTypeError as err:
            raise ValueTypeError(f"{where}: {err}") from None
    return raw


def _base64(text: str, where: str, altchars: bytes | None) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=altchars, validate=True)
    except ValueError as err:  # binascii.Error, or non-ASCII text
        raise FormatError(f"{where}: {text[:20]!r} is not base64: {err}") from None


# Writing records


def _labelled(records: Sequence[Record], base: LwM2MPath, registry: ObjectRegistry) -> list[Labels]:
    """SenML-labelled records: a base name of `base`, names relative to it."""
    typed: list[tuple[LwM2MPath, Value, float | None]] = []
    for path, value, time in records:
        if not path.startswith(base) or path.depth < 3:
            raise UnsupportedFormatError(
                f"records below {base} cannot carry {path}: values sit at resources below it"
            )
        typed.append((path, coerce(registry.resource_type(path), value, path), time))
    check_disjoint([path for path, _, _ in typed], repeats=True)
    base_name, names = _names([path for path, _, _ in typed], base)
    out: list[Labels] = []
    for index, ((_, value, time), name) in enumerate(zip(typed, names, strict=True)):
        labels: Labels = {}
        if index == 0 and base_name:
            labels["bn"] = base_name
        if name:
            labels["n"] = name
        labels[_value_label(value)] = str(value) if isinstance(value, ObjectLink) else value
        if time is not None:
            labels["t"] = int(time) if time.is_integer() and abs(time) < 2**53 else time
        out.append(labels)
    return out


def _names(paths: list[LwM2MPath], base: LwM2MPath) -> tuple[str, list[str]]:
    if all(path == base for path in paths):
        return str(base), ["" for _ in paths]
    prefix = f"{base}/" if base.depth else "/"
    return prefix, [str(path)[len(prefix) :] for path in paths]


def _value_label(value: Value) -> str:
    if isinstance(value, bool):
        return "vb"
    if isinstance(value, int | float):
        return "v"
    if isinstance(value, str):
        return "vs"
    if isinstance(value, ObjectLink):
        return "vlo"
    return "vd"


# SenML JSON


def decode_senml_json(payload: bytes, base: LwM2MPath, registry: ObjectRegistry) -> list[Record]:
    """Decode a SenML JSON pack (byte values are base64url)."""
    what = "SenML JSON"
    document = _load_json(payload, what)
    raw_records = _record_list(document, what)
    for index, labels in enumerate(raw_records):
        data = labels.get("vd")
        if data is not None:
            if not isinstance(data, str):
                raise FormatError(f"{what} record {index}: 'vd' must be str")
            labels["vd"] = _base64(data, f"{what} record {index}", altchars=b"-_")
    return resolve(raw_records, base, registry, what)


def encode_senml_json(
    records: Sequence[Record], base: LwM2MPath, registry: ObjectRegistry
) -> bytes:
    """Encode records as a SenML JSON pack."""
    out = _labelled(records, base, registry)
    for labels in out:
        data = labels.get("vd")
        if isinstance(data, bytes):
            labels["vd"] = base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    return _dump_json(out)


# SenML CBOR


def decode_senml_cbor(payload: bytes, base: LwM2MPath, registry: ObjectRegistry) -> list[Record]:
    """Decode a SenML CBOR pack (integer labels, "vlo" as text)."""
    what = "SenML CBOR"
    document = load_cbor(payload, what, max_depth=2)
    if not isinstance(document, list):
        raise FormatError(f"{what} must be an array of records, got {type(document).__name__}")
    check_entry_count(len(document), what)
    raw_records: list[Labels] = []
    for index, item in enumerate(document):
        if not isinstance(item, dict):
            raise FormatError(f"{what} record {index} must be a map, got {type(item).__name__}")
        raw_records.append(_cbor_labels(item, f"{what} record {index}"))
    return resolve(raw_records, base, registry, what)


def _cbor_labels(item: dict[Any, Any], where: str) -> Labels:
    labels: Labels = {}
    for key, value in item.items():
        # Exact key types: CBOR 2.0 or true would otherwise compare equal to labels 2 and 1.
        label = _CBOR_LABELS.get(key) if type(key) in (int, str) else None
        if label is None:
            raise FormatError(f"{where}: unknown SenML label {key!r:.20}")
        labels[label] = value
    return labels


def encode_senml_cbor(
    records: Sequence[Record], base: LwM2MPath, registry: ObjectRegistry
) -> bytes:
    """Encode records as a SenML CBOR pack."""
    labelled = _labelled(records, base, registry)
    return dump_cbor([{_CBOR_KEYS[label]: value for label, value in r.items()} for r in labelled])


# LwM2M JSON (the LwM2M 1.0 format: {"bn": ..., "bt": ..., "e": [{"n", "v"|"sv"|"bv"|"ov"}]})


def decode_lwm2m_json(payload: bytes, base: LwM2MPath, registry: ObjectRegistry) -> list[Record]:
    """Decode LwM2M JSON; without "bn" names are relative to `base` (opaque values base64)."""
    what = "LwM2M JSON"
    document = _load_json(payload, what)
    if not isinstance(document, dict):
        raise FormatError(f"{what} must be an object, got {type(document).__name__}")
    unknown = set(document) - {"bn", "bt", "e"}
    if unknown:
        raise FormatError(f"{what}: unknown key {sorted(unknown)[0][:20]!r}")
    base_name = document.get("bn")
    if base_name is not None and not isinstance(base_name, str):
        raise FormatError(f"{what}: 'bn' must be str")
    entries = _record_list(document.get("e"), f"{what} 'e'")
    raw_records = [
        _lwm2m_json_labels(entry, base_name, base, f"{what} entry {index}")
        for index, entry in enumerate(entries)
    ]
    if raw_records and "bt" in document:
        raw_records[0]["bt"] = document["bt"]
    return resolve(raw_records, base, registry, what, opaque_as_text=True)


def _lwm2m_json_labels(entry: Labels, base_name: str | None, base: LwM2MPath, where: str) -> Labels:
    labels: Labels = {}
    for key, value in entry.items():
        label = _LWM2M_JSON_VALUES.get(key) or (key if key in ("n", "t") else None)
        if label is None:
            raise FormatError(f"{where}: unknown LwM2M JSON key {key[:20]!r}")
        labels[label] = value
    name = labels.get("n", "")
    if not isinstance(name, str):
        raise FormatError(f"{where}: 'n' must be str")
    # The full name goes to the resolver: without a base name, names are relative to the
    # path the request named.
    if base_name is not None:
        labels["n"] = base_name + name
    else:
        labels["n"] = f"{'' if base.depth == 0 else base}/{name}" if name else str(base)
    return labels


def encode_lwm2m_json(
    records: Sequence[Record], base: LwM2MPath, registry: ObjectRegistry
) -> bytes:
    """Encode records as LwM2M JSON (opaque values as base64 text, as LwM2M 1.0 does)."""
    entries: list[Labels] = []
    base_name = ""
    for labels in _labelled(records, base, registry):
        base_name = str(labels.pop("bn", base_name))
        data = labels.pop("vd", None)
        if isinstance(data, bytes):
            labels["vs"] = base64.b64encode(data).decode()
        entries.append(
            {_LWM2M_JSON_KEYS.get(label, label): value for label, value in labels.items()}
        )
    return _dump_json({"bn": base_name, "e": entries} if entries else {"e": []})


# JSON plumbing


def _reject_constant(name: str) -> float:
    raise FormatError(f"{name} is not a number LwM2M allows")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise FormatError(f"label {key[:20]!r} appears twice in one record")
        result[key] = value
    return result


def _load_json(payload: bytes, what: str) -> object:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FormatError(f"{what} is not UTF-8 (byte {err.start})") from None
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except FormatError as err:
        raise FormatError(f"{what}: {err}") from None
    except RecursionError:
        raise FormatError(f"{what} nests too deeply") from None
    except ValueError as err:
        raise FormatError(f"{what} is not valid JSON: {err}") from None


def _record_list(document: object, what: str) -> list[Labels]:
    if not isinstance(document, list):
        raise FormatError(f"{what} must be an array of records, got {type(document).__name__}")
    check_entry_count(len(document), what)
    for index, item in enumerate(document):
        if not isinstance(item, dict):
            raise FormatError(f"{what} record {index} must be an object")
    return document


def _dump_json(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


# Composite requests (LwM2M 1.1 Read-Composite): a SenML pack of names only.


def encode_path_list(paths: Sequence[LwM2MPath], cbor: bool) -> bytes:
    """The body of a Read-Composite (FETCH): one record per path, its name only."""
    if cbor:
        return dump_cbor([{_CBOR_KEYS["n"]: str(path)} for path in paths])
    return _dump_json([{"n": str(path)} for path in paths])


def decode_path_list(payload: bytes, cbor: bool) -> list[LwM2MPath]:
    """The paths a Read-Composite asks for (base names carry over, values are refused)."""
    what = "SenML CBOR path list" if cbor else "SenML JSON path list"
    if cbor:
        document = load_cbor(payload, what, max_depth=2)
        if not isinstance(document, list):
            raise FormatError(f"{what} must be an array of records")
        check_entry_count(len(document), what)
        records = [
            _cbor_labels(item, f"{what} record {index}") if isinstance(item, dict) else None
            for index, item in enumerate(document)
        ]
    else:
        records = list(_record_list(_load_json(payload, what), what))
    paths: list[LwM2MPath] = []
    base_name = ""
    for index, labels in enumerate(records):
        if labels is None or set(labels) - {"bn", "n"}:
            raise FormatError(f"{what} record {index} may carry only bn and n")
        base = labels.get("bn", base_name)
        name = labels.get("n", "")
        if not isinstance(base, str) or not isinstance(name, str):
            raise FormatError(f"{what} record {index}: names must be text")
        base_name = base
        try:
            paths.append(LwM2MPath.parse(base_name + name))
        except PathError as err:
            raise FormatError(f"{what} record {index}: {err}") from None
    return paths
