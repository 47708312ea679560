"""Switches, confirmed when the device declares them confirmable."""

from __future__ import annotations

from typing import Any

from homeassistant.components.switch import SwitchDeviceClass, SwitchEntity
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
    """Set up switches for every switch capability."""
    async_setup_capability_platform(
        entry, async_add_entities, CapabilityKind.SWITCH, IotBridgeSwitch
    )


class IotBridgeSwitch(IotBridgeEntity, SwitchEntity):
    """An on/off output."""

    def __init__(self, hub: IotBridgeHub, device: Device, capability: Capability) -> None:
        super().__init__(hub, device, capability)
        self._attr_device_class = enum_or_none(SwitchDeviceClass, capability.device_class)
        self._name_from_device_class(self._attr_device_class)

    @property
    def is_on(self) -> bool | None:
        """On, as reported or confirmed."""
        return as_bool(self.reported_value)

    async def async_turn_on(self, **kwargs: Any) -> None:
        """Turn on; waits for confirmation when the device gives one."""
        await self.async_command("turn_on")

    async def async_turn_off(self, **kwargs: Any) -> None:
        """Turn off; waits for confirmation when the device gives one."""
        await self.async_command("turn_off")
