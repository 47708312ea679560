"""Command health statistics of one device (core, no Home Assistant)."""

from __future__ import annotations

from custom_components.iot_bridge.core.health import DAY, CommandHealth, Outcome
from custom_components.iot_bridge.core.model import CommandStatus

T0 = 1_800_000_000.0


def _outcome(at: float, status: CommandStatus, latency: float = 1.0, reason: str = "") -> Outcome:
    return Outcome(at=at, status=status, latency_ms=latency, reason=reason or None)


def test_empty_health_has_no_figures() -> None:
    health = CommandHealth()
    assert health.count(T0) == 0
    assert health.success_rate(T0) is None
    assert health.median_latency(T0) is None
    assert health.last_failure is None
    assert health.timing_out_for(T0) == 0.0


def test_counts_rate_and_median_over_the_last_day() -> None:
    health = CommandHealth()
    health.record(_outcome(T0, CommandStatus.CONFIRMED, 100.0))  # falls out of the window
    for offset, latency in ((DAY, 2.0), (DAY + 1, 4.0), (DAY + 2, 9.0)):
        health.record(_outcome(T0 + offset, CommandStatus.CONFIRMED, latency))
    health.record(_outcome(T0 + DAY + 3, CommandStatus.REJECTED, 1.0, "door blocked"))
    now = T0 + DAY + 10
    assert health.count(now) == 4
    assert health.success_rate(now) == 75.0
    # Only confirmed commands count for latency; the old 100 ms one left the window.
    assert health.median_latency(now) == 4.0
    assert health.last_failure is not None
    assert health.last_failure.reason == "door blocked"
    assert [outcome.latency_ms for outcome in health.recent(now, 2)] == [9.0, 1.0]


def test_timeout_streak_starts_at_first_timeout_and_ends_with_an_answer() -> None:
    health = CommandHealth()
    health.record(_outcome(T0, CommandStatus.TIMEOUT))
    # Never sent: says nothing about the device, neither ends nor restarts the streak.
    health.record(_outcome(T0 + 10, CommandStatus.NOT_DELIVERED))
    health.record(_outcome(T0 + DAY, CommandStatus.TIMEOUT))
    assert health.timing_out_for(T0 + DAY) == DAY
    health.record(_outcome(T0 + DAY + 1, CommandStatus.REJECTED, reason="busy"))
    assert health.timing_out_for(T0 + DAY + 2) == 0.0
    health.record(_outcome(T0 + DAY + 3, CommandStatus.TIMEOUT))
    assert health.timing_out_for(T0 + DAY + 5) == 2.0
