"""Numbers (set points), confirmed when the device declares them confirmable."""

from __future__ import annotations

from homeassistant.components.number import NumberDeviceClass, NumberEntity, NumberMode

from .core.model import Capability, CapabilityKind, Device
from .entity import IotBridgeEntity, as_number, capability_platform
from .hub import IotBridgeHub

PARALLEL_UPDATES = 0


class IotBridgeNumber(IotBridgeEntity, NumberEntity):
    """A writable numeric value with the range the device declares."""

    _attr_mode = NumberMode.BOX
    _device_classes = NumberDeviceClass

    def __init__(self, hub: IotBridgeHub, device: Device, capability: Capability) -> None:
        super().__init__(hub, device, capability)
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


async_setup_entry = capability_platform(CapabilityKind.NUMBER, IotBridgeNumber)
