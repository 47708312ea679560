"""Logbook: every command outcome as one readable line on its device."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from homeassistant.components.logbook.const import LOGBOOK_ENTRY_MESSAGE, LOGBOOK_ENTRY_NAME
from homeassistant.core import HomeAssistant, callback

from .const import DOMAIN, EVENT_COMMAND
from .core.model import CommandStatus


class _LoggedEvent(Protocol):
    """What the logbook hands a describer: a recorded event's data."""

    @property
    def data(self) -> Mapping[str, Any]:
        """The event's data."""


def _milliseconds(value: Any) -> str:
    """2 ms, 0.6 ms, 43 ms: one decimal below 10 ms, whole numbers above."""
    number = float(value or 0)
    return f"{round(number, 1):g}" if number < 10 else f"{round(number):d}"


def _seconds(value: Any) -> str:
    return f"{round(float(value or 0), 1):g}"


def describe_outcome(data: Mapping[str, Any]) -> str:
    """The logbook message of one `iot_bridge_command` event."""
    # An LwM2M operation names a path instead of a capability.
    subject = data.get("capability_name") or data.get("capability") or data.get("path")
    what = f"{subject} {data.get('action')}"
    outcome, reason = data.get("outcome"), data.get("reason")
    attempts = int(data.get("attempts") or 0)
    if outcome == CommandStatus.CONFIRMED:
        return f"{what}: confirmed in {_milliseconds(data.get('latency_ms'))} ms"
    if outcome == CommandStatus.REJECTED:
        return f"{what}: refused — {reason or 'no reason given'}"
    if outcome == CommandStatus.TIMEOUT:
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        return f"{what}: no answer within {_seconds(data.get('deadline_s'))} s after {tries}"
    if outcome == CommandStatus.NOT_DELIVERED:
        return f"{what}: not delivered — {reason or 'no connection'}"
    if outcome == CommandStatus.DELIVERED:
        return f"{what}: sent (the device does not confirm this command)"
    return f"{what}: {outcome}"


@callback
def async_describe_events(
    hass: HomeAssistant,
    async_describe_event: Callable[[str, str, Callable[[_LoggedEvent], dict[str, str]]], None],
) -> None:
    """Describe IoT Bridge's command events for the logbook."""

    @callback
    def describe(event: _LoggedEvent) -> dict[str, str]:
        data = event.data
        return {
            LOGBOOK_ENTRY_NAME: str(data.get("device_name") or data.get("iot_bridge_device")),
            LOGBOOK_ENTRY_MESSAGE: describe_outcome(data),
        }

    async_describe_event(DOMAIN, EVENT_COMMAND, describe)
