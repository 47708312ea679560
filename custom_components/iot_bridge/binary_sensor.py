"""Binary sensors: doors, presence, ... and each device's connectivity."""

from __future__ import annotations

from homeassistant.components.binary_sensor import BinarySensorEntity
from homeassistant.const import STATE_OFF, STATE_ON, EntityCategory
from homeassistant.core import callback
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.restore_state import RestoreEntity

from .compat import BinarySensorDeviceClass
from .core.model import CapabilityKind, Device
from .entity import IotBridgeEntity, capability_platform
from .hub import IotBridgeHub, signal_connection

PARALLEL_UPDATES = 0
_RESTORED = {STATE_ON: True, STATE_OFF: False}


class IotBridgeBinarySensor(IotBridgeEntity, BinarySensorEntity, RestoreEntity):
    """A true/false reading."""

    _device_classes = BinarySensorDeviceClass

    async def _async_last_reading(self) -> bool | None:
        last = await self.async_get_last_state()
        return None if last is None else _RESTORED.get(last.state)

    @property
    def is_on(self) -> bool | None:
        """On/open/detected, as reported."""
        value = self.reported_value
        return value if isinstance(value, bool) else None


class IotBridgeConnectivity(BinarySensorEntity):
    """Whether a command to the device could be delivered now.

    Entities that take commands stay available when their device is offline (so commands
    fail loudly instead of being skipped); this sensor is where the user sees why.
    """

    _attr_has_entity_name = True
    _attr_should_poll = False
    _attr_device_class = BinarySensorDeviceClass.CONNECTIVITY
    _attr_entity_category = EntityCategory.DIAGNOSTIC
    # Named after its device class; the key gives it state icons (icons.json).
    _attr_translation_key = "connectivity"

    def __init__(self, hub: IotBridgeHub, device: Device) -> None:
        self.hub = hub
        self.device_id = device.device_id
        self._attr_unique_id = f"{hub.entry.entry_id}_{device.device_id}:connectivity"
        self._attr_device_info = DeviceInfo(identifiers={hub.device_identifier(device.device_id)})

    @property
    def available(self) -> bool:
        """Known devices always report their connectivity."""
        return self.hub.device(self.device_id) is not None

    @property
    def is_on(self) -> bool:
        """Connected: the transport is up and the device online."""
        device = self.hub.device(self.device_id)
        return device is not None and self.hub.reachable(device)

    async def async_added_to_hass(self) -> None:
        """Follow the device's availability and the transport's connection."""
        entry_id = self.hub.entry.entry_id
        self.async_on_remove(
            self.hub.async_follow_device(self.device_id, None, self._handle_update)
        )
        self.async_on_remove(
            async_dispatcher_connect(self.hass, signal_connection(entry_id), self._handle_update)
        )

    @callback
    def _handle_update(self, changed: frozenset[str] | None = None) -> None:
        if changed is None:  # value updates name their keys; availability does not
            self.async_write_ha_state()


async_setup_entry = capability_platform(
    CapabilityKind.BINARY_SENSOR, IotBridgeBinarySensor, IotBridgeConnectivity
)
