"""Tests for the confirmed-command engine, with a scriptable in-memory transport.

The real transports are tested against real peers elsewhere; here faults must happen on
demand (lost connection on attempt 2, an ack that never comes, an answer racing the ack),
so a fake transport is the right tool. Real time with short deadlines keeps it honest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custom_components.iot_bridge.core.commands import (
    CommandEngine,
    ReplyVerdict,
    TransportInterrupted,
    TransportTimeout,
    TransportUnavailable,
)
from custom_components.iot_bridge.core.model import (
    Command,
    CommandReply,
    CommandResult,
    CommandStatus,
)

SLACK = 0.15  # generous scheduling slack for timing assertions on busy machines


def ok_reply(command_id: str) -> CommandReply:
    return CommandReply(command_id, ok=True, state={"door": "open"})


@dataclass
class FakeTransport:
    """Records every attempt and misbehaves as scripted, per 1-based attempt number."""

    engine: CommandEngine
    fail: dict[int, str] = field(default_factory=dict)  # attempt -> TransportUnavailable text
    hang: Collection[int] = ()  # attempts whose ack never comes
    crash: Collection[int] = ()  # attempts raising an unexpected error
    answer_on: Collection[int] = ()  # attempts the device answers
    answer_delay: float = 0.0  # 0: answer arrives before the transport's ack
    ack_delay: float = 0.0
    reply: Callable[[str], CommandReply] = ok_reply
    calls: list[tuple[str, int, float]] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)
    verdicts: list[ReplyVerdict] = field(default_factory=list)
    cancelled: int = 0
    _timers: list[asyncio.TimerHandle] = field(default_factory=list)

    async def send_command(self, command: Command, *, attempt: int, expires_in: float) -> None:
        self.calls.append((command.command_id, attempt, expires_in))
        self.sent_at.append(time.monotonic())
        if attempt in self.fail:
            raise TransportUnavailable(self.fail[attempt])
        if attempt in self.crash:
            raise RuntimeError("bug in transport")
        if attempt in self.answer_on:
            self._schedule_answer(command.command_id)
        try:
            if attempt in self.hang:
                await asyncio.Event().wait()
            if self.ack_delay:
                await asyncio.sleep(self.ack_delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    def _schedule_answer(self, command_id: str) -> None:
        if self.answer_delay <= 0:
            self.answer(command_id)
            return
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(self.answer_delay, self.answer, command_id))

    def answer(self, command_id: str) -> None:
        self.verdicts.append(self.engine.handle_reply(self.reply(command_id)))

    @property
    def ids(self) -> set[str]:
        return {command_id for command_id, _, _ in self.calls}

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()


async def run(
    engine: CommandEngine,
    transport: FakeTransport,
    *,
    deadline: float,
    confirmable: bool = True,
    retries: int | None = None,
) -> tuple[CommandResult, float]:
    """Execute one fresh command; return its result and the measured wall time."""
    command = engine.new_command("dev1", "door2_lock", "open", deadline=deadline, retries=retries)
    started = time.monotonic()
    result = await engine.execute(transport, command, confirmable=confirmable)
    return result, time.monotonic() - started


def assert_idle(engine: CommandEngine) -> None:
    """Nothing pending and no task of ours left running."""
    assert engine.pending_ids == []
    assert asyncio.all_tasks() == {asyncio.current_task()}


# -- basic outcomes ---------------------------------------------------------------


def test_new_command_has_unique_sortable_id_and_deadline() -> None:
    engine = CommandEngine(deadline=7.0, wall_clock=lambda: 1_764_000_000.0)
    first = engine.new_command("dev1", "door2_lock", "open", {"x": 1})
    engine.deadline = 3.0  # defaults may change at runtime; built commands keep theirs
    second = engine.new_command("dev1", "door2_lock", "open")
    third = engine.new_command("dev1", "door2_lock", "open", deadline=0.5, retries=-1)
    assert len({first.command_id, second.command_id, third.command_id}) == 3
    assert len(first.command_id) == 26
    assert first.command_id[:10] == second.command_id[:10]  # same millisecond prefix
    assert first.params == {"x": 1}
    assert second.params == {}
    assert first.deadline_unix == 1_764_000_007.0
    assert second.deadline_unix == 1_764_000_003.0
    assert (first.retries, third.retries) == (2, 0)  # the default budget; never negative
    assert third.deadline_unix == 1_764_000_000.5


async def test_confirmed() -> None:
    engine = CommandEngine()
    transport = FakeTransport(engine, answer_on={1}, answer_delay=0.02)
    result, elapsed = await run(engine, transport, deadline=0.5)
    assert result.status is CommandStatus.CONFIRMED
    assert result.succeeded
    assert result.state == {"door": "open"}
    assert result.reason is None
    assert result.attempts == 1
    assert 15 <= result.latency_ms < 120
    assert elapsed < 0.15
    assert transport.verdicts == [ReplyVerdict.ACCEPTED]
    assert_idle(engine)


async def test_rejected_with_reason_and_state() -> None:
    engine = CommandEngine()

    def refuse(command_id: str) -> CommandReply:
        return CommandReply(command_id, ok=False, reason="door blocked", state={"lock": "jammed"})

    transport = FakeTransport(engine, answer_on={1}, answer_delay=0.01, reply=refuse)
    result, _ = await run(engine, transport, deadline=0.5)
    assert result.status is CommandStatus.REJECTED
    assert not result.succeeded
    assert result.reason == "door blocked"
    assert result.state == {"lock": "jammed"}
    assert result.attempts == 1


async def test_rejected_without_reason_gets_default() -> None:
    engine = CommandEngine()
    transport = FakeTransport(
        engine, answer_on={1}, reply=lambda command_id: CommandReply(command_id, ok=False)
    )
    result, _ = await run(engine, transport, deadline=0.5)
    assert result.status is CommandStatus.REJECTED
    assert result.reason == "rejected by device"
    assert result.state is None


async def test_timeout_within_deadline() -> None:
    engine = CommandEngine()
    transport = FakeTransport(engine)
    result, elapsed = await run(engine, transport, deadline=0.2, retries=0)
    assert result.status is CommandStatus.TIMEOUT
    assert result.reason == "no answer within 0.2 s"
    assert result.attempts == 1
    assert 0.19 <= elapsed < 0.2 + SLACK
    assert 190 <= result.latency_ms < (0.2 + SLACK) * 1000
    assert_idle(engine)


async def test_deadline_carries_over_from_new_command() -> None:
    engine = CommandEngine()
    command = engine.new_command("dev1", "door2_lock", "open", deadline=0.2, retries=0)
    await asyncio.sleep(0.1)  # the caller dawdled; the command keeps its deadline
    started = time.monotonic()
    result = await engine.execute(FakeTransport(engine), command)
    assert result.status is CommandStatus.TIMEOUT
    assert 0.05 < time.monotonic() - started < 0.1 + SLACK


async def test_wall_clock_jump_cannot_stretch_the_deadline() -> None:
    calls = 0

    def jumpy_wall_clock() -> float:
        # Two reads happen before the send (new_command, execute start); then it jumps back.
        nonlocal calls
        calls += 1
        return time.time() - (3600 if calls > 2 else 0)

    engine = CommandEngine(wall_clock=jumpy_wall_clock)
    result, elapsed = await run(engine, FakeTransport(engine), deadline=0.1)
    assert result.status is CommandStatus.TIMEOUT
    assert elapsed < 0.1 + SLACK


# -- retries ----------------------------------------------------------------------


async def test_retries_reuse_the_same_id_and_are_spread() -> None:
    engine = CommandEngine(retries=2)
    transport = FakeTransport(engine)
    command = engine.new_command("dev1", "door2_lock", "open", deadline=0.3)
    started = time.monotonic()
    result = await engine.execute(transport, command)
    assert result.status is CommandStatus.TIMEOUT
    assert result.attempts == 3
    assert [attempt for _, attempt, _ in transport.calls] == [1, 2, 3]
    assert transport.ids == {command.command_id}
    expires = [expires_in for _, _, expires_in in transport.calls]
    assert expires[0] > expires[1] > expires[2] > 0
    assert expires[0] <= 0.3
    offsets = [at - started for at in transport.sent_at]
    for offset, planned in zip(offsets, (0.0, 0.1, 0.2), strict=True):
        assert planned - 0.01 <= offset < planned + 0.06
    assert engine.stats["retries"] == 2


async def test_retry_count_per_call_overrides_the_default() -> None:
    engine = CommandEngine(retries=5)
    transport = FakeTransport(engine)
    result, _ = await run(engine, transport, deadline=0.1, retries=1)
    assert result.attempts == 2
    assert len(transport.calls) == 2


async def test_no_attempt_at_or_after_the_deadline() -> None:
    # Slow acks push each attempt past its slot; none may start once time is up.
    engine = CommandEngine()
    transport = FakeTransport(engine, ack_delay=0.08)
    command = engine.new_command("dev1", "door2_lock", "open", deadline=0.2, retries=5)
    started = time.monotonic()
    result = await engine.execute(transport, command)
    assert result.status is CommandStatus.TIMEOUT
    assert result.attempts == len(transport.calls) == 3
    assert all(at - started < 0.2 for at in transport.sent_at)
    assert all(expires_in > 0 for _, _, expires_in in transport.calls)
    await asyncio.sleep(0.05)
    assert len(transport.calls) == 3


async def test_expired_command_is_never_sent() -> None:
    engine = CommandEngine()
    transport = FakeTransport(engine)
    result, elapsed = await run(engine, transport, deadline=-1.0)
    assert result.status is CommandStatus.NOT_DELIVERED
    assert result.attempts == 0
    assert transport.calls == []
    assert elapsed < 0.05


async def test_answer_to_second_attempt_stops_further_attempts() -> None:
    engine = CommandEngine()
    transport = FakeTransport(engine, answer_on={2}, answer_delay=0.01)
    result, elapsed = await run(engine, transport, deadline=0.2, retries=3)
    assert result.status is CommandStatus.CONFIRMED
    assert result.attempts == 2
    assert 0.05 <= elapsed < 0.05 + SLACK
    await asyncio.sleep(0.1)  # past the third and fourth slots
    assert len(transport.calls) == 2
    assert engine.stats["retries"] == 1


# -- transport failures -------------------------------------------------------------


async def test_first_attempt_unavailable_ends_at_once() -> None:
    engine = CommandEngine()
    transport = FakeTransport(engine, fail={1: "broker offline"})
    result, elapsed = await run(engine, transport, deadline=0.5)
    assert result.status is CommandStatus.NOT_DELIVERED
    assert result.reason == "broker offline"
    assert result.attempts == 1
    assert result.latency_ms < 50
    assert elapsed < 0.05
    assert_idle(engine)


async def test_never_delivered_spends_no_retries() -> None:
    engine = CommandEngine()
    transport = FakeTransport(engine, fail=dict.fromkeys(range(1, 4), "not connected"))
    result, _ = await run(engine, transport, deadline=0.3, retries=2)
    assert result.status is CommandStatus.NOT_DELIVERED
    assert result.reason == "not connected"
    assert len(transport.calls) == 1
    assert engine.stats["retries"] == 0


async def test_later_attempt_failure_then_timeout_mentions_the_error() -> None:
    engine = CommandEngine()
    transport = FakeTransport(engine, fail={2: "connection lost"})
    result, elapsed = await run(engine, transport, deadline=0.2, retries=2)
    assert result.status is CommandStatus.TIMEOUT
    assert result.reason == "no answer within 0.2 s (connection lost)"
    assert result.attempts == 3  # the failed attempt counts, the third still went out
    assert elapsed < 0.2 + SLACK


async def test_later_attempt_failure_then_answer_confirms() -> None:
    engine = CommandEngine()
    transport = FakeTransport(engine, fail={2: "connection lost"}, answer_on={3})
    result, _ = await run(engine, transport, deadline=0.15, retries=2)
    assert result.status is CommandStatus.CONFIRMED
    assert result.attempts == 3


async def test_unexpected_transport_error_is_an_outcome_not_an_exception() -> None:
    engine = CommandEngine()
    transport = FakeTransport(engine, crash={1})
    result, _ = await run(engine, transport, deadline=0.3)
    assert result.status is CommandStatus.NOT_DELIVERED
    assert result.reason is not None
    assert "bug in transport" in result.reason


async def test_reply_during_send_is_accepted() -> None:
    # The answer overtakes the transport's own ack (broker relays faster than it PUBACKs).
    engine = CommandEngine()
    transport = FakeTransport(engine, answer_on={1}, ack_delay=0.05)
    result, elapsed = await run(engine, transport, deadline=0.5)
    assert transport.verdicts == [ReplyVerdict.ACCEPTED]
    assert result.status is CommandStatus.CONFIRMED
    assert elapsed < 0.04  # did not wait for the ack
    assert transport.cancelled == 1
    assert_idle(engine)


async def test_reply_then_hanging_ack_still_confirms() -> None:
    engine = CommandEngine()
    transport = FakeTransport(engine, answer_on={1}, hang={1})
    result, elapsed = await run(engine, transport, deadline=0.5)
    assert result.status is CommandStatus.CONFIRMED
    assert elapsed < 0.05
    assert transport.cancelled == 1
    assert_idle(engine)


async def test_hanging_transport_still_ends_by_the_deadline() -> None:
    engine = CommandEngine()
    transport = FakeTransport(engine, hang={1, 2, 3})
    result, elapsed = await run(engine, transport, deadline=0.15, retries=2)
    # Unacknowledged is not "not delivered": the device may have acted.
    assert result.status is CommandStatus.TIMEOUT
    assert result.reason == "no answer within 0.15 s (send not acknowledged)"
    assert result.attempts == 1
    assert elapsed < 0.15 + SLACK
    assert transport.cancelled == 1
    assert_idle(engine)


# -- non-confirmable ----------------------------------------------------------------


async def test_non_confirmable_is_delivered_without_waiting() -> None:
    engine = CommandEngine()
    transport = FakeTransport(engine)
    result, elapsed = await run(engine, transport, deadline=0.5, confirmable=False, retries=3)
    assert result.status is CommandStatus.DELIVERED
    assert result.succeeded
    assert result.attempts == 1
    assert elapsed < 0.05
    assert 0 < transport.calls[0][2] <= 0.5
    assert engine.handle_reply(ok_reply(result.command.command_id)) is ReplyVerdict.LATE
    assert engine.stats["delivered"] == 1


async def test_non_confirmable_unavailable() -> None:
    engine = CommandEngine()
    transport = FakeTransport(engine, fail={1: "offline"})
    result, _ = await run(engine, transport, deadline=0.5, confirmable=False)
    assert result.status is CommandStatus.NOT_DELIVERED
    assert result.reason == "offline"


async def test_non_confirmable_hanging_transport_times_out() -> None:
    engine = CommandEngine()
    transport = FakeTransport(engine, hang={1})
    result, elapsed = await run(engine, transport, deadline=0.15, confirmable=False)
    assert result.status is CommandStatus.TIMEOUT
    assert result.reason == "not acknowledged within 0.15 s"
    assert result.attempts == 1
    assert 0.14 <= elapsed < 0.15 + SLACK
    assert_idle(engine)


# -- stray answers and bookkeeping --------------------------------------------------


async def test_late_answer_is_ignored() -> None:
    engine = CommandEngine()
    transport = FakeTransport(engine)
    result, _ = await run(engine, transport, deadline=0.1, retries=0)
    assert result.status is CommandStatus.TIMEOUT
    assert engine.handle_reply(ok_reply(result.command.command_id)) is ReplyVerdict.LATE
    assert result.status is CommandStatus.TIMEOUT
    assert engine.recent_results()[-1]["status"] == "timeout"
    assert engine.stats["late"] == 1


async def test_answer_after_not_delivered_is_late() -> None:
    engine = CommandEngine()
    result, _ = await run(engine, FakeTransport(engine, fail={1: "down"}), deadline=0.3)
    assert engine.handle_reply(ok_reply(result.command.command_id)) is ReplyVerdict.LATE


async def test_duplicate_answer_is_ignored() -> None:
    engine = CommandEngine()
    transport = FakeTransport(engine, answer_on={1})
    result, _ = await run(engine, transport, deadline=0.3)
    assert result.status is CommandStatus.CONFIRMED
    refusal = CommandReply(result.command.command_id, ok=False, reason="changed my mind")
    assert engine.handle_reply(refusal) is ReplyVerdict.DUPLICATE
    assert engine.stats["duplicate"] == 1


async def test_second_answer_before_execute_wakes_is_duplicate() -> None:
    engine = CommandEngine()

    @dataclass
    class DoubleAnswer(FakeTransport):
        def answer(self, command_id: str) -> None:
            super().answer(command_id)
            self.verdicts.append(self.engine.handle_reply(CommandReply(command_id, ok=False)))

    transport = DoubleAnswer(engine, answer_on={1})
    result, _ = await run(engine, transport, deadline=0.3)
    assert transport.verdicts == [ReplyVerdict.ACCEPTED, ReplyVerdict.DUPLICATE]
    assert result.status is CommandStatus.CONFIRMED  # the first answer wins


def test_foreign_answer() -> None:
    engine = CommandEngine()
    assert engine.handle_reply(ok_reply("01NOTOURS")) is ReplyVerdict.FOREIGN
    assert engine.stats["foreign"] == 1


async def test_stats_count_everything() -> None:
    engine = CommandEngine()
    await run(engine, FakeTransport(engine, answer_on={1}), deadline=0.3)
    rejected = FakeTransport(
        engine, answer_on={1}, reply=lambda command_id: CommandReply(command_id, ok=False)
    )
    await run(engine, rejected, deadline=0.3)
    timed_out, _ = await run(engine, FakeTransport(engine), deadline=0.1, retries=1)
    await run(engine, FakeTransport(engine, fail={1: "down"}), deadline=0.3)
    delivered, _ = await run(engine, FakeTransport(engine), deadline=0.3, confirmable=False)
    engine.handle_reply(ok_reply(timed_out.command.command_id))
    engine.handle_reply(ok_reply(delivered.command.command_id))
    engine.handle_reply(CommandReply(engine.recent_results()[0]["id"], ok=True))
    engine.handle_reply(ok_reply("stranger"))
    assert engine.stats == {
        "issued": 5,
        "confirmed": 1,
        "rejected": 1,
        "timeout": 1,
        "not_delivered": 1,
        "delivered": 1,
        "retries": 1,
        "late": 2,
        "duplicate": 1,
        "foreign": 1,
    }


async def test_recent_results_are_bounded_and_describe_the_command() -> None:
    engine = CommandEngine()
    transport = FakeTransport(engine, answer_on=range(1, 100))
    for _ in range(25):
        await run(engine, transport, deadline=0.3)
    recent = engine.recent_results()
    assert len(recent) == 20
    assert recent[-1]["id"] == transport.calls[-1][0]
    assert recent[-1]["status"] == "confirmed"
    assert recent[-1]["device_id"] == "dev1"
    assert recent[-1]["capability"] == "door2_lock"
    assert recent[-1]["action"] == "open"
    assert recent[-1]["attempts"] == 1


async def test_history_is_bounded() -> None:
    engine = CommandEngine(history_size=3)
    transport = FakeTransport(engine, answer_on={1})
    results = [(await run(engine, transport, deadline=0.3))[0] for _ in range(4)]
    oldest, *_, newest = (result.command.command_id for result in results)
    assert engine.handle_reply(ok_reply(oldest)) is ReplyVerdict.FOREIGN
    assert engine.handle_reply(ok_reply(newest)) is ReplyVerdict.DUPLICATE


# -- concurrency and cancellation ---------------------------------------------------


async def test_cancel_all_ends_pending_commands_promptly() -> None:
    engine = CommandEngine()
    waiting = FakeTransport(engine)
    hanging = FakeTransport(engine, hang={1})
    tasks = [
        asyncio.create_task(run(engine, waiting, deadline=1.0)),
        asyncio.create_task(run(engine, hanging, deadline=1.0)),
    ]
    await asyncio.sleep(0.05)
    assert len(engine.pending_ids) == 2
    engine.cancel_all("integration unloading")
    for result, elapsed in await asyncio.gather(*tasks):
        assert result.status is CommandStatus.NOT_DELIVERED
        assert result.reason == "integration unloading"
        assert elapsed < 0.15
        assert 40 <= result.latency_ms < 100
    assert hanging.cancelled == 1
    assert engine.handle_reply(ok_reply(waiting.calls[0][0])) is ReplyVerdict.LATE
    assert_idle(engine)


def test_cancel_all_with_nothing_pending() -> None:
    CommandEngine().cancel_all("nothing to do")


async def test_concurrent_commands_are_independent() -> None:
    engine = CommandEngine()
    transports = [
        FakeTransport(engine, answer_on={1}, answer_delay=0.08),
        FakeTransport(engine, answer_on={1}, answer_delay=0.02),
        FakeTransport(engine, fail={1: "down"}),
        FakeTransport(engine),
        FakeTransport(engine, answer_on={2}),
    ]
    outcomes = await asyncio.gather(
        *(run(engine, transport, deadline=0.2, retries=1) for transport in transports)
    )
    statuses = [result.status for result, _ in outcomes]
    assert statuses == [
        CommandStatus.CONFIRMED,
        CommandStatus.CONFIRMED,
        CommandStatus.NOT_DELIVERED,
        CommandStatus.TIMEOUT,
        CommandStatus.CONFIRMED,
    ]
    for (result, _), transport in zip(outcomes, transports, strict=True):
        assert transport.ids == {result.command.command_id}
    assert len({result.command.command_id for result, _ in outcomes}) == 5
    assert outcomes[1][0].latency_ms < outcomes[0][0].latency_ms
    assert_idle(engine)


async def test_same_command_twice_at_once_is_refused() -> None:
    engine = CommandEngine()
    transport = FakeTransport(engine)
    command = engine.new_command("dev1", "door2_lock", "open", deadline=0.1, retries=0)
    first = asyncio.create_task(engine.execute(transport, command))
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="already in flight"):
        await engine.execute(transport, command)
    assert (await first).status is CommandStatus.TIMEOUT


@pytest.mark.parametrize("hang", [(), (1,)], ids=["waiting-for-answer", "sending"])
async def test_cancelled_execute_leaves_nothing_behind(hang: tuple[int, ...]) -> None:
    engine = CommandEngine()
    transport = FakeTransport(engine, hang=hang)
    task = asyncio.create_task(run(engine, transport, deadline=1.0))
    await asyncio.sleep(0.05)
    assert len(engine.pending_ids) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert transport.cancelled == len(hang)
    assert engine.handle_reply(ok_reply(transport.calls[0][0])) is ReplyVerdict.LATE
    assert_idle(engine)


# -- invariants ----------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    deadline=st.floats(min_value=0.03, max_value=0.08),
    retries=st.integers(min_value=0, max_value=3),
    answer_on=st.sets(st.integers(min_value=1, max_value=4), max_size=2),
    answer_delay=st.floats(min_value=0.0, max_value=0.1),
    fail=st.sets(st.integers(min_value=1, max_value=4), max_size=2),
    hang=st.sets(st.integers(min_value=1, max_value=4), max_size=1),
    ok=st.booleans(),
)
async def test_invariants(
    deadline: float,
    retries: int,
    answer_on: set[int],
    answer_delay: float,
    fail: set[int],
    hang: set[int],
    ok: bool,
) -> None:
    engine = CommandEngine()
    transport = FakeTransport(
        engine,
        fail=dict.fromkeys(fail, "link down"),
        hang=hang,
        answer_on=answer_on,
        answer_delay=answer_delay,
        reply=lambda command_id: CommandReply(command_id, ok=ok),
    )
    try:
        result, elapsed = await run(engine, transport, deadline=deadline, retries=retries)
    finally:
        transport.close()
    stats: dict[str, Any] = engine.stats
    outcomes = ("confirmed", "rejected", "timeout", "not_delivered", "delivered")
    assert stats["issued"] == sum(stats[name] for name in outcomes) == 1
    assert result.attempts == len(transport.calls) <= retries + 1
    assert transport.ids <= {result.command.command_id}
    assert [attempt for _, attempt, _ in transport.calls] == list(range(1, result.attempts + 1))
    expires = [expires_in for _, _, expires_in in transport.calls]
    assert all(0 < value <= deadline for value in expires)
    assert expires == sorted(expires, reverse=True)
    assert elapsed < deadline + SLACK
    assert result.latency_ms < (deadline + SLACK) * 1000
    answered = result.status in (CommandStatus.CONFIRMED, CommandStatus.REJECTED)
    assert answered == (ReplyVerdict.ACCEPTED in transport.verdicts)
    if answered:
        assert result.status is (CommandStatus.CONFIRMED if ok else CommandStatus.REJECTED)
    if 1 in fail:
        assert (result.status, result.attempts) == (CommandStatus.NOT_DELIVERED, 1)
    assert_idle(engine)


# -- reconnects and refusals -------------------------------------------------------------


async def test_reconnect_resends_at_once_with_the_same_id() -> None:
    # Attempt 1 went out before an outage; retries fall into it. When the transport is
    # back, the command goes out again at once, not at the next retry slot.
    engine = CommandEngine()
    transport = FakeTransport(engine, fail={2: "broker not connected"}, answer_on={3})
    command = engine.new_command("dev1", "door2_lock", "open", deadline=0.9, retries=1)
    task = asyncio.create_task(engine.execute(transport, command))
    await asyncio.sleep(0.5)  # attempt 2 (at 0.45 s) failed: the broker is down
    assert [attempt for _, attempt, _ in transport.calls] == [1, 2]
    engine.resend_pending("other-device")  # another device's reconnect changes nothing
    await asyncio.sleep(0.05)
    assert len(transport.calls) == 2
    engine.resend_pending()  # the connection is back
    result = await task
    assert result.status is CommandStatus.CONFIRMED
    assert result.attempts == 3
    assert transport.ids == {command.command_id}
    assert transport.sent_at[2] - transport.sent_at[0] < 0.5 + SLACK  # not at the deadline
    assert_idle(engine)


class Interrupted:
    """Attempt 1: the link drops before the ack; later attempts are answered at once."""

    def __init__(self, engine: CommandEngine) -> None:
        self.engine = engine
        self.attempts: list[int] = []

    async def send_command(self, command: Command, *, attempt: int, expires_in: float) -> None:
        self.attempts.append(attempt)
        if attempt == 1:
            raise TransportInterrupted("broker connection lost")
        self.engine.handle_reply(ok_reply(command.command_id))


async def test_interrupted_first_attempt_waits_for_the_reconnect() -> None:
    # The link dropped while attempt 1 waited for its ack: it may have reached the device,
    # and the deadline outlasts the outage. Not a failure yet: the reconnect sends it again.
    engine = CommandEngine()
    transport = Interrupted(engine)
    command = engine.new_command("dev1", "door2_lock", "open", deadline=2.0, retries=0)
    task = asyncio.create_task(engine.execute(transport, command))
    await asyncio.sleep(0.1)
    assert not task.done()
    engine.resend_pending()
    result = await task
    assert (result.status, result.attempts) == (CommandStatus.CONFIRMED, 2)
    assert transport.attempts == [1, 2]
    assert_idle(engine)


async def test_interrupted_attempt_without_reconnect_ends_in_timeout() -> None:
    # In doubt (it may have arrived), so not "not delivered": a timeout saying why.
    engine = CommandEngine()
    command = engine.new_command("dev1", "door2_lock", "open", deadline=0.2, retries=0)
    result = await engine.execute(Interrupted(engine), command)
    assert result.status is CommandStatus.TIMEOUT
    assert result.reason is not None
    assert "broker connection lost" in result.reason
    assert_idle(engine)


async def test_resend_after_the_end_does_nothing() -> None:
    engine = CommandEngine()
    transport = FakeTransport(engine, answer_on={1})
    result, _ = await run(engine, transport, deadline=0.2, retries=1)
    engine.resend_pending()
    await asyncio.sleep(0.01)
    assert result.status is CommandStatus.CONFIRMED
    assert len(transport.calls) == 1


def test_refused_command_never_reaches_the_wire_and_is_counted() -> None:
    engine = CommandEngine()
    command = engine.new_command("dev1", "door2_lock", "open")
    result = engine.refuse(command, "device_offline", "device offline")
    assert (result.status, result.code, result.reason) == (
        CommandStatus.NOT_DELIVERED,
        "device_offline",
        "device offline",
    )
    assert result.attempts == 0
    assert not result.succeeded
    assert engine.stats["not_delivered"] == engine.stats["issued"] == 1
    assert engine.recent_results()[-1]["status"] == "not_delivered"


async def test_transport_timeout_is_a_timeout_with_its_reason() -> None:
    """A transport that waited until the deadline (a sleeping device) ends in TIMEOUT."""

    class Sleeper:
        async def send_command(self, command: Command, *, attempt: int, expires_in: float) -> None:
            await asyncio.sleep(max(0.0, expires_in - 0.02))
            raise TransportTimeout("device asleep")

    engine = CommandEngine()
    command = engine.new_command("dev1", "door2_lock", "open", deadline=0.2, retries=0)
    result = await engine.execute(Sleeper(), command)
    assert result.status is CommandStatus.TIMEOUT
    assert result.reason is not None
    assert "device asleep" in result.reason
