"""Device triggers: a command to this device was confirmed, rejected, timed out, not delivered.

Each is the `iot_bridge_command` event the hub fires for every outcome, filtered by device
and outcome (and, when the user picks them, capability and action), so `trigger.event.data`
carries the reason, latency and attempts.
"""

from __future__ import annotations

from typing import Any

from homeassistant.components.device_automation import DEVICE_TRIGGER_BASE_SCHEMA
from homeassistant.components.homeassistant.triggers import event as event_trigger
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import (
    CONF_DEVICE_ID,
    CONF_DOMAIN,
    CONF_EVENT_DATA,
    CONF_PLATFORM,
    CONF_TYPE,
)
from homeassistant.core import CALLBACK_TYPE, HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.trigger import TriggerActionType, TriggerInfo
from homeassistant.helpers.typing import ConfigType

from .compat import vol
from .const import DOMAIN, EVENT_COMMAND
from .core.model import CommandStatus, Device
from .hub import IotBridgeHub, iot_bridge_identifiers

CONF_CAPABILITY = "capability"
CONF_ACTION = "action"

# Trigger type -> the outcome it fires on.
TRIGGER_OUTCOMES: dict[str, CommandStatus] = {
    "command_confirmed": CommandStatus.CONFIRMED,
    "command_rejected": CommandStatus.REJECTED,
    "command_timeout": CommandStatus.TIMEOUT,
    "command_not_delivered": CommandStatus.NOT_DELIVERED,
}

TRIGGER_SCHEMA = DEVICE_TRIGGER_BASE_SCHEMA.extend(
    {
        vol.Required(CONF_TYPE): vol.In(list(TRIGGER_OUTCOMES)),
        vol.Optional(CONF_CAPABILITY): str,
        vol.Optional(CONF_ACTION): str,
    }
)


def _device(hass: HomeAssistant, device_id: str) -> Device | None:
    """The IoT Bridge device behind a device registry id, if its hub is loaded."""
    device_entry = dr.async_get(hass).async_get(device_id)
    if device_entry is None:
        return None
    for entry_id, protocol_id in iot_bridge_identifiers(device_entry.identifiers):
        entry = hass.config_entries.async_get_entry(entry_id)
        if entry is not None and entry.state is ConfigEntryState.LOADED:
            hub: IotBridgeHub = entry.runtime_data
            return hub.device(protocol_id)
    return None


async def async_get_triggers(hass: HomeAssistant, device_id: str) -> list[dict[str, Any]]:
    """Every IoT Bridge device offers the four command outcomes."""
    device_entry = dr.async_get(hass).async_get(device_id)
    if device_entry is None or not any(iot_bridge_identifiers(device_entry.identifiers)):
        return []
    return [
        {
            CONF_PLATFORM: "device",
            CONF_DOMAIN: DOMAIN,
            CONF_DEVICE_ID: device_id,
            CONF_TYPE: trigger_type,
        }
        for trigger_type in TRIGGER_OUTCOMES
    ]


async def async_get_trigger_capabilities(
    hass: HomeAssistant, config: ConfigType
) -> dict[str, vol.Schema]:
    """Optional narrowing to one capability and action the device takes commands for."""
    device = _device(hass, config[CONF_DEVICE_ID])
    capabilities: dict[str, str] = {}
    actions: set[str] = set()
    if device is not None:
        for capability in device.capabilities.values():
            if capability.writable:
                capabilities[capability.key] = capability.name or capability.key
                actions |= capability.actions
    return {
        "extra_fields": vol.Schema(
            {
                vol.Optional(CONF_CAPABILITY): vol.In(capabilities),
                vol.Optional(CONF_ACTION): vol.In(sorted(actions)),
            }
        )
    }


async def async_attach_trigger(
    hass: HomeAssistant,
    config: ConfigType,
    action: TriggerActionType,
    trigger_info: TriggerInfo,
) -> CALLBACK_TYPE:
    """Listen for the device's command events with this outcome."""
    event_data: dict[str, Any] = {
        CONF_DEVICE_ID: config[CONF_DEVICE_ID],
        "outcome": TRIGGER_OUTCOMES[config[CONF_TYPE]].value,
    }
    for key in (CONF_CAPABILITY, CONF_ACTION):
        if key in config:
            event_data[key] = config[key]
    event_config = event_trigger.TRIGGER_SCHEMA(
        {
            CONF_PLATFORM: "event",
            event_trigger.CONF_EVENT_TYPE: EVENT_COMMAND,
            CONF_EVENT_DATA: event_data,
        }
    )
    return await event_trigger.async_attach_trigger(
        hass, event_config, action, trigger_info, platform_type="device"
    )
