"""Locks: the new state is shown only once the device confirms it."""

from __future__ import annotations

from typing import Any

from homeassistant.components.lock import LockEntity
from homeassistant.components.lock.const import LockState

from .compat import LockEntityFeature
from .core.model import CapabilityKind
from .entity import IotBridgeEntity, capability_platform

PARALLEL_UPDATES = 0

# What the lock shows while a command is in flight.
_IN_FLIGHT = {"lock": LockState.LOCKING, "unlock": LockState.UNLOCKING, "open": LockState.OPENING}


class IotBridgeLock(IotBridgeEntity, LockEntity):
    """A lock whose state changes only on the device's confirmation."""

    _attr_supported_features = LockEntityFeature.OPEN
    _in_flight: LockState | None = None

    def _reported(self) -> str | None:
        value = self.reported_value
        return value if isinstance(value, str) else None

    def _shown(self) -> str | None:
        return self._in_flight or self._reported()

    @property
    def is_locked(self) -> bool | None:
        """Locked, as last confirmed."""
        shown = self._shown()
        return None if shown is None else shown == LockState.LOCKED

    @property
    def is_locking(self) -> bool:
        """A lock command is in flight (or the device says it is locking)."""
        return self._shown() == LockState.LOCKING

    @property
    def is_unlocking(self) -> bool:
        """An unlock command is in flight."""
        return self._shown() == LockState.UNLOCKING

    @property
    def is_opening(self) -> bool:
        """An open command is in flight."""
        return self._shown() == LockState.OPENING

    @property
    def is_open(self) -> bool:
        """Open, as last confirmed."""
        return self._shown() == LockState.OPEN

    @property
    def is_jammed(self) -> bool:
        """The device reported the lock jammed."""
        return self._shown() == LockState.JAMMED

    async def async_lock(self, **kwargs: Any) -> None:
        """Lock and wait for the device's confirmation."""
        await self._run("lock")

    async def async_unlock(self, **kwargs: Any) -> None:
        """Unlock and wait for the device's confirmation."""
        await self._run("unlock")

    async def async_open(self, **kwargs: Any) -> None:
        """Open (unlatch) and wait for the device's confirmation."""
        await self._run("open")

    async def _run(self, action: str) -> None:
        self._in_flight = _IN_FLIGHT[action]
        self.async_write_ha_state()
        try:
            await self.async_command(action)
        finally:
            # Confirmed: the device state now holds the new value. Failed: back to
            # the last confirmed (or jammed) state the device reported.
            self._in_flight = None
            self.async_write_ha_state()


async_setup_entry = capability_platform(CapabilityKind.LOCK, IotBridgeLock)
