"""The iot_bridge.send_command action: a confirmed command with its outcome as response."""

from __future__ import annotations

from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import (
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import device_registry as dr

from .compat import vol
from .const import DOMAIN
from .core.model import Capability, Device, validate_params
from .hub import IotBridgeConfigEntry, IotBridgeHub, command_error, iot_bridge_identifiers

SERVICE_SEND_COMMAND = "send_command"
ATTR_DEVICE_ID = "device_id"
ATTR_CAPABILITY = "capability"
ATTR_ACTION = "action"
ATTR_PARAMS = "params"
ATTR_DEADLINE = "deadline"

SEND_COMMAND_SCHEMA = vol.Schema(
    {
        vol.Required(ATTR_DEVICE_ID): cv.string,
        # Without a capability, the action is a path-addressed protocol operation
        # (LwM2M: read, write, execute, ...; params name the path).
        vol.Optional(ATTR_CAPABILITY): cv.string,
        vol.Required(ATTR_ACTION): cv.string,
        vol.Optional(ATTR_PARAMS, default=dict): dict,
        vol.Optional(ATTR_DEADLINE): vol.All(vol.Coerce(float), vol.Range(min=0.1, max=600)),
    }
)


def _validation_error(key: str, **placeholders: str) -> ServiceValidationError:
    return ServiceValidationError(
        translation_domain=DOMAIN, translation_key=key, translation_placeholders=placeholders
    )


def _resolve_target(hass: HomeAssistant, device_registry_id: str) -> tuple[IotBridgeHub, Device]:
    """Find the hub and the protocol device behind a device registry id."""
    device_entry = dr.async_get(hass).async_get(device_registry_id)
    if device_entry is None:
        raise _validation_error("unknown_device", device=device_registry_id)
    label = device_entry.name or device_registry_id
    # Our identifiers name the hub's entry, so no lookup of the device's entries is needed.
    for entry_id, device_id in iot_bridge_identifiers(device_entry.identifiers):
        entry: IotBridgeConfigEntry | None = hass.config_entries.async_get_entry(entry_id)
        if entry is None or entry.domain != DOMAIN:
            continue
        if entry.state is not ConfigEntryState.LOADED:
            raise _validation_error("hub_not_loaded", device=label)
        if (device := entry.runtime_data.device(device_id)) is not None:
            return entry.runtime_data, device
    raise _validation_error("unknown_device", device=label)


def _resolve_capability(device: Device, key: str, action: str) -> Capability:
    capability = device.capability(key)
    if capability is None:
        raise _validation_error(
            "unknown_capability",
            device=device.name,
            capability=key,
            known=", ".join(sorted(device.capabilities)),
        )
    if action not in capability.actions:
        raise _validation_error(
            "unknown_action",
            capability=key,
            action=action,
            known=", ".join(sorted(capability.actions)) or "none",
        )
    return capability


def _validate_params(capability: Capability, action: str, params: dict[str, Any]) -> None:
    try:
        validate_params(capability, action, params)
    except ValueError as err:
        raise _validation_error(
            "invalid_params", capability=capability.key, error=str(err)
        ) from err


async def _async_send_command(call: ServiceCall) -> ServiceResponse:
    hub, device = _resolve_target(call.hass, call.data[ATTR_DEVICE_ID])
    action = call.data[ATTR_ACTION]
    if ATTR_CAPABILITY not in call.data:
        return await hub.async_operate(
            device, action, call.data[ATTR_PARAMS], deadline=call.data.get(ATTR_DEADLINE)
        )
    capability = _resolve_capability(device, call.data[ATTR_CAPABILITY], action)
    params: dict[str, Any] = call.data[ATTR_PARAMS]
    _validate_params(capability, action, params)
    result = await hub.async_command(
        device, capability, action, params, deadline=call.data.get(ATTR_DEADLINE)
    )
    if not result.succeeded:
        raise command_error(device, capability, result, hub.bridge.describe())
    response = result.as_dict()
    response.pop("reason", None)
    return response


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the integration's actions."""
    hass.services.async_register(
        DOMAIN,
        SERVICE_SEND_COMMAND,
        _async_send_command,
        schema=SEND_COMMAND_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )
