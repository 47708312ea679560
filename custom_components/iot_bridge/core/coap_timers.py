"""Timers aiocoap starts and never cancels, tracked so a shutdown leaves nothing behind.

aiocoap's message layer schedules a timer per received message (duplicate detection, for
EXCHANGE_LIFETIME, about four minutes) and per request (the empty-ACK delay) without
keeping their handles; `Context.shutdown()` leaves them on the event loop. Home Assistant
(and its test plugin) expects an unloaded integration to leave no timer running, so every
context IoT Bridge creates gets its message layer's timers tracked and cancelled on close.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiocoap


class _TrackingLoop:
    """The event loop as aiocoap's message manager sees it: every timer is remembered."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._timers: list[asyncio.TimerHandle] = []
        self._prune_at = 1024

    def call_later(
        self, delay: float, callback: Callable[..., object], *args: Any, **kwargs: Any
    ) -> asyncio.TimerHandle:
        handle = self._loop.call_later(delay, callback, *args, **kwargs)
        self._timers.append(handle)
        if len(self._timers) >= self._prune_at:
            now = self._loop.time()
            self._timers = [t for t in self._timers if not t.cancelled() and t.when() > now]
            # Prune again only once the list has doubled: amortised O(1) per timer.
            self._prune_at = max(1024, 2 * len(self._timers))
        return handle

    def cancel_all(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)


def track_timers(context: aiocoap.Context) -> Callable[[], None]:
    """Route the context's message-layer timers through a tracker; returns its canceller."""
    trackers: list[_TrackingLoop] = []
    for interface in getattr(context, "request_interfaces", ()):
        manager = getattr(interface, "token_interface", None)
        if manager is not None and hasattr(manager, "loop"):
            tracker = _TrackingLoop(manager.loop)
            manager.loop = tracker
            trackers.append(tracker)

    def cancel() -> None:
        for tracker in trackers:
            tracker.cancel_all()

    return cancel


async def shutdown(context: aiocoap.Context, cancel_timers: Callable[[], None]) -> None:
    """Shut a context down and cancel the timers aiocoap left on the loop."""
    try:
        await context.shutdown()
    finally:
        cancel_timers()
