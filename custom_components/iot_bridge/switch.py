"""Switches, confirmed when the device declares them confirmable."""

from __future__ import annotations

from typing import Any

from homeassistant.components.switch import SwitchEntity

from .compat import SwitchDeviceClass
from .core.model import CapabilityKind
from .entity import IotBridgeEntity, capability_platform

PARALLEL_UPDATES = 0


class IotBridgeSwitch(IotBridgeEntity, SwitchEntity):
    """An on/off output."""

    _device_classes = SwitchDeviceClass

    @property
    def is_on(self) -> bool | None:
        """On, as reported or confirmed."""
        value = self.reported_value
        return value if isinstance(value, bool) else None

    async def async_turn_on(self, **kwargs: Any) -> None:
        """Turn on; waits for confirmation when the device gives one."""
        await self.async_command("turn_on")

    async def async_turn_off(self, **kwargs: Any) -> None:
        """Turn off; waits for confirmation when the device gives one."""
        await self.async_command("turn_off")


async_setup_entry = capability_platform(CapabilityKind.SWITCH, IotBridgeSwitch)
