"""Command health of one device: how its commands ended over the last day.

Protocol-independent and free of Home Assistant: the hub feeds every outcome in with the
wall-clock time it ended, and reads counts, success rate, median latency, the last failure
and whether the device has done nothing but time out for a whole day.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass

from .model import CommandStatus

DAY = 24 * 3600.0
# Outcomes that say the device heard and answered: they end a streak of time-outs.
_ANSWERED = frozenset({CommandStatus.CONFIRMED, CommandStatus.REJECTED, CommandStatus.DELIVERED})
_FAILED = frozenset({CommandStatus.REJECTED, CommandStatus.TIMEOUT, CommandStatus.NOT_DELIVERED})


@dataclass(frozen=True, slots=True)
class Outcome:
    """One finished command as health statistics need it."""

    at: float  # wall-clock seconds when it ended
    status: CommandStatus
    latency_ms: float
    reason: str | None = None
    capability: str = ""
    action: str = ""


class CommandHealth:
    """Outcomes of one device's commands within a sliding window (a day by default)."""

    def __init__(self, window: float = DAY, max_outcomes: int = 10_000) -> None:
        self.window = window
        self._outcomes: deque[Outcome] = deque(maxlen=max_outcomes)
        self.last_failure: Outcome | None = None
        # When the current unbroken run of time-outs began (None: the last answer came back).
        self.timeout_streak_since: float | None = None

    def record(self, outcome: Outcome) -> None:
        """Add a finished command."""
        self._outcomes.append(outcome)
        if outcome.status in _FAILED:
            self.last_failure = outcome
        if outcome.status is CommandStatus.TIMEOUT:
            if self.timeout_streak_since is None:
                self.timeout_streak_since = outcome.at
        elif outcome.status in _ANSWERED:
            self.timeout_streak_since = None
        # NOT_DELIVERED (never sent) says nothing about whether the device answers.

    def _recent(self, now: float) -> list[Outcome]:
        while self._outcomes and self._outcomes[0].at < now - self.window:
            self._outcomes.popleft()
        return list(self._outcomes)

    def count(self, now: float) -> int:
        """Commands that ended within the window."""
        return len(self._recent(now))

    def success_rate(self, now: float) -> float | None:
        """Percentage of the window's commands the device carried out (None: no commands)."""
        recent = self._recent(now)
        if not recent:
            return None
        succeeded = sum(outcome.status not in _FAILED for outcome in recent)
        return round(100.0 * succeeded / len(recent), 1)

    def median_latency(self, now: float) -> float | None:
        """Median milliseconds until confirmation, over the window's confirmed commands."""
        latencies = [
            outcome.latency_ms
            for outcome in self._recent(now)
            if outcome.status is CommandStatus.CONFIRMED
        ]
        return round(statistics.median(latencies), 2) if latencies else None

    def timing_out_for(self, now: float) -> float:
        """Seconds the device has answered no command (0 unless its last outcomes timed out)."""
        if self.timeout_streak_since is None:
            return 0.0
        return max(0.0, now - self.timeout_streak_since)

    def recent(self, now: float, limit: int) -> list[Outcome]:
        """The last `limit` outcomes within the window, oldest first."""
        return self._recent(now)[-limit:]
