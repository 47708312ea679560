"""Protocol-neutral command handling: once per id, deadline, failure modes, then the model.

Transports (MQTT now, CoAP/LwM2M later) parse their wire format into a command dict, call
`CommandProcessor.handle` and deliver the resulting answer their own way.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from .behaviour import Behaviour
from .devices import Answer, DeviceModel, State, refused

# Ids remembered for repeats; the profile asks for 16, more costs nothing here.
MEMORY = 64


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a transport should do with one delivery of a command."""

    command_id: str | None  # None: no usable id, nothing can be answered
    attempt: int = 0  # deliveries of this id so far, this one included
    dropped: bool = False  # ignore completely (Behaviour.drop_first)
    repeat: bool = False  # already handled: re-send `answer`, nothing was done again
    answer: dict[str, Any] | None = None  # answer payload in the profile's JSON shape
    changed: State = field(default_factory=dict)  # state to publish (first delivery only)


@dataclass(slots=True)
class _Seen:
    attempts: int = 0
    answer: dict[str, Any] | None = None


def answer_payload(command_id: str, answer: Answer) -> dict[str, Any]:
    payload: dict[str, Any] = {"id": command_id, "status": "ok" if answer.ok else "error"}
    if not answer.ok:
        payload["reason"] = answer.reason or "failed"
    if answer.state:
        payload["state"] = dict(answer.state)
    return payload


class CommandProcessor:
    """Dedupe, deadline and Behaviour around a DeviceModel; safe to call from any thread."""

    def __init__(self, model: DeviceModel, behaviour: Behaviour) -> None:
        self.model = model
        self.behaviour = behaviour
        self.lock = threading.RLock()  # also guards model.state for the transport
        self._seen: OrderedDict[str, _Seen] = OrderedDict()
        self._executed: list[str] = []

    @property
    def executed(self) -> list[str]:
        with self.lock:
            return list(self._executed)

    def handle(self, command: dict[str, Any], now: float | None = None) -> Outcome:
        command_id = command.get("id")
        if not isinstance(command_id, str) or not command_id:
            return Outcome(command_id=None)
        with self.lock:
            seen = self._remember(command_id)
            seen.attempts += 1
            if self.behaviour.drops(seen.attempts):
                return Outcome(command_id, seen.attempts, dropped=True)
            if seen.answer is not None:
                return Outcome(command_id, seen.attempts, repeat=True, answer=seen.answer)
            answer = self._decide(command_id, command, time.time() if now is None else now)
            seen.answer = answer_payload(command_id, answer)
            return Outcome(command_id, seen.attempts, answer=seen.answer, changed=answer.state)

    def _remember(self, command_id: str) -> _Seen:
        seen = self._seen.pop(command_id, None) or _Seen()
        self._seen[command_id] = seen
        while len(self._seen) > MEMORY:
            self._seen.popitem(last=False)
        return seen

    def _decide(self, command_id: str, command: dict[str, Any], now: float) -> Answer:
        deadline = command.get("deadline")
        if isinstance(deadline, int | float) and not isinstance(deadline, bool) and now > deadline:
            return refused("expired")
        capability, action = command.get("capability"), command.get("action")
        params = command.get("params")
        params = {} if params is None else params
        if not isinstance(capability, str) or not isinstance(action, str):
            return refused("malformed command: capability and action must be strings")
        if not isinstance(params, dict):
            return refused("malformed command: params must be an object")
        if (failure := self.behaviour.screen(self.model, capability)) is not None:
            return failure
        answer = self.model.perform(capability, action, params)
        if answer.ok:
            self._executed.append(command_id)
        return answer
