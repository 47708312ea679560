"""Sensors: numeric or text readings with the device class and unit the device declares."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from homeassistant.components.sensor import RestoreSensor, SensorDeviceClass, SensorStateClass
from homeassistant.core import callback
from homeassistant.helpers.typing import StateType
from homeassistant.util import dt as dt_util

from .core.model import Capability, CapabilityKind, Device
from .entity import IotBridgeEntity, as_number, capability_platform, enum_or_none
from .hub import IotBridgeHub

PARALLEL_UPDATES = 0
_TEXT_LIKE = frozenset(
    {SensorDeviceClass.TIMESTAMP, SensorDeviceClass.DATE, SensorDeviceClass.ENUM}
)


class IotBridgeSensor(IotBridgeEntity, RestoreSensor):
    """A reading."""

    _device_classes = SensorDeviceClass

    def __init__(self, hub: IotBridgeHub, device: Device, capability: Capability) -> None:
        super().__init__(hub, device, capability)
        self._attr_state_class = enum_or_none(SensorStateClass, capability.state_class)
        if capability.options is not None:
            self._attr_device_class = SensorDeviceClass.ENUM
            self._attr_options = list(capability.options)
        self._attr_native_unit_of_measurement = capability.unit
        # Device classes whose values are not numbers; fixed for the entity's lifetime.
        self._text_like = self._attr_device_class if self._attr_device_class in _TEXT_LIKE else None
        self._numeric = self._is_numeric()

    async def _async_last_reading(self) -> Any:
        data = await self.async_get_last_sensor_data()
        return None if data is None else data.native_value

    @callback
    def _handle_update(self, changed: frozenset[str] | None = None) -> None:
        if changed is None:
            # The device was (re)described or its reachability changed: a new unit applies
            # with this write. Value updates reuse it (it is read three times per write).
            capability = self.capability
            self._attr_native_unit_of_measurement = capability.unit if capability else None
            self._numeric = self._is_numeric()
        super()._handle_update(changed)

    def _is_numeric(self) -> bool:
        """Home Assistant refuses text for a sensor with a state class, a device class
        (other than the text-like ones handled first) or a unit."""
        return (
            self.state_class is not None
            or self.device_class is not None
            or self._attr_native_unit_of_measurement is not None
        )

    @property
    def native_value(self) -> StateType | date | datetime:
        """The last reported value in the form Home Assistant expects for this sensor."""
        value = self.reported_value
        if value is None:
            return None
        if self._text_like is None and self._numeric:
            return as_number(value)  # the common case first: a reading
        if self.device_class is SensorDeviceClass.TIMESTAMP:
            moment = dt_util.parse_datetime(str(value))
            # Home Assistant refuses a timestamp without a time zone: show unknown instead.
            return moment if moment is not None and moment.tzinfo is not None else None
        if self.device_class is SensorDeviceClass.DATE:
            return dt_util.parse_date(str(value))
        if self.device_class is SensorDeviceClass.ENUM:
            return value if value in (self.options or ()) else None
        if self._numeric:
            # Home Assistant refuses text for numeric sensors: show unknown instead.
            return as_number(value)
        return value if isinstance(value, int | float | str) else str(value)


async_setup_entry = capability_platform(CapabilityKind.SENSOR, IotBridgeSensor)
