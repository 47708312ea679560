"""IoT Bridge: MQTT, CoAP and LwM2M devices with confirmed commands."""

from __future__ import annotations

import voluptuous as vol
from homeassistant.const import EVENT_HOMEASSISTANT_STOP, Platform
from homeassistant.core import Event, HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.typing import ConfigType

from .bridges import load_protocol_data
from .const import CONF_COAP_DISCOVERY, DOMAIN
from .discovery import DISCOVERY_SCHEMA, async_setup_discovery
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
# Hubs are config entries; YAML only says where CoAP discovery may send its multicast scan.
CONFIG_SCHEMA = vol.Schema(
    {vol.Optional(DOMAIN): vol.Schema({vol.Optional(CONF_COAP_DISCOVERY): DISCOVERY_SCHEMA})},
    extra=vol.ALLOW_EXTRA,
)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the actions and start CoAP discovery once, whatever entries exist."""
    async_setup_services(hass)
    # LwM2M's object and entity tables are files: read them here, off the event loop.
    await hass.async_add_executor_job(load_protocol_data)
    async_setup_discovery(hass, config.get(DOMAIN, {}).get(CONF_COAP_DISCOVERY, {}))
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
