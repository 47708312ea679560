"""Failure modes a simulated device can be switched into, independent of the protocol.

Every field may be changed while the simulator runs; transports read them per command.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .devices import Answer, DeviceModel, refused


@dataclass
class Behaviour:
    """How (badly) a device reacts to commands."""

    refuse: str | None = None  # reject every command with this reason
    answer_delay: float = 0.0  # seconds between acting and answering ("answer late")
    silent: bool = False  # act, but never answer (the answer is "lost")
    drop_first: int = 0  # ignore the first N deliveries of each command id completely
    jam: set[str] = field(default_factory=set)  # lock keys that fail with "jammed"
    report_state: bool = True  # also publish command results on the state topic

    def drops(self, attempt: int) -> bool:
        return attempt <= self.drop_first

    def screen(self, model: DeviceModel, capability: str) -> Answer | None:
        """An error answer if a failure mode applies, else None (go ahead and perform)."""
        if self.refuse is not None:
            return refused(self.refuse)
        if capability in self.jam:
            # A jammed lock reports it, so the hub shows the real state, not the wished one.
            model.state[capability] = "jammed"
            return refused("jammed", {capability: "jammed"})
        return None
