"""Base entity and the platform set-up shared by every capability kind."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any

from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.entity import Entity
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import DOMAIN
from .core.devices import restore_value
from .core.model import Capability, CapabilityKind, CommandResult, Device
from .hub import (
    IotBridgeConfigEntry,
    IotBridgeHub,
    signal_connection,
    signal_entity_remove,
    signal_new_capability,
    signal_new_device,
)

EntityFactory = Callable[[IotBridgeHub, Device, Capability], Entity]
# One entity per device (connectivity), or several (command health).
DeviceEntityFactory = Callable[[IotBridgeHub, Device], Entity | list[Entity]]


def enum_or_none[E: StrEnum](enum: type[E], value: str | None) -> E | None:
    """Map a device-declared class name onto Home Assistant's enum; unknown names are ignored."""
    if value is None:
        return None
    try:
        return enum(value)
    except ValueError:
        return None


def as_number(value: Any) -> float | int | None:
    """A numeric reading (ints stay ints), or None when the device sent something else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


PlatformSetup = Callable[
    [HomeAssistant, IotBridgeConfigEntry, AddConfigEntryEntitiesCallback], Awaitable[None]
]


def capability_platform(
    kind: CapabilityKind,
    factory: EntityFactory,
    device_factory: DeviceEntityFactory | None = None,
) -> PlatformSetup:
    """A platform's async_setup_entry: one entity per capability of `kind` (and, with
    device_factory, one per device), now and whenever a device announces more."""

    async def async_setup_entry(
        hass: HomeAssistant,
        entry: IotBridgeConfigEntry,
        async_add_entities: AddConfigEntryEntitiesCallback,
    ) -> None:
        hub = entry.runtime_data

        @callback
        def add(device: Device, capability: Capability) -> None:
            if capability.kind is kind:
                async_add_entities([factory(hub, device, capability)])

        @callback
        def add_device(device: Device) -> None:
            if device_factory is not None:
                entities = device_factory(hub, device)
                async_add_entities(entities if isinstance(entities, list) else [entities])

        for device in list(hub.bridge.devices.values()):
            add_device(device)
            for capability in device.capabilities.values():
                add(device, capability)
        entry.async_on_unload(
            async_dispatcher_connect(hass, signal_new_capability(entry.entry_id), add)
        )
        entry.async_on_unload(
            async_dispatcher_connect(hass, signal_new_device(entry.entry_id), add_device)
        )

    return async_setup_entry


class IotBridgeEntity(Entity):
    """An entity backed by one capability of one device."""

    _attr_has_entity_name = True
    _attr_should_poll = False
    # The platform's device class enum: a class the device declares is used when known.
    _device_classes: type[StrEnum] | None = None

    def __init__(self, hub: IotBridgeHub, device: Device, capability: Capability) -> None:
        self.hub = hub
        self.device_id = device.device_id
        self.key = capability.key
        self._attr_unique_id = f"{hub.entry.entry_id}_{device.device_id}_{capability.key}"
        self._attr_device_info = DeviceInfo(identifiers={hub.device_identifier(device.device_id)})
        self._attr_translation_key = capability.kind.value
        self._attr_name = capability.name or capability.key.replace("_", " ").capitalize()
        if self._device_classes is not None:
            self._attr_device_class = enum_or_none(self._device_classes, capability.device_class)
            if self._attr_device_class is not None and not capability.name:
                del self._attr_name  # Home Assistant names it after its device class.
        if not capability.confirmable and capability.writable:
            # Commands without confirmation are sent and assumed to have worked.
            self._attr_assumed_state = True
        self._commandable = capability.writable
        self._kept_when_offline = capability.kept_when_offline
        if capability.category is not None:
            self._attr_entity_category = EntityCategory(capability.category)
        self._attr_entity_registry_enabled_default = capability.enabled_by_default

    @property
    def device(self) -> Device | None:
        """The device as the hub knows it now."""
        return self.hub.device(self.device_id)

    @property
    def capability(self) -> Capability | None:
        """The capability as currently described (descriptions can change at runtime)."""
        device = self.hub.device(self.device_id)
        return None if device is None else device.capabilities.get(self.key)

    @property
    def reported_value(self) -> Any:
        """The last reported value (already checked by core/values.py); None while the
        device cannot be reached, since nobody can vouch for it then."""
        device = self.device
        if device is None or not (self._kept_when_offline or self.hub.reachable(device)):
            return None
        return device.state.get(self.key)

    @property
    def available(self) -> bool:
        """Readings are available while the device is reachable.

        Entities that take commands stay available while the device is known, even when it
        is offline: Home Assistant silently skips unavailable entities in an action call,
        which would turn "open the door" into a silent success. Instead the command reaches
        IoT Bridge and fails with a translated "device offline"; the state shows unknown and
        the device's connectivity sensor shows why (docs/reliability.md).
        """
        device = self.device
        if device is None:
            return False
        return self._commandable or self._kept_when_offline or self.hub.reachable(device)

    async def async_added_to_hass(self) -> None:
        """Follow the device's updates, the connection, and the capability's removal."""
        entry_id = self.hub.entry.entry_id
        await self._async_restore()
        self.async_on_remove(
            self.hub.async_follow_device(self.device_id, self.key, self._handle_update)
        )
        self.async_on_remove(
            async_dispatcher_connect(self.hass, signal_connection(entry_id), self._handle_update)
        )
        self.async_on_remove(
            async_dispatcher_connect(
                self.hass,
                signal_entity_remove(entry_id, self.device_id, self.key),
                self._handle_capability_gone,
            )
        )

    async def _async_restore(self) -> None:
        """Readings take their last value from before the restart until the device reports."""
        value = await self._async_last_reading()
        device = self.device
        if value is not None and device is not None:
            restore_value(device, self.key, value)

    async def _async_last_reading(self) -> Any:
        """The value this entity showed before Home Assistant restarted (readings only)."""
        return None

    @callback
    def _handle_update(self, changed: frozenset[str] | None = None) -> None:
        # A device update names the keys that changed: skip writes that would change nothing.
        if changed is None or self.key in changed:
            self.async_write_ha_state()

    @callback
    def _handle_capability_gone(self) -> None:
        registry = er.async_get(self.hass)
        if registry.async_get(self.entity_id) is not None:
            registry.async_remove(self.entity_id)
        else:
            self.hass.async_create_task(self.async_remove(force_remove=True))

    async def async_command(
        self, action: str, params: dict[str, Any] | None = None
    ) -> CommandResult:
        """Send a command for this capability; failed outcomes raise a translated error."""
        device, capability = self.device, self.capability
        if device is None or capability is None:
            raise _gone_error(self.device_id, self.key)
        return await self.hub.async_command_or_raise(device, capability, action, params)


def _gone_error(device_id: str, key: str) -> HomeAssistantError:
    return HomeAssistantError(
        translation_domain=DOMAIN,
        translation_key="device_gone",
        translation_placeholders={"device": device_id, "capability": key},
    )
