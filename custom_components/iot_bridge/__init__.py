"""IoT Bridge: MQTT, CoAP and LwM2M devices with confirmed commands."""

from __future__ import annotations

from homeassistant.const import EVENT_HOMEASSISTANT_STOP, Platform
from homeassistant.core import Event, HomeAssistant
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.typing import ConfigType

from .const import DOMAIN
from .hub import IotBridgeConfigEntry, IotBridgeHub, iot_bridge_identifiers
from .services import async_setup_services

PLATFORMS = [
    Platform.BINARY_SENSOR,
    Platform.BUTTON,
    Platform.DEVICE_TRACKER,
    Platform.EVENT,
    Platform.LIGHT,
    Platform.LOCK,
    Platform.NUMBER,
    Platform.SENSOR,
    Platform.SWITCH,
]
CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the actions once, whatever entries exist."""
    async_setup_services(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: IotBridgeConfigEntry) -> bool:
    """Connect the hub, then let the platforms create entities."""
    hub = IotBridgeHub(hass, entry)
    await hub.async_start()
    entry.runtime_data = hub

    async def _async_close_on_stop(_event: Event) -> None:
        await hub.async_stop()

    # Home Assistant stopping does not unload entries: close the broker connection cleanly.
    entry.async_on_unload(
        hass.bus.async_listen_once(EVENT_HOMEASSISTANT_STOP, _async_close_on_stop)
    )
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    return True


async def async_unload_entry(hass: HomeAssistant, entry: IotBridgeConfigEntry) -> bool:
    """Remove entities, then close the connection."""
    unloaded = await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
    if unloaded:
        await entry.runtime_data.async_stop()
    return unloaded


async def async_remove_config_entry_device(
    hass: HomeAssistant, entry: IotBridgeConfigEntry, device_entry: dr.DeviceEntry
) -> bool:
    """The user deleted a device: forget it and clear its retained discovery."""
    for entry_id, device_id in iot_bridge_identifiers(device_entry.identifiers):
        if entry_id == entry.entry_id:
            await entry.runtime_data.async_forget_device(device_id)
    return True
