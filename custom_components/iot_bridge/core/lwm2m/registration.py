"""LwM2M registration interface: who is registered, for how long, from where.

Pure state and rules (no sockets): the server feeds it Register / Update / De-register
requests as parsed query parameters and link-format payloads, and asks it which
registrations have expired. Everything a client sends is checked here first, so a hostile
client can only ever get a clear CoAP error back.
"""

from __future__ import annotations

import functools
import heapq
import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from .errors import CodecError
from .linkformat import RegisteredObjects, parse_registration

DEFAULT_LIFETIME: Final = 86400
MIN_LIFETIME: Final = 1
MAX_LIFETIME: Final = 366 * 86400
# A client updates shortly before its lifetime ends; allow for a slow network before calling
# it gone (10 % of the lifetime, between 2 s and 60 s).
_GRACE_FRACTION: Final = 0.1
_GRACE_MIN: Final = 2.0
_GRACE_MAX: Final = 60.0
# Endpoint names as real clients use them ("urn:imei:...", "zephyr-nrf91-0042", "node_7.a"):
# printable ASCII without spaces, quotes, slashes or control characters.
_ENDPOINT: Final = re.compile(r"[A-Za-z0-9._:@+=~-]{1,128}")
_VERSIONS: Final = frozenset({"1.0", "1.1", "1.2"})
_BINDING: Final = re.compile(r"[UMSNTQ]{1,6}")
_REGISTER_PARAMS: Final = frozenset({"ep", "lt", "lwm2m", "b", "Q", "sms", "d", "et", "eg"})
_UPDATE_PARAMS: Final = frozenset({"lt", "b", "Q", "sms"})


class RegistrationError(ValueError):
    """A Register/Update request the server must refuse; str() is the client-facing reason."""


class UnknownRegistration(RegistrationError):
    """The registration id in an Update or De-register is not (or no longer) known."""


@dataclass(frozen=True, slots=True)
class Registration:
    """One registered client, as of its last Register or Update."""

    endpoint: str
    registration_id: str
    lifetime: int
    version: str
    binding: str
    queue_mode: bool
    objects: RegisteredObjects
    # Where the client's last request came from (NAT rebinding changes it between updates);
    # requests to the client go there, through the socket it registered with.
    remote: Any
    registered_at: float
    updated_at: float

    @property
    def location(self) -> tuple[str, str]:
        """The Location-Path of this registration."""
        return ("rd", self.registration_id)

    @property
    def grace(self) -> float:
        """How long after its lifetime a silent client still counts as registered."""
        return min(_GRACE_MAX, max(_GRACE_MIN, self.lifetime * _GRACE_FRACTION))

    @property
    def expires_at(self) -> float:
        """Monotonic time at which the registration lapses without an Update."""
        return self.updated_at + self.lifetime + self.grace


def _flag(params: Mapping[str, str | None], name: str) -> bool:
    return name in params


def _lifetime(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIFETIME
    if not value.isdigit() or len(value) > 10:
        raise RegistrationError(f"lifetime {value[:16]!r} is not a whole number of seconds")
    lifetime = int(value)
    if not MIN_LIFETIME <= lifetime <= MAX_LIFETIME:
        raise RegistrationError(f"lifetime {lifetime} is outside {MIN_LIFETIME}..{MAX_LIFETIME}")
    return lifetime


def _binding(value: str | None) -> str:
    if value is None:
        return "U"
    if not _BINDING.fullmatch(value):
        raise RegistrationError(f"binding {value[:16]!r} is not a LwM2M binding")
    return value


def parse_query(query: tuple[str, ...], allowed: frozenset[str]) -> dict[str, str | None]:
    """Uri-Query options as name -> value (None for a bare flag such as Q)."""
    params: dict[str, str | None] = {}
    for item in query:
        name, separator, value = item.partition("=")
        if name not in allowed:
            continue  # unknown parameters are ignored, as the specification asks
        if name in params:
            raise RegistrationError(f"parameter {name!r} appears twice")
        params[name] = value if separator else None
    return params


class RegistrationStore:
    """Registrations by endpoint and by id, with their expiry order."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._by_endpoint: dict[str, Registration] = {}
        self._by_id: dict[str, Registration] = {}
        # (expires_at, registration_id): stale entries are skipped when popped.
        self._expiry: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Registration]:
        return iter(list(self._by_id.values()))

    def by_endpoint(self, endpoint: str) -> Registration | None:
        """The current registration of an endpoint."""
        return self._by_endpoint.get(endpoint)

    def by_id(self, registration_id: str) -> Registration | None:
        """A registration by the id in its location."""
        return self._by_id.get(registration_id)

    def register(
        self, query: tuple[str, ...], payload: bytes, remote: Any
    ) -> tuple[Registration, Registration | None]:
        """A Register request: the new registration and the one it replaces, if any."""
        params = parse_query(query, _REGISTER_PARAMS)
        endpoint = params.get("ep")
        if endpoint is None or not _ENDPOINT.fullmatch(endpoint):
            raise RegistrationError(
                "endpoint name (ep) missing or not 1-128 printable characters without spaces"
            )
        version = params.get("lwm2m") or "1.0"
        if version not in _VERSIONS:
            raise RegistrationError(f"LwM2M version {version[:8]!r} is not supported")
        binding = _binding(params.get("b"))
        objects = _objects(payload)
        now = self._clock()
        previous = self._by_endpoint.get(endpoint)
        if previous is not None:
            self._drop(previous)
        registration = Registration(
            endpoint=endpoint,
            registration_id=self._new_id(),
            lifetime=_lifetime(params.get("lt")),
            version=version,
            binding=binding,
            # 1.1 says queue mode with Q; 1.0 said it with the binding "UQ".
            queue_mode=_flag(params, "Q") or "Q" in binding,
            objects=objects,
            remote=remote,
            registered_at=now,
            updated_at=now,
        )
        self._store(registration)
        return registration, previous

    def update(
        self, registration_id: str, query: tuple[str, ...], payload: bytes, remote: Any
    ) -> tuple[Registration, Registration]:
        """An Update request: the updated registration and how it was before."""
        previous = self._by_id.get(registration_id)
        if previous is None:
            raise UnknownRegistration(f"no registration {registration_id[:16]!r}")
        params = parse_query(query, _UPDATE_PARAMS)
        changes: dict[str, Any] = {"remote": remote, "updated_at": self._clock()}
        if "lt" in params:
            changes["lifetime"] = _lifetime(params["lt"])
        if "b" in params:
            changes["binding"] = _binding(params["b"])
            changes["queue_mode"] = _flag(params, "Q") or "Q" in changes["binding"]
        elif "Q" in params:
            changes["queue_mode"] = True
        if payload:
            changes["objects"] = _objects(payload)
        registration = replace(previous, **changes)
        self._store(registration)
        return registration, previous

    def deregister(self, registration_id: str) -> Registration:
        """A De-register request: the registration that ended."""
        registration = self._by_id.get(registration_id)
        if registration is None:
            raise UnknownRegistration(f"no registration {registration_id[:16]!r}")
        self._drop(registration)
        return registration

    def touch(self, registration_id: str, remote: Any) -> Registration | None:
        """Traffic from the client (a notification, a Send) proves it is alive.

        Only the address follows (NAT); the lifetime still needs an Update, as the
        specification says.
        """
        registration = self._by_id.get(registration_id)
        if registration is None or registration.remote == remote:
            return registration
        registration = replace(registration, remote=remote)
        self._by_id[registration_id] = registration
        self._by_endpoint[registration.endpoint] = registration
        return registration

    def expired(self) -> list[Registration]:
        """Remove and return every registration whose lifetime (and grace) has passed."""
        now = self._clock()
        ended: list[Registration] = []
        while self._expiry and self._expiry[0][0] <= now:
            _, registration_id = heapq.heappop(self._expiry)
            registration = self._by_id.get(registration_id)
            if registration is not None and registration.expires_at <= now:
                self._drop(registration)
                ended.append(registration)
        return ended

    def next_expiry(self) -> float | None:
        """Monotonic time of the next possible expiry, if any registration exists."""
        return self._expiry[0][0] if self._expiry else None

    def _store(self, registration: Registration) -> None:
        self._by_endpoint[registration.endpoint] = registration
        self._by_id[registration.registration_id] = registration
        heapq.heappush(self._expiry, (registration.expires_at, registration.registration_id))
        # Updates push a new entry each time; keep the heap from growing without bound.
        if len(self._expiry) > 4 * len(self._by_id) + 64:
            self._expiry = [(reg.expires_at, reg.registration_id) for reg in self._by_id.values()]
            heapq.heapify(self._expiry)

    def _drop(self, registration: Registration) -> None:
        self._by_id.pop(registration.registration_id, None)
        if self._by_endpoint.get(registration.endpoint) is registration:
            del self._by_endpoint[registration.endpoint]

    def _new_id(self) -> str:
        while True:
            candidate = secrets.token_hex(4)
            if candidate not in self._by_id:
                return candidate


def _objects(payload: bytes) -> RegisteredObjects:
    try:
        return _parsed(payload)
    except CodecError as err:
        raise RegistrationError(f"object list: {err}") from err


@functools.lru_cache(maxsize=256)
def _parsed(payload: bytes) -> RegisteredObjects:
    """A fleet of one model registers the same object list: parse it once and share the
    (immutable) result, instead of one copy per endpoint in memory."""
    return parse_registration(payload)
