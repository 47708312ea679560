"""What every protocol package offers the Home Assistant side, and what it reports back.

A *bridge* owns one transport (an MQTT broker connection, the CoAP client of one device,
an LwM2M server socket) and the devices it knows through it. The Home Assistant hub talks
to bridges only through `Bridge` and hears from them only through `BridgeListener`, so
entities, actions, events and diagnostics never know which protocol is behind a device.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Protocol

from .model import Capability, Command, CommandResult, Device


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
