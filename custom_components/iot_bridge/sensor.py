"""Sensors: numeric or text readings with the device class and unit the device declares."""

from __future__ import annotations

from homeassistant.components.sensor import SensorDeviceClass, SensorEntity, SensorStateClass
from homeassistant.helpers.typing import StateType

from .core.model import Capability, CapabilityKind, Device
from .entity import IotBridgeEntity, as_number, capability_platform, enum_or_none
from .hub import IotBridgeHub

PARALLEL_UPDATES = 0


class IotBridgeSensor(IotBridgeEntity, SensorEntity):
    """A reading."""

    _device_classes = SensorDeviceClass

    def __init__(self, hub: IotBridgeHub, device: Device, capability: Capability) -> None:
        super().__init__(hub, device, capability)
        self._attr_state_class = enum_or_none(SensorStateClass, capability.state_class)
        if capability.options is not None:
            self._attr_device_class = SensorDeviceClass.ENUM
            self._attr_options = list(capability.options)

    @property
    def native_unit_of_measurement(self) -> str | None:
        """The unit as currently described: a changed description applies at once."""
        capability = self.capability
        return capability.unit if capability else None

    @property
    def native_value(self) -> StateType:
        """The last reported value; numbers stay numbers, anything else becomes text."""
        value = self.reported_value
        if self.state_class is not None or self.device_class not in (None, SensorDeviceClass.ENUM):
            # Home Assistant refuses text for numeric sensors: show unknown instead.
            return as_number(value)
        if self.device_class is SensorDeviceClass.ENUM:
            # Likewise for a value outside the declared options.
            return value if value in (self.options or ()) else None
        if value is None or isinstance(value, int | float | str):
            return value
        return str(value)


async_setup_entry = capability_platform(CapabilityKind.SENSOR, IotBridgeSensor)
