"""Diagnostics: configuration, connection, devices and commands, without secrets.

Credentials and what identifies a household (host addresses, serial numbers) are redacted.
Per device: its recent command outcomes, command health and the protocol's view of it
(MQTT topics and QoS, CoAP resources and observations, LwM2M registration and objects),
asked of the bridge through `Bridge.device_diagnostics` whatever the protocol.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.const import CONF_HOST, CONF_PASSWORD, CONF_USERNAME
from homeassistant.core import HomeAssistant
from homeassistant.helpers.device_registry import DeviceEntry
from homeassistant.util import dt as dt_util

from .core.model import Device
from .hub import IotBridgeConfigEntry, IotBridgeHub, iot_bridge_identifiers

TO_REDACT = {CONF_PASSWORD, CONF_USERNAME, CONF_HOST, "address", "serial_number"}
# Outcomes per device in its diagnostics.
RECENT_OUTCOMES = 20


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: IotBridgeConfigEntry
) -> dict[str, Any]:
    """What support needs to see, without the credentials."""
    hub = entry.runtime_data
    data = {
        "entry": {
            "data": dict(entry.data),
            "options": dict(entry.options),
        },
        "bridge": hub.bridge.diagnostics(),
        "devices": {device_id: _device(device) for device_id, device in hub.bridge.devices.items()},
        "commands": {
            # Includes the answers that matched no pending command: late, duplicate, foreign.
            "stats": hub.engine.stats,
            "pending": hub.engine.pending_ids,
            "recent": hub.engine.recent_results(),
        },
    }
    return async_redact_data(data, TO_REDACT)


async def async_get_device_diagnostics(
    hass: HomeAssistant, entry: IotBridgeConfigEntry, device_entry: DeviceEntry
) -> dict[str, Any]:
    """One device: what it is, how its commands went, and how the protocol sees it."""
    hub = entry.runtime_data
    device_id = next(
        (
            protocol_id
            for entry_id, protocol_id in iot_bridge_identifiers(device_entry.identifiers)
            if entry_id == entry.entry_id
        ),
        None,
    )
    device = hub.device(device_id) if device_id is not None else None
    if device_id is None or device is None:
        return {"device": None}
    data = {
        "device": _device(device),
        "command_health": _health(hub, device_id),
        "protocol": hub.bridge.device_diagnostics(device_id),
    }
    return async_redact_data(data, TO_REDACT)


def _device(device: Device) -> dict[str, Any]:
    return {
        "name": device.name,
        "available": device.available,
        "info": asdict(device.info),
        "capabilities": [asdict(capability) for capability in device.capabilities.values()],
        "state": device.state,
    }


def _health(hub: IotBridgeHub, device_id: str) -> dict[str, Any]:
    health = hub.device_health(device_id)
    now = hub.clock()
    return {
        "commands_24h": health.count(now),
        "success_rate": health.success_rate(now),
        "median_latency_ms": health.median_latency(now),
        "timing_out_for_s": round(health.timing_out_for(now), 1),
        "recent": [
            {
                "at": dt_util.utc_from_timestamp(outcome.at).isoformat(),
                "capability": outcome.capability,
                "action": outcome.action,
                "outcome": outcome.status.value,
                "reason": outcome.reason,
                "latency_ms": round(outcome.latency_ms, 2),
            }
            for outcome in health.recent(now, RECENT_OUTCOMES)
        ],
    }
