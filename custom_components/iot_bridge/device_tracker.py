"""Device trackers: a device that reports where it is (LwM2M Location, 3336)."""

from __future__ import annotations

from homeassistant.components.device_tracker.const import SourceType

from .compat import TrackerEntity
from .core.model import CapabilityKind
from .entity import IotBridgeEntity, capability_platform

PARALLEL_UPDATES = 0


class IotBridgeTracker(IotBridgeEntity, TrackerEntity):
    """A position; its checked value is {latitude, longitude}."""

    _attr_source_type = SourceType.GPS

    def _coordinate(self, name: str) -> float | None:
        value = self.reported_value
        return float(value[name]) if isinstance(value, dict) else None

    @property
    def latitude(self) -> float | None:
        """Latitude, as last reported."""
        return self._coordinate("latitude")

    @property
    def longitude(self) -> float | None:
        """Longitude, as last reported."""
        return self._coordinate("longitude")


async_setup_entry = capability_platform(CapabilityKind.DEVICE_TRACKER, IotBridgeTracker)
