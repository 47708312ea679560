"""Per-device overload protection for state: one chatty device must not starve the rest.

Below `limit` state messages per second a device's every message is applied at once (the
gate costs a clock read and a counter). Above it the device is "flooding": its messages
are merged into one pending slot per device (newest value per key wins) and applied every
`interval` seconds, so Home Assistant does a few entity updates per second for it instead
of one per message. One warning names the device when this starts and one info line says
when it has calmed down (a whole window at or below the limit). Memory is bounded: one
slot per flooding device, at most `max_keys` keys each, and one counter per device that
sent in the current window.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

_LOGGER = logging.getLogger(__name__)

# State messages per device per second applied one by one; more is a flood.
FLOOD_LIMIT: Final = 200
# How often a flooding device's newest state is applied.
FLOOD_APPLY_INTERVAL: Final = 0.25
_WINDOW: Final = 1.0
_MAX_KEYS: Final = 64

StateSink = Callable[[str, Mapping[str, Any]], object]


class StateFloodGate:
    """Decides per message whether to apply state now or hold the newest for later."""

    def __init__(
        self,
        apply: StateSink,
        *,
        limit: int | None = None,
        interval: float | None = None,
        logger: logging.Logger = _LOGGER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._apply = apply
        # Read at construction, so a benchmark can patch the module constants.
        self.limit = FLOOD_LIMIT if limit is None else limit
        self._interval = FLOOD_APPLY_INTERVAL if interval is None else interval
        self._logger = logger
        self._clock = clock
        self._counts: dict[str, int] = {}
        self._window_end = 0.0
        # Flooding devices and the state they sent since the last flush.
        self._pending: dict[str, dict[str, Any]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self.held = 0  # messages merged into a pending slot instead of applied one by one

    @property
    def flooding(self) -> list[str]:
        """Devices whose state is currently coalesced."""
        return list(self._pending)

    def admit(self, device_id: str, values: Mapping[str, Any]) -> bool:
        """True: apply these values now. False: they are held (the device is flooding)."""
        now = self._clock()
        if now >= self._window_end:
            self._roll(now)
        count = self._counts.get(device_id, 0) + 1
        self._counts[device_id] = count
        if count <= self.limit and device_id not in self._pending:
            return True
        self._hold(device_id, values)
        return False

    def forget(self, device_id: str) -> None:
        """The device is gone: drop what is held for it."""
        self._pending.pop(device_id, None)

    def stop(self) -> None:
        """Cancel the flush timer and drop held state (the bridge is stopping)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending.clear()
        self._counts.clear()

    def _hold(self, device_id: str, values: Mapping[str, Any]) -> None:
        self.held += 1
        slot = self._pending.get(device_id)
        if slot is None:
            slot = self._pending[device_id] = {}
            self._logger.warning(
                "Device %s sends more than %d state updates per second; only its newest "
                "state is applied, every %s s, until it calms down",
                device_id,
                self.limit,
                self._interval,
            )
        for key, value in values.items():
            if key in slot or len(slot) < _MAX_KEYS:
                slot[key] = value
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._interval, self._flush)

    def _flush(self) -> None:
        self._timer = None
        for device_id, slot in list(self._pending.items()):
            if slot:
                self._pending[device_id] = {}
                self._apply_safely(device_id, slot)
        now = self._clock()
        if now >= self._window_end:
            self._roll(now)
        if self._pending:
            self._timer = asyncio.get_running_loop().call_later(self._interval, self._flush)

    def _roll(self, now: float) -> None:
        """Start a new window; devices that stayed within the limit in the last one calm down."""
        # A window long past (nothing arrived for a while) counts as a quiet one.
        counts = self._counts if now < self._window_end + _WINDOW else {}
        for device_id in list(self._pending):
            sent = counts.get(device_id, 0)
            if sent <= self.limit:
                slot = self._pending.pop(device_id)
                self._logger.info(
                    "Device %s calmed down (%d state updates in the last second); each "
                    "update is applied again",
                    device_id,
                    sent,
                )
                if slot:
                    self._apply_safely(device_id, slot)
        self._counts = {}
        self._window_end = now + _WINDOW

    def _apply_safely(self, device_id: str, values: Mapping[str, Any]) -> None:
        try:
            self._apply(device_id, values)
        except Exception:
            self._logger.exception("Error applying held state of device %s", device_id)
