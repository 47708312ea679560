"""Binary sensors (doors, presence, ...)."""

from __future__ import annotations

from homeassistant.components.binary_sensor import BinarySensorDeviceClass, BinarySensorEntity
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .core.model import Capability, CapabilityKind, Device
from .core.mqtt.profile import as_bool
from .entity import IotBridgeEntity, async_setup_capability_platform, enum_or_none
from .hub import IotBridgeConfigEntry, IotBridgeHub

PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: IotBridgeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up binary sensors for every binary_sensor capability."""
    async_setup_capability_platform(
        entry, async_add_entities, CapabilityKind.BINARY_SENSOR, IotBridgeBinarySensor
    )


class IotBridgeBinarySensor(IotBridgeEntity, BinarySensorEntity):
    """A true/false reading."""

    def __init__(self, hub: IotBridgeHub, device: Device, capability: Capability) -> None:
        super().__init__(hub, device, capability)
        self._attr_device_class = enum_or_none(BinarySensorDeviceClass, capability.device_class)
        self._name_from_device_class(self._attr_device_class)

    @property
    def is_on(self) -> bool | None:
        """On/open/detected, as reported."""
        return as_bool(self.reported_value)
