"""Confirmed-command engine: one outcome per command, whatever the transport does.

The engine is protocol-independent. A transport hands single attempts to the wire;
the engine decides when to (re)send, matches answers to pending commands by id and
turns everything that can happen into exactly one CommandResult within the deadline.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from .model import Command, CommandReply, CommandResult, CommandStatus

_LOGGER = logging.getLogger(__name__)

# How long a cancelled send may take to unwind before we stop waiting for it; a
# misbehaving transport must not stretch a command past its deadline.
_CANCEL_GRACE = 0.05
_RECENT_RESULTS = 20
_STAT_KEYS = (
    "issued",
    "confirmed",
    "rejected",
    "timeout",
    "not_delivered",
    "delivered",
    "retries",
    "late",
    "duplicate",
    "foreign",
)
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class TransportUnavailable(Exception):
    """The transport cannot deliver right now (connection down). str(err) is a human reason."""


class TransportInterrupted(TransportUnavailable):
    """The connection dropped after the attempt was handed over but before the transport
    acknowledged it: it may or may not have reached the device. The engine keeps waiting
    (a reconnect sends it again, same id) until the deadline."""


class TransportTimeout(Exception):
    """The transport waited until the deadline and the command may or may not have reached
    the device (it slept, the request went unanswered). str(err) says what it waited for."""


class CommandTransport(Protocol):
    """What the engine needs from a protocol: send one attempt of a command."""

    async def send_command(self, command: Command, *, attempt: int, expires_in: float) -> None:
        """Hand one attempt (1 = first) to the wire.

        Returns once the transport acknowledged receipt (MQTT PUBACK from the broker,
        CoAP ACK). Raises TransportUnavailable when it cannot.
        """


class ReplyVerdict(StrEnum):
    """What handle_reply made of an answer."""

    ACCEPTED = "accepted"  # answered a pending command
    LATE = "late"  # command already ended without an answer (timed out / not delivered)
    DUPLICATE = "duplicate"  # command was already answered
    FOREIGN = "foreign"  # id never issued by this engine (or forgotten long ago)


@dataclass(frozen=True, slots=True)
class _Ending:
    """Why a pending command ended early: a device answer, or cancel_all."""

    at: float  # monotonic time, so latency excludes our own wake-up delay
    reply: CommandReply | None = None
    abort_reason: str = ""


@dataclass(slots=True)
class _Run:
    """Book-keeping of one execute call."""

    start: float
    total: float
    sent: int = 0
    delivered: int = 0
    # A send was still unacknowledged at the deadline: it may have reached the device.
    in_doubt: bool = False
    error: str | None = None
    device_id: str = ""
    # Completed when the transport came back: send again at once, with the same id.
    resend: asyncio.Future[None] | None = None


def _new_id(now: float) -> str:
    """ULID-like id: 48-bit millisecond timestamp + 80 random bits, Crockford base32."""
    value = (int(now * 1000) & ((1 << 48) - 1)) << 80 | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def _ending(future: asyncio.Future[_Ending]) -> _Ending | None:
    if future.done() and not future.cancelled():
        return future.result()
    return None


def _answered(future: asyncio.Future[_Ending]) -> bool:
    ending = _ending(future)
    return ending is not None and ending.reply is not None


def _consume(task: asyncio.Future[None]) -> None:
    """Retrieve a finished send's exception so asyncio does not log it as lost."""
    if not task.cancelled():
        task.exception()


class CommandEngine:
    """Sends commands through a transport and waits for their single outcome."""

    def __init__(
        self,
        *,
        deadline: float = 10.0,
        retries: int = 2,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        history_size: int = 512,
    ) -> None:
        self.deadline = deadline
        self.retries = retries
        self._clock = clock
        self._wall_clock = wall_clock
        self._history_size = history_size
        self._pending: dict[str, asyncio.Future[_Ending]] = {}
        self._runs: dict[str, _Run] = {}
        # Ended ids -> answered? Tells late answers from duplicates from strangers.
        self._history: OrderedDict[str, bool] = OrderedDict()
        self._recent: deque[dict[str, Any]] = deque(maxlen=_RECENT_RESULTS)
        self._stats = dict.fromkeys(_STAT_KEYS, 0)

    # -- public API -------------------------------------------------------------

    def new_command(
        self,
        device_id: str,
        capability: str,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        deadline: float | None = None,
        retries: int | None = None,
    ) -> Command:
        """Build a command with a fresh id, due `deadline` seconds from now."""
        now = self._wall_clock()
        seconds = self.deadline if deadline is None else deadline
        return Command(
            command_id=_new_id(now),
            device_id=device_id,
            capability=capability,
            action=action,
            params=dict(params or {}),
            deadline_unix=now + seconds,
            retries=max(0, self.retries if retries is None else retries),
        )

    async def execute(
        self,
        transport: CommandTransport,
        command: Command,
        *,
        confirmable: bool = True,
    ) -> CommandResult:
        """Send `command` and return its single outcome, at the latest at its deadline."""
        command_id = command.command_id
        if command_id in self._pending:
            raise ValueError(f"command {command_id} is already in flight")
        # The monotonic clock measures the deadline so wall-clock jumps cannot stretch it.
        loop = asyncio.get_running_loop()
        run = _Run(
            start=self._clock(),
            total=max(0.0, command.deadline_unix - self._wall_clock()),
            device_id=command.device_id,
            resend=loop.create_future(),
        )
        # Registered before the first send: an answer may beat the transport's ack.
        future: asyncio.Future[_Ending] = loop.create_future()
        self._pending[command_id] = future
        self._runs[command_id] = run
        self._history.pop(command_id, None)
        self._stats["issued"] += 1
        try:
            if confirmable:
                await self._run_confirmable(transport, command, run, future)
            else:
                await self._attempt(transport, command, run, future)
        finally:
            # Synchronous with building the result, so no answer can slip in between.
            del self._pending[command_id]
            del self._runs[command_id]
            if run.resend is not None and not run.resend.done():
                run.resend.cancel()
            self._remember(command_id, answered=_answered(future))
            if not future.done():
                future.cancel()
        return self._conclude(command, run, _ending(future), confirmable)

    def handle_reply(self, reply: CommandReply) -> ReplyVerdict:
        """Match a device answer to its command. Never raises; only counts strays."""
        command_id = reply.command_id
        future = self._pending.get(command_id)
        if future is not None and not future.done():
            future.set_result(_Ending(at=self._clock(), reply=reply))
            return ReplyVerdict.ACCEPTED
        if future is not None:
            # Ended (answer or cancel_all) but execute has not woken up yet.
            answered = _answered(future)
        elif command_id in self._history:
            answered = self._history[command_id]
        else:
            return self._stray(ReplyVerdict.FOREIGN, command_id)
        return self._stray(ReplyVerdict.DUPLICATE if answered else ReplyVerdict.LATE, command_id)

    def refuse(self, command: Command, code: str, reason: str) -> CommandResult:
        """End a command that was never sent (device offline, no connection) as NOT_DELIVERED.

        `code` names the cause for translations and automations; nothing reaches the wire.
        """
        self._stats["issued"] += 1
        result = CommandResult(
            command, CommandStatus.NOT_DELIVERED, 0, 0.0, reason, None, code=code
        )
        self._record(result)
        return result

    def resend_pending(self, device_id: str | None = None) -> None:
        """The transport (or this device) is back: every pending command goes out again now.

        Attempts that fell into an outage reached nobody; waiting for the next retry slot
        could let the deadline pass although the device is reachable again. The id stays
        the same, so a device that did get an earlier attempt does not act twice.
        """
        for run in self._runs.values():
            if device_id is not None and run.device_id != device_id:
                continue
            if run.resend is not None and not run.resend.done():
                run.resend.set_result(None)

    def cancel_all(self, reason: str) -> None:
        """End every pending command now as NOT_DELIVERED; their execute calls return."""
        now = self._clock()
        for future in self._pending.values():
            if not future.done():
                future.set_result(_Ending(at=now, abort_reason=reason))

    @property
    def pending_ids(self) -> list[str]:
        """Ids of the commands still waiting for their outcome."""
        return list(self._pending)

    @property
    def stats(self) -> dict[str, int]:
        """Counters since start, for diagnostics."""
        return dict(self._stats)

    def recent_results(self) -> list[dict[str, Any]]:
        """The last outcomes, oldest first, for diagnostics."""
        return list(self._recent)

    # -- sending ----------------------------------------------------------------

    def _remaining(self, run: _Run) -> float:
        return run.total - (self._clock() - run.start)

    async def _run_confirmable(
        self,
        transport: CommandTransport,
        command: Command,
        run: _Run,
        future: asyncio.Future[_Ending],
    ) -> None:
        """Send up to 1 + retries attempts spread over the deadline, then wait for it."""
        slot = run.total / (command.retries + 1)
        for index in range(command.retries + 1):
            if index and await self._wait(transport, command, run, future, index * slot):
                return
            if future.done() or self._remaining(run) <= 0:
                return
            await self._attempt(transport, command, run, future)
            if index == 0 and run.error is not None and not run.in_doubt:
                return  # the first attempt failed outright: say so now, not at the deadline
        await self._wait(transport, command, run, future, run.total)

    async def _wait(
        self,
        transport: CommandTransport,
        command: Command,
        run: _Run,
        future: asyncio.Future[_Ending],
        until: float,
    ) -> bool:
        """Wait until `until` seconds into the run for the command to end; True if it has.

        A reconnect meanwhile (resend_pending) sends another attempt at once.
        """
        while not future.done():
            seconds = run.start + until - self._clock()
            if seconds <= 0:
                return False
            assert run.resend is not None
            await asyncio.wait(
                (future, run.resend), timeout=seconds, return_when=asyncio.FIRST_COMPLETED
            )
            if run.resend.done() and not future.done():
                run.resend = asyncio.get_running_loop().create_future()
                await self._attempt(transport, command, run, future)
        return True

    async def _attempt(
        self,
        transport: CommandTransport,
        command: Command,
        run: _Run,
        future: asyncio.Future[_Ending],
    ) -> None:
        """Send one attempt, bounded by the deadline and cut short by an answer."""
        remaining = self._remaining(run)
        if remaining <= 0 or future.done():
            return  # never send at or after the deadline
        run.sent += 1
        if run.sent > 1:
            self._stats["retries"] += 1
        send = asyncio.create_task(
            transport.send_command(command, attempt=run.sent, expires_in=remaining)
        )
        try:
            await asyncio.wait(
                (send, future), timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if not send.done():
                # Answered or out of time: the ack no longer matters. Also on cancellation.
                run.in_doubt = not future.done()
                await self._stop(send)
        if send.done() and not send.cancelled():
            self._record_send(run, send.exception())

    async def _stop(self, send: asyncio.Future[None]) -> None:
        """Cancel an unfinished send, giving it a moment to unwind."""
        send.cancel()
        await asyncio.wait((send,), timeout=_CANCEL_GRACE)
        if send.done():
            _consume(send)
        else:
            _LOGGER.warning("Transport did not stop a cancelled command send; leaving it")
            send.add_done_callback(_consume)

    def _record_send(self, run: _Run, error: BaseException | None) -> None:
        if error is None:
            run.delivered += 1
        elif isinstance(error, TransportInterrupted):
            run.in_doubt = True
            run.error = str(error) or "connection lost"
        elif isinstance(error, TransportUnavailable):
            run.error = str(error) or "transport unavailable"
        elif isinstance(error, TransportTimeout):
            run.in_doubt = True
            run.error = str(error) or "no answer"
        else:
            # A transport bug must not break the one-outcome contract; log it loudly.
            _LOGGER.error("Transport failed to send a command", exc_info=error)
            run.error = f"transport error: {error!r}"

    # -- outcomes ---------------------------------------------------------------

    def _conclude(
        self, command: Command, run: _Run, ending: _Ending | None, confirmable: bool
    ) -> CommandResult:
        at = ending.at if ending is not None else self._clock()
        latency_ms = max(0.0, at - run.start) * 1000
        status, reason, state = self._verdict(run, ending, confirmable)
        result = CommandResult(command, status, run.sent, latency_ms, reason, state)
        self._record(result)
        return result

    def _record(self, result: CommandResult) -> None:
        """Count an outcome and keep it for diagnostics."""
        command = result.command
        self._stats[result.status.value] += 1
        self._recent.append(
            result.as_dict()
            | {
                "device_id": command.device_id,
                "capability": command.capability,
                "action": command.action,
            }
        )
        _LOGGER.debug("Command %s ended %s (%s)", command.command_id, result.status, result.reason)

    def _verdict(
        self, run: _Run, ending: _Ending | None, confirmable: bool
    ) -> tuple[CommandStatus, str | None, dict[str, Any] | None]:
        if ending is not None and ending.reply is not None:
            reply = ending.reply
            if reply.ok:
                return CommandStatus.CONFIRMED, reply.reason, reply.state
            return CommandStatus.REJECTED, reply.reason or "rejected by device", reply.state
        if ending is not None:
            return CommandStatus.NOT_DELIVERED, ending.abort_reason, None
        if not confirmable and run.delivered:
            return CommandStatus.DELIVERED, None, None
        if run.delivered or run.in_doubt:
            return CommandStatus.TIMEOUT, self._timeout_reason(run, confirmable), None
        reason = run.error or "deadline passed before the command could be sent"
        return CommandStatus.NOT_DELIVERED, reason, None

    @staticmethod
    def _timeout_reason(run: _Run, confirmable: bool) -> str:
        waited = "no answer" if confirmable else "not acknowledged"
        reason = f"{waited} within {round(run.total, 2)} s"
        detail = run.error or (None if run.delivered else "send not acknowledged")
        if detail and confirmable:
            reason += f" ({detail})"
        return reason

    # -- history ----------------------------------------------------------------

    def _remember(self, command_id: str, *, answered: bool) -> None:
        self._history[command_id] = answered
        while len(self._history) > self._history_size:
            self._history.popitem(last=False)

    def _stray(self, verdict: ReplyVerdict, command_id: str) -> ReplyVerdict:
        self._stats[verdict.value] += 1
        _LOGGER.debug("Ignoring %s answer to command %s", verdict, command_id)
        return verdict
