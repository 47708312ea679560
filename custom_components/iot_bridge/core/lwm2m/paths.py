"""LwM2M paths: /object/instance/resource/resource-instance."""

from __future__ import annotations

import re
from collections.abc import Iterable
from itertools import pairwise
from typing import Final, Self

from .errors import CodecError, PathError, UnsupportedFormatError

MAX_ID: Final = 65535
# Instance id 65535 (MAX_ID) is reserved by the core specification: it never names an instance.
MAX_INSTANCE_ID: Final = 65534
_LEVEL_NAMES: Final = ("object", "instance", "resource", "resource instance")
# Canonical decimal only: no sign, no leading zeros, so str(parse(s)) == s for every valid s.
_SEGMENT: Final = re.compile(r"0|[1-9][0-9]{0,4}")


class LwM2MPath:
    """An immutable path: the root, an object, an instance, a resource or a resource instance.

    Paths order like their id tuples, so a parent sorts right before its children.
    """

    __slots__ = ("_ids",)
    _ids: tuple[int, ...]

    def __init__(self, *ids: int) -> None:
        if len(ids) > len(_LEVEL_NAMES):
            raise PathError(f"a path has at most 4 ids, got {len(ids)}")
        for level, value in enumerate(ids):
            _check_id(level, value)
        object.__setattr__(self, "_ids", tuple(ids))

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse "/3/0/1" (or "/" for the root); raise PathError on anything else."""
        if not text.startswith("/"):
            raise PathError(f"path {text[:40]!r} must start with '/'")
        if text == "/":
            return cls()
        segments = text[1:].split("/", len(_LEVEL_NAMES))
        if len(segments) > len(_LEVEL_NAMES):
            raise PathError(f"path {text[:40]!r} has more than 4 ids")
        for segment in segments:
            if not _SEGMENT.fullmatch(segment):
                raise PathError(f"path {text[:40]!r}: {segment[:10]!r} is not a decimal id")
        try:
            return cls(*(int(segment) for segment in segments))
        except PathError as err:
            raise PathError(f"path {text[:40]!r}: {err}") from None

    @property
    def ids(self) -> tuple[int, ...]:
        """The ids from the object down; empty for the root."""
        return self._ids

    @property
    def depth(self) -> int:
        """0 root, 1 object, 2 instance, 3 resource, 4 resource instance."""
        return len(self._ids)

    @property
    def object_id(self) -> int | None:
        """The object id, None for the root."""
        return self._id_at(0)

    @property
    def instance_id(self) -> int | None:
        """The object instance id, if the path goes that deep."""
        return self._id_at(1)

    @property
    def resource_id(self) -> int | None:
        """The resource id, if the path goes that deep."""
        return self._id_at(2)

    @property
    def resource_instance_id(self) -> int | None:
        """The resource instance id, if the path goes that deep."""
        return self._id_at(3)

    @property
    def level_name(self) -> str:
        """What the path names: "root", "object", ..., "resource instance"."""
        return _LEVEL_NAMES[self.depth - 1] if self._ids else "root"

    @property
    def parent(self) -> LwM2MPath:
        """The path one level up; the root is its own parent."""
        return LwM2MPath(*self._ids[:-1])

    def child(self, child_id: int) -> LwM2MPath:
        """The path one level down."""
        return LwM2MPath(*self._ids, child_id)

    def startswith(self, prefix: LwM2MPath) -> bool:
        """True when this path is the prefix itself or lies below it."""
        return self._ids[: len(prefix._ids)] == prefix._ids

    def _id_at(self, level: int) -> int | None:
        return self._ids[level] if level < len(self._ids) else None

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("LwM2MPath is immutable")

    def __str__(self) -> str:
        return "/" + "/".join(map(str, self._ids))

    def __repr__(self) -> str:
        return f"LwM2MPath({str(self)!r})"

    def __hash__(self) -> int:
        return hash(self._ids)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LwM2MPath) and self._ids == other._ids

    def __lt__(self, other: LwM2MPath) -> bool:
        return self._ids < other._ids

    def __le__(self, other: LwM2MPath) -> bool:
        return self._ids <= other._ids

    def __gt__(self, other: LwM2MPath) -> bool:
        return self._ids > other._ids

    def __ge__(self, other: LwM2MPath) -> bool:
        return self._ids >= other._ids

    def __reduce__(self) -> tuple[type[LwM2MPath], tuple[int, ...]]:
        return (LwM2MPath, self._ids)


def _check_id(level: int, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise PathError(f"{_LEVEL_NAMES[level]} id must be an int, got {type(value).__name__}")
    limit = MAX_INSTANCE_ID if level == 1 else MAX_ID
    if not 0 <= value <= limit:
        raise PathError(f"{_LEVEL_NAMES[level]} id {value} is outside 0..{limit}")


ROOT: Final = LwM2MPath()


def check_disjoint(
    paths: Iterable[LwM2MPath], *, repeats: bool, error: type[CodecError] = UnsupportedFormatError
) -> None:
    """Refuse values both at a path and below it, which no reader can tell apart; a repeated
    path only where `repeats` (a time series repeats paths, a TLV tree cannot)."""
    ordered = sorted(paths)
    for first, second in pairwise(ordered):
        if first == second:
            if not repeats:
                raise error(f"{first} has two values")
        elif second.startswith(first):
            raise error(f"{first} has a value and instances ({second})")
