"""Buttons: a press is a command like any other."""

from __future__ import annotations

from homeassistant.components.button import ButtonEntity

from .compat import ButtonDeviceClass
from .core.model import CapabilityKind
from .entity import IotBridgeEntity, capability_platform

PARALLEL_UPDATES = 0


class IotBridgeButton(IotBridgeEntity, ButtonEntity):
    """A device action without state (reboot, ring, ...)."""

    _device_classes = ButtonDeviceClass

    async def async_press(self) -> None:
        """Press; waits for confirmation when the device gives one."""
        await self.async_command("press")


async_setup_entry = capability_platform(CapabilityKind.BUTTON, IotBridgeButton)
