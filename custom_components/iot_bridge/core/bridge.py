"""What every protocol package offers the Home Assistant side, and what it reports back.

A *bridge* owns one transport (an MQTT broker connection, the CoAP client of one device,
an LwM2M server socket) and the devices it knows through it. The Home Assistant hub talks
to bridges only through `Bridge` and hears from them only through `BridgeListener`, so
entities, actions, events and diagnostics never know which protocol is behind a device.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from .model import Capability, Command, CommandResult, Device

# Problems a bridge can report to its listener (problem_changed); the user can fix each.
# The MQTT broker holds back small packets (Nagle's algorithm, no `set_tcp_nodelay true`).
PROBLEM_BROKER_NAGLE = "broker_nagle"


class Admission(StrEnum):
    """Whether a device the bridge just met may become a Home Assistant device."""

    ACCEPTED = "accepted"
    # Known to exist, waiting for the user: no entities, no requests beyond what the
    # protocol itself needs (an LwM2M registration is still answered).
    PENDING = "pending"
    IGNORED = "ignored"


class BridgeStartError(Exception):
    """The transport cannot start now (peer unreachable, port taken); str() says why."""


class BridgeAuthError(BridgeStartError):
    """The peer refused our credentials: retrying cannot help, the user must act."""


class OperationFailure(StrEnum):
    """Why a raw protocol operation (`Bridge.operate`) did not succeed."""

    INVALID = "invalid"  # the request itself is wrong: nothing was sent
    REFUSED = "refused"  # the device answered with an error
    TIMEOUT = "timeout"  # no answer within the deadline (or the device slept through it)
    NOT_SUPPORTED = "not_supported"  # this protocol has no raw operations


class OperationError(Exception):
    """A raw operation failed; str() is the reason, `code` the device's answer if any."""

    def __init__(self, failure: OperationFailure, reason: str, *, code: str = "") -> None:
        super().__init__(reason)
        self.failure = failure
        self.reason = reason
        self.code = code


class BridgeListener(Protocol):
    """What the owner (the Home Assistant hub) hears from a bridge."""

    def device_discovered(self, device: Device, previous: Device | None) -> None:
        """A device appeared, or its description changed (previous is the old one)."""

    def device_removed(self, device_id: str) -> None:
        """A device went away for good (it cleared its announcement, de-registered, ...)."""

    def device_state_changed(self, device: Device, changed: frozenset[str] | None) -> None:
        """Values of these capability keys changed (None: availability or everything)."""

    def connection_changed(self, connected: bool) -> None:
        """The transport went down or came back."""

    def problem_changed(self, problem: str, active: bool) -> None:
        """A problem the user can fix (PROBLEM_*) appeared or went away."""


class Bridge(Protocol):
    """One protocol's transport and devices, as the hub uses them."""

    @property
    def devices(self) -> Mapping[str, Device]:
        """Devices known now, by protocol device id: a live view, the same object for the
        bridge's lifetime (the hub keeps it)."""

    @property
    def connected(self) -> bool:
        """Whether the transport is up (broker connected, device reachable, socket bound)."""

    def describe(self) -> str:
        """Where this bridge talks to, for log lines and error messages."""

    async def start(self) -> None:
        """Start the transport; raise BridgeStartError / BridgeAuthError when it cannot."""

    async def stop(self) -> None:
        """Stop the transport and end everything it started."""

    async def execute(self, command: Command, capability: Capability) -> CommandResult:
        """Carry out one command through the command engine and return its single outcome."""

    async def admit(self, device_id: str) -> None:
        """The user accepted a device that waited for it (Admission.PENDING)."""

    async def forget_device(self, device_id: str) -> None:
        """The user deleted the device: forget it, and make it stay gone where possible."""

    def diagnostics(self) -> dict[str, Any]:
        """Protocol details for the diagnostics download (no secrets)."""

    def device_diagnostics(self, device_id: str) -> dict[str, Any]:
        """Protocol details of one device (topics, resources, registration) for its download.

        Addresses may appear under the keys `host`, `address`; the caller redacts those.
        """


@runtime_checkable
class OperatingBridge(Bridge, Protocol):
    """A bridge whose protocol has path-addressed operations (LwM2M's read, write, ...)."""

    async def operate(
        self, device_id: str, action: str, params: Mapping[str, Any], *, deadline: float
    ) -> dict[str, Any]:
        """Carry out one raw operation; its answer as response data, or OperationError."""


@runtime_checkable
class LapseReporting(Protocol):
    """A bridge whose devices hold registrations that can lapse (LwM2M lifetimes)."""

    def lapsed_since(self, device_id: str) -> float | None:
        """Unix time the device's registration lapsed; None while registered."""
