"""Buttons: a press is a command like any other."""

from __future__ import annotations

from homeassistant.components.button import ButtonDeviceClass, ButtonEntity
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .core.model import Capability, CapabilityKind, Device
from .entity import IotBridgeEntity, async_setup_capability_platform, enum_or_none
from .hub import IotBridgeConfigEntry, IotBridgeHub

PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: IotBridgeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up buttons for every button capability."""
    async_setup_capability_platform(
        entry, async_add_entities, CapabilityKind.BUTTON, IotBridgeButton
    )


class IotBridgeButton(IotBridgeEntity, ButtonEntity):
    """A device action without state (reboot, ring, ...)."""

    def __init__(self, hub: IotBridgeHub, device: Device, capability: Capability) -> None:
        super().__init__(hub, device, capability)
        self._attr_device_class = enum_or_none(ButtonDeviceClass, capability.device_class)
        self._name_from_device_class(self._attr_device_class)

    async def async_press(self) -> None:
        """Press; waits for confirmation when the device gives one."""
        await self.async_command("press")
