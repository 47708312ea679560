"""Lights: on/off and brightness."""

from __future__ import annotations

from typing import Any

from homeassistant.components.light import LightEntity
from homeassistant.components.light.const import ColorMode

from .compat import ATTR_BRIGHTNESS
from .core.model import CapabilityKind
from .entity import IotBridgeEntity, capability_platform

PARALLEL_UPDATES = 0


class IotBridgeLight(IotBridgeEntity, LightEntity):
    """A dimmable light; its checked value is {"on": bool, "brightness": 0-255 or None}."""

    _attr_color_mode = ColorMode.BRIGHTNESS
    _attr_supported_color_modes = {ColorMode.BRIGHTNESS}

    @property
    def is_on(self) -> bool | None:
        """On, as reported or confirmed."""
        value = self.reported_value
        return bool(value["on"]) if isinstance(value, dict) else None

    @property
    def brightness(self) -> int | None:
        """Brightness 0-255 when the device reports it."""
        value = self.reported_value
        brightness = value.get("brightness") if isinstance(value, dict) else None
        return int(brightness) if brightness is not None else None

    async def async_turn_on(self, **kwargs: Any) -> None:
        """Turn on, optionally at a brightness."""
        params = {"brightness": int(kwargs[ATTR_BRIGHTNESS])} if ATTR_BRIGHTNESS in kwargs else {}
        await self.async_command("turn_on", params)

    async def async_turn_off(self, **kwargs: Any) -> None:
        """Turn off."""
        await self.async_command("turn_off")


async_setup_entry = capability_platform(CapabilityKind.LIGHT, IotBridgeLight)
