"""Events: a device's push button; a rise of its press counter is one event.

One event per notification, not per step: presses a client coalesced (pmin) arrive at once,
and `presses` says how many they were (docs/protocols/lwm2m.md, "Push buttons").
"""

from __future__ import annotations

from homeassistant.components.event import EventEntity
from homeassistant.core import callback

from .core.model import Capability, CapabilityKind, Device
from .entity import IotBridgeEntity, capability_platform
from .hub import IotBridgeHub

PARALLEL_UPDATES = 0
EVENT_PRESS = "press"


class IotBridgeEvent(IotBridgeEntity, EventEntity):
    """Follows a counter the device keeps (LwM2M 3347/5501): a higher count is one event."""

    _attr_event_types = [EVENT_PRESS]

    def __init__(self, hub: IotBridgeHub, device: Device, capability: Capability) -> None:
        super().__init__(hub, device, capability)
        # The count when the entity started: what happened before is not news.
        self._count = self.reported_value

    @callback
    def _handle_update(self, changed: frozenset[str] | None = None) -> None:
        if changed is not None and self.key not in changed:
            return
        count = self.reported_value
        if isinstance(count, int) and isinstance(self._count, int) and count > self._count:
            self._trigger_event(EVENT_PRESS, {"count": count, "presses": count - self._count})
        if count is not None:
            self._count = count
        self.async_write_ha_state()


async_setup_entry = capability_platform(CapabilityKind.EVENT, IotBridgeEvent)
