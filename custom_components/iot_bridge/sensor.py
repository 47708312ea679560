"""Sensors: readings with the device class and unit the device declares, and each device's
command health (diagnostic, disabled by default)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from homeassistant.components.sensor import (
    RestoreSensor,
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import PERCENTAGE, EntityCategory, UnitOfTime
from homeassistant.core import callback
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.entity import Entity
from homeassistant.helpers.typing import StateType
from homeassistant.util import dt as dt_util

from .core.health import CommandHealth
from .core.model import Capability, CapabilityKind, Device
from .entity import IotBridgeEntity, as_number, capability_platform, enum_or_none
from .hub import IotBridgeHub, signal_health

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


@dataclass(frozen=True, kw_only=True)
class CommandHealthDescription(SensorEntityDescription):
    """A figure of a device's command health."""

    value_fn: Callable[[CommandHealth, float], StateType | datetime]
    attributes_fn: Callable[[CommandHealth], dict[str, Any]] | None = None


def _last_failure_at(health: CommandHealth, _now: float) -> datetime | None:
    failure = health.last_failure
    return None if failure is None else dt_util.utc_from_timestamp(failure.at)


def _last_failure_attributes(health: CommandHealth) -> dict[str, Any]:
    failure = health.last_failure
    if failure is None:
        return {}
    return {
        "outcome": failure.status.value,
        "reason": failure.reason,
        "capability": failure.capability,
        "action": failure.action,
    }


HEALTH_SENSORS: tuple[CommandHealthDescription, ...] = (
    CommandHealthDescription(
        key="commands_24h",
        translation_key="commands_24h",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda health, now: health.count(now),
    ),
    CommandHealthDescription(
        key="command_success_rate",
        translation_key="command_success_rate",
        native_unit_of_measurement=PERCENTAGE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=lambda health, now: health.success_rate(now),
    ),
    CommandHealthDescription(
        key="command_median_latency",
        translation_key="command_median_latency",
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.MILLISECONDS,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=lambda health, now: health.median_latency(now),
    ),
    CommandHealthDescription(
        key="last_command_failure",
        translation_key="last_command_failure",
        device_class=SensorDeviceClass.TIMESTAMP,
        value_fn=_last_failure_at,
        attributes_fn=_last_failure_attributes,
    ),
)


class CommandHealthSensor(SensorEntity):
    """One figure of how a device carries out commands (diagnostic, off by default).

    Updated whenever one of its commands ends, and polled so the 24 h window slides on
    while no commands are sent.
    """

    _attr_has_entity_name = True
    _attr_entity_category = EntityCategory.DIAGNOSTIC
    _attr_entity_registry_enabled_default = False
    entity_description: CommandHealthDescription

    def __init__(
        self, hub: IotBridgeHub, device: Device, description: CommandHealthDescription
    ) -> None:
        self.hub = hub
        self.device_id = device.device_id
        self.entity_description = description
        self._attr_unique_id = f"{hub.entry.entry_id}_{device.device_id}:{description.key}"
        self._attr_device_info = DeviceInfo(identifiers={hub.device_identifier(device.device_id)})

    @property
    def native_value(self) -> StateType | datetime:
        """The figure now."""
        health = self.hub.device_health(self.device_id)
        return self.entity_description.value_fn(health, self.hub.clock())

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """Details of the figure (the last failure's reason)."""
        attributes_fn = self.entity_description.attributes_fn
        if attributes_fn is None:
            return None
        return attributes_fn(self.hub.device_health(self.device_id))

    async def async_added_to_hass(self) -> None:
        """Refresh whenever a command of the device ends."""
        signal = signal_health(self.hub.entry.entry_id, self.device_id)
        self.async_on_remove(async_dispatcher_connect(self.hass, signal, self.async_write_ha_state))


def health_sensors(hub: IotBridgeHub, device: Device) -> list[Entity]:
    """The command health sensors of one device."""
    return [CommandHealthSensor(hub, device, description) for description in HEALTH_SENSORS]


async_setup_entry = capability_platform(CapabilityKind.SENSOR, IotBridgeSensor, health_sensors)
