"""Diagnostics: configuration (secrets redacted), connection, devices, command statistics."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.const import CONF_PASSWORD, CONF_USERNAME
from homeassistant.core import HomeAssistant

from .hub import IotBridgeConfigEntry

TO_REDACT = {CONF_PASSWORD, CONF_USERNAME}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: IotBridgeConfigEntry
) -> dict[str, Any]:
    """What support needs to see, without the credentials."""
    hub = entry.runtime_data
    return {
        "entry": {
            "data": async_redact_data(dict(entry.data), TO_REDACT),
            "options": dict(entry.options),
        },
        "bridge": hub.bridge.diagnostics(),
        "devices": {
            device_id: {
                "name": device.name,
                "available": device.available,
                "info": asdict(device.info),
                "capabilities": [asdict(capability) for capability in device.capabilities.values()],
                "state": device.state,
            }
            for device_id, device in hub.bridge.devices.items()
        },
        "commands": {
            "stats": hub.engine.stats,
            "pending": hub.engine.pending_ids,
            "recent": hub.engine.recent_results(),
        },
    }
