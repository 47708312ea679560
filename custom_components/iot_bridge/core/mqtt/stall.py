"""Does the broker hold back small packets (Nagle's algorithm without `set_tcp_nodelay true`)?

A broker that leaves Nagle's algorithm on sends a second small packet to a client only once
the client acknowledged the first; the client's kernel delays that acknowledgement by ~40 ms
when it has nothing to send back. A command's answer and the device's new state are two such
packets, so every confirmation takes ~40 ms longer.

Command latencies alone cannot tell this from a device that is merely slow. So a slow command
(or a stall already reported) sets off a probe that involves no device: two QoS 0 messages sent
back to back through the broker to ourselves. Without Nagle the second arrives within a
millisecond of the first; with it, ~40 ms later. The verdict needs most recent probes to agree,
and clears once the last few arrived together again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

_LOGGER = logging.getLogger(__name__)

# A command slower than this sets off a probe.
SLOW_COMMAND_MS = 20.0
# Gap between the two probe messages that counts as held back, and as clearly not.
STALL_GAP_MS = 25.0
CLEAR_GAP_MS = 10.0
# Verdicts look at this many recent probes; a stall needs STALLED_PROBES of them.
_RECENT_PROBES = 5
_STALLED_PROBES = 3
_CLEAR_PROBES = 3
_PROBE_TIMEOUT = 1.0
# At most one probe per this many seconds: a busy hub adds next to no traffic (a verdict
# takes a few minutes of slow commands, which is soon enough for a repair).
PROBE_INTERVAL = 30.0


class BrokerStallProbe:
    """Sends probe pairs through the broker and decides whether it holds packets back."""

    def __init__(
        self,
        publish: Callable[[str, bytes], Awaitable[None]],
        topic: str,
        on_change: Callable[[bool], None],
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._publish = publish
        self.topic = topic
        self._on_change = on_change
        self._clock = clock
        self._numbers = itertools.count(1)
        self._arrivals: dict[str, float] = {}
        self._waiting: asyncio.Future[None] | None = None
        self._expected: str | None = None
        self._task: asyncio.Task[None] | None = None
        self.gaps: deque[float] = deque(maxlen=_RECENT_PROBES)
        self.stalled = False
        self.probes = 0
        self.interval = PROBE_INTERVAL
        self._last_probe: float | None = None

    @property
    def subscription(self) -> str:
        """The filter to subscribe to (QoS 0: no acknowledgement of ours may help the broker)."""
        return f"{self.topic}/#"

    @property
    def busy(self) -> bool:
        """Whether a probe is under way."""
        return self._task is not None and not self._task.done()

    def command_ended(self, latency_ms: float) -> None:
        """A command ended: probe when it was slow, or to see a reported stall go away."""
        if self.busy:
            return
        now = self._clock()
        if self._last_probe is not None and now - self._last_probe < self.interval:
            return
        if latency_ms >= SLOW_COMMAND_MS or self.stalled:
            self._last_probe = now
            self._task = asyncio.get_running_loop().create_task(
                self._probe_once(), name="iot_bridge_mqtt_stall_probe"
            )

    def handle(self, topic: str, payload: bytes) -> None:
        """A probe message came back (called for messages on `subscription`)."""
        del payload
        self._arrivals[topic] = self._clock()
        if topic == self._expected and self._waiting is not None and not self._waiting.done():
            self._waiting.set_result(None)

    async def stop(self) -> None:
        """End a probe in progress."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _probe_once(self) -> None:
        number = next(self._numbers)
        first, second = f"{self.topic}/{number}/a", f"{self.topic}/{number}/b"
        self._arrivals.clear()
        self._expected = second
        self._waiting = asyncio.get_running_loop().create_future()
        try:
            await self._publish(first, b"")
            await self._publish(second, b"")
            async with asyncio.timeout(_PROBE_TIMEOUT):
                await self._waiting
        except Exception as err:
            _LOGGER.debug("Broker stall probe %s got no result: %r", number, err)
            return
        finally:
            self._expected = None
        if first not in self._arrivals:
            return
        self.record((self._arrivals[second] - self._arrivals[first]) * 1000)

    def record(self, gap_ms: float) -> None:
        """Add one probe's gap between its two messages and update the verdict."""
        self.probes += 1
        self.gaps.append(gap_ms)
        _LOGGER.debug("Broker stall probe: second message %.1f ms after the first", gap_ms)
        if not self.stalled and sum(gap >= STALL_GAP_MS for gap in self.gaps) >= _STALLED_PROBES:
            self._set(True)
        elif (
            self.stalled
            and len(self.gaps) >= _CLEAR_PROBES
            and all(gap < CLEAR_GAP_MS for gap in list(self.gaps)[-_CLEAR_PROBES:])
        ):
            self._set(False)

    def _set(self, stalled: bool) -> None:
        self.stalled = stalled
        if stalled:
            _LOGGER.warning(
                "The MQTT broker holds back small packets (~%.0f ms): set_tcp_nodelay is off",
                sorted(self.gaps)[len(self.gaps) // 2],
            )
        else:
            _LOGGER.info("The MQTT broker no longer holds back small packets")
            self.gaps.clear()  # a new verdict needs new evidence
        self._on_change(stalled)
