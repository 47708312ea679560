"""Binary sensors (doors, presence, ...)."""

from __future__ import annotations

from homeassistant.components.binary_sensor import BinarySensorDeviceClass, BinarySensorEntity

from .core.model import CapabilityKind
from .core.mqtt.profile import as_bool
from .entity import IotBridgeEntity, capability_platform

PARALLEL_UPDATES = 0


class IotBridgeBinarySensor(IotBridgeEntity, BinarySensorEntity):
    """A true/false reading."""

    _device_classes = BinarySensorDeviceClass

    @property
    def is_on(self) -> bool | None:
        """On/open/detected, as reported."""
        return as_bool(self.reported_value)


async_setup_entry = capability_platform(CapabilityKind.BINARY_SENSOR, IotBridgeBinarySensor)
