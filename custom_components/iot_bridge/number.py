"""Numbers (set points), confirmed when the device declares them confirmable."""

from __future__ import annotations

from homeassistant.components.number import NumberDeviceClass, NumberEntity, NumberMode
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .core.model import Capability, CapabilityKind, Device
from .entity import IotBridgeEntity, as_number, async_setup_capability_platform, enum_or_none
from .hub import IotBridgeConfigEntry, IotBridgeHub

PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: IotBridgeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up numbers for every number capability."""
    async_setup_capability_platform(
        entry, async_add_entities, CapabilityKind.NUMBER, IotBridgeNumber
    )


class IotBridgeNumber(IotBridgeEntity, NumberEntity):
    """A writable numeric value with the range the device declares."""

    _attr_mode = NumberMode.BOX

    def __init__(self, hub: IotBridgeHub, device: Device, capability: Capability) -> None:
        super().__init__(hub, device, capability)
        self._attr_device_class = enum_or_none(NumberDeviceClass, capability.device_class)
        self._name_from_device_class(self._attr_device_class)
        self._attr_native_unit_of_measurement = capability.unit
        if capability.minimum is not None:
            self._attr_native_min_value = capability.minimum
        if capability.maximum is not None:
            self._attr_native_max_value = capability.maximum
        if capability.step is not None:
            self._attr_native_step = capability.step

    @property
    def native_value(self) -> float | None:
        """The value as reported or confirmed."""
        return as_number(self.reported_value)

    async def async_set_native_value(self, value: float) -> None:
        """Set; waits for confirmation when the device gives one."""
        await self.async_command("set", {"value": value})
