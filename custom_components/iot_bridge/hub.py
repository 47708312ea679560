"""The Home Assistant side of one hub: owns a protocol bridge, relays its events.

The hub is protocol-blind: `bridges.build_bridge` picks the bridge from the config entry's
protocol, and everything here speaks only `core.bridge.Bridge` and the core model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from homeassistant.config_entries import (
    SOURCE_IGNORE,
    SOURCE_INTEGRATION_DISCOVERY,
    ConfigEntry,
)
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.exceptions import (
    ConfigEntryAuthFailed,
    ConfigEntryNotReady,
    HomeAssistantError,
    ServiceValidationError,
)
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import discovery_flow
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.dispatcher import async_dispatcher_send
from homeassistant.helpers.event import async_track_time_interval
from homeassistant.util import dt as dt_util

from .bridges import BridgeContext, build_bridge
from .const import (
    ADMISSION_ACCEPT_ALL,
    ADMISSION_ASK,
    CONF_ACCEPTED,
    CONF_ADMISSION,
    CONF_AUTO_DISCOVERY,
    CONF_DEADLINE,
    CONF_ENTRY_ID,
    CONF_NAME,
    CONF_PENDING_DEVICE,
    CONF_PROTOCOL,
    CONF_RETRIES,
    DEFAULT_DEADLINE,
    DEFAULT_RETRIES,
    DOMAIN,
    EVENT_COMMAND,
    LOGGER,
    PROTOCOL_LWM2M,
    PROTOCOL_MQTT,
)
from .core.bridge import (
    Admission,
    BridgeAuthError,
    BridgeStartError,
    LapseReporting,
    OperatingBridge,
    OperationError,
    OperationFailure,
)
from .core.commands import CommandEngine
from .core.health import DAY, CommandHealth, Outcome
from .core.model import Capability, Command, CommandResult, Device
from .issues import (
    ISSUE_REGISTRATION_LAPSED,
    async_clear_issues,
    async_sync_device_timeouts,
    async_sync_problem,
    async_warn,
)

type IotBridgeConfigEntry = ConfigEntry[IotBridgeHub]

# Why a command was refused before anything was sent; each has its own translated message.
REFUSED_DEVICE_OFFLINE = "device_offline"
REFUSED_NOT_CONNECTED = "not_connected"

# A device whose registration lapsed this long ago gets a repair issue.
LAPSE_REPAIR_AFTER = timedelta(days=1)
_LAPSE_CHECK_EVERY = timedelta(minutes=10)


_LOGGER = logging.getLogger(__name__)


def iot_bridge_identifiers(
    identifiers: Iterable[tuple[str, str]],
) -> Iterator[tuple[str, str]]:
    """(config entry id, protocol device id) of each IoT Bridge device registry identifier."""
    for domain, identifier in identifiers:
        entry_id, separator, device_id = identifier.partition("_")
        if domain == DOMAIN and separator and device_id:
            yield entry_id, device_id


def signal_new_device(entry_id: str) -> str:
    """Dispatcher signal: a device appeared (its per-device entities are due)."""
    return f"{DOMAIN}_{entry_id}_new_device"


def signal_new_capability(entry_id: str) -> str:
    """Dispatcher signal: (device, capability) pairs that need an entity."""
    return f"{DOMAIN}_{entry_id}_new_capability"


def signal_entity_remove(entry_id: str, device_id: str, key: str) -> str:
    """Dispatcher signal: the capability behind an entity went away or changed shape."""
    return f"{DOMAIN}_{entry_id}_{device_id}_{key}_remove"


def signal_health(entry_id: str, device_id: str) -> str:
    """Dispatcher signal: a command of the device ended (its health figures changed)."""
    return f"{DOMAIN}_{entry_id}_{device_id}_health"


def signal_connection(entry_id: str) -> str:
    """Dispatcher signal: the bridge's transport went down or came back."""
    return f"{DOMAIN}_{entry_id}_connection"


type DeviceFollower = Callable[[frozenset[str] | None], None]


class IotBridgeHub:
    """One config entry's bridge, devices and command engine."""

    def __init__(self, hass: HomeAssistant, entry: IotBridgeConfigEntry) -> None:
        self.hass = hass
        self.entry = entry
        # Deadline and retries are read from the options for every command (new_command),
        # so changing them needs no reload.
        self.engine = CommandEngine()
        self._registry_ids: dict[str, str] = {}
        # Devices a discovery flow was started for in this run (one flow each).
        self._asked: set[str] = set()
        # Command outcomes per protocol device id, for the health sensors and repairs.
        self.health: dict[str, CommandHealth] = {}
        # Wall clock of the health figures (tests move it forward by a day).
        self.clock: Callable[[], float] = time.time
        # Devices with a "registration lapsed" repair issue open.
        self._lapse_issues: set[str] = set()
        # Entities following a device, by the capability key they show (None: the device's
        # availability only). A state message wakes the entities of the keys it changed and
        # no others: one value for a ten-sensor device is one call, not ten.
        self._followers: dict[str, dict[str | None, list[DeviceFollower]]] = {}
        self._load_registry_ids()
        self.bridge = build_bridge(
            entry.data,
            BridgeContext(
                self,
                self.engine,
                admission=self._admission,
                request_reauth=lambda: entry.async_start_reauth(hass),
                title=entry.title,
                options=lambda: entry.options,
            ),
        )
        # The bridge's live mapping (core/bridge.py): entities look their device up in it
        # several times per state write.
        self._devices = self.bridge.devices

    @property
    def connected(self) -> bool:
        """Whether the bridge's transport is up."""
        return self.bridge.connected

    async def async_start(self) -> None:
        """Start the bridge; raise the exceptions Home Assistant expects while it cannot."""
        placeholders = {"target": self.bridge.describe()}
        if isinstance(self.bridge, LapseReporting):
            self.entry.async_on_unload(
                async_track_time_interval(self.hass, self._check_lapsed, _LAPSE_CHECK_EVERY)
            )
        try:
            await self.bridge.start()
        except BridgeAuthError as err:
            raise ConfigEntryAuthFailed(
                translation_domain=DOMAIN,
                translation_key="invalid_auth",
                translation_placeholders=placeholders,
            ) from err
        except BridgeStartError as err:
            raise ConfigEntryNotReady(
                translation_domain=DOMAIN,
                translation_key="cannot_connect",
                translation_placeholders={**placeholders, "error": str(err)},
            ) from err

    async def async_stop(self) -> None:
        """Fail pending commands and stop the bridge."""
        self.engine.cancel_all("IoT Bridge is shutting down")
        await self.bridge.stop()
        # Health figures start afresh with the next start, and so do the repairs on them.
        async_clear_issues(self.hass, self.entry.entry_id)

    async def async_forget_device(self, device_id: str) -> None:
        """The user deleted a device in Home Assistant: the protocol forgets it too."""
        self._registry_ids.pop(device_id, None)
        self.health.pop(device_id, None)
        async_sync_device_timeouts(self.hass, self.entry.entry_id, device_id, "", timing_out=False)
        self._close_lapse_issue(device_id)
        await self.bridge.forget_device(device_id)

    def device(self, device_id: str) -> Device | None:
        """A known device by its protocol id."""
        return self._devices.get(device_id)

    def reachable(self, device: Device) -> bool:
        """Whether a command to the device could be delivered now."""
        return self.bridge.connected and device.available

    def new_command(
        self,
        device_id: str,
        capability: str,
        action: str,
        params: dict[str, Any] | None = None,
        deadline: float | None = None,
    ) -> Command:
        """A command with the hub's current options: no reload needed when they change."""
        return self.engine.new_command(
            device_id,
            capability,
            action,
            params or {},
            deadline=self.deadline(deadline),
            retries=int(self.entry.options.get(CONF_RETRIES, DEFAULT_RETRIES)),
        )

    def deadline(self, deadline: float | None = None) -> float:
        """Seconds a command may take: the caller's, else the hub's option."""
        return deadline or float(self.entry.options.get(CONF_DEADLINE, DEFAULT_DEADLINE))

    async def async_command(
        self,
        device: Device,
        capability: Capability,
        action: str,
        params: dict[str, Any] | None = None,
        deadline: float | None = None,
    ) -> CommandResult:
        """Send a command, wait for its outcome, and make every outcome visible."""
        command = self.new_command(device.device_id, capability.key, action, params, deadline)
        LOGGER.debug(
            "Command %s: %s %s on %s", command.command_id, action, capability.key, device.device_id
        )
        if not self.bridge.connected:
            result = self.engine.refuse(
                command, REFUSED_NOT_CONNECTED, f"not connected to {self.bridge.describe()}"
            )
        elif not device.available:
            result = self.engine.refuse(command, REFUSED_DEVICE_OFFLINE, "device offline")
        else:
            result = await self.bridge.execute(command, capability)
        LOGGER.debug("Command %s ended: %s", command.command_id, result.as_dict())
        self._record_health(device, capability, result)
        self.hass.bus.async_fire(
            EVENT_COMMAND,
            {
                "device_id": self.device_registry_id(device.device_id),
                "iot_bridge_device": device.device_id,
                "device_name": device.name,
                "capability": capability.key,
                "capability_name": capability.name or capability.key,
                "action": action,
                "outcome": result.status.value,
                "reason": result.reason,
                "latency_ms": round(result.latency_ms, 2),
                "attempts": result.attempts,
                "deadline_s": self.deadline(deadline),
                "command_id": command.command_id,
            },
        )
        return result

    def device_health(self, device_id: str) -> CommandHealth:
        """The command health of a device (empty until its first command ends)."""
        return self.health.setdefault(device_id, CommandHealth())

    def _record_health(self, device: Device, capability: Capability, result: CommandResult) -> None:
        now = self.clock()
        health = self.device_health(device.device_id)
        health.record(
            Outcome(
                at=now,
                status=result.status,
                latency_ms=result.latency_ms,
                reason=result.reason,
                capability=capability.key,
                action=result.command.action,
            )
        )
        async_sync_device_timeouts(
            self.hass,
            self.entry.entry_id,
            device.device_id,
            device.name,
            timing_out=health.timing_out_for(now) >= DAY,
        )
        async_dispatcher_send(self.hass, signal_health(self.entry.entry_id, device.device_id))

    async def async_command_or_raise(
        self,
        device: Device,
        capability: Capability,
        action: str,
        params: dict[str, Any] | None = None,
    ) -> CommandResult:
        """Like async_command, but a failed outcome raises a translated error."""
        result = await self.async_command(device, capability, action, params)
        if not result.succeeded:
            raise command_error(device, capability, result, self.bridge.describe())
        return result

    async def async_operate(
        self,
        device: Device,
        action: str,
        params: dict[str, Any],
        deadline: float | None = None,
    ) -> dict[str, Any]:
        """A path-addressed protocol operation (LwM2M read, write, ...): its answer, or a
        translated error naming the device, the path and the reason."""
        placeholders = {
            "device": device.name,
            "action": action,
            "path": _operation_path(params),
            "target": self.bridge.describe(),
        }
        bridge = self.bridge
        if not isinstance(bridge, OperatingBridge):
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="operations_not_supported",
                translation_placeholders=placeholders,
            )
        if not self.reachable(device):
            key = "command_not_connected" if not bridge.connected else "command_device_offline"
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key=key,
                translation_placeholders={**placeholders, "capability": placeholders["path"]},
            )
        seconds = deadline or float(self.entry.options.get(CONF_DEADLINE, DEFAULT_DEADLINE))
        outcome, reason = "confirmed", ""
        started = time.monotonic()
        try:
            answer = await bridge.operate(device.device_id, action, params, deadline=seconds)
        except OperationError as err:
            outcome, reason = _OPERATION_OUTCOMES.get(err.failure, "rejected"), err.reason
            error_type = (
                ServiceValidationError
                if err.failure is OperationFailure.INVALID
                else HomeAssistantError
            )
            raise error_type(
                translation_domain=DOMAIN,
                translation_key=f"operation_{err.failure.value}",
                translation_placeholders={**placeholders, "reason": err.reason},
            ) from err
        finally:
            LOGGER.debug(
                "Operation %s %s on %s: %s %s",
                action,
                placeholders["path"],
                device.device_id,
                outcome,
                reason,
            )
            self.hass.bus.async_fire(
                EVENT_COMMAND,
                {
                    "device_id": self.device_registry_id(device.device_id),
                    "iot_bridge_device": device.device_id,
                    "device_name": device.name,
                    "capability": None,
                    "capability_name": None,
                    "path": placeholders["path"],
                    "action": action,
                    "outcome": outcome,
                    "reason": reason,
                    "latency_ms": round((time.monotonic() - started) * 1000, 2),
                    "attempts": 1,
                    "deadline_s": seconds,
                },
            )
        return answer

    def device_registry_id(self, device_id: str) -> str | None:
        """Home Assistant's device registry id for a protocol device id."""
        return self._registry_ids.get(device_id)

    def _load_registry_ids(self) -> None:
        """Remember which protocol devices this entry already has in the device registry.

        Looking devices up by identifier is deprecated (identifiers are only unique per
        entry now); listing the entry's own devices works on every supported version.
        """
        registry = dr.async_get(self.hass)
        for device_entry in dr.async_entries_for_config_entry(registry, self.entry.entry_id):
            for entry_id, device_id in iot_bridge_identifiers(device_entry.identifiers):
                if entry_id == self.entry.entry_id:
                    self._registry_ids[device_id] = device_entry.id

    def device_identifier(self, device_id: str) -> tuple[str, str]:
        """Device registry identifier, unique per hub."""
        return (DOMAIN, f"{self.entry.entry_id}_{device_id}")

    # BridgeListener ---------------------------------------------------------

    @callback
    def device_discovered(self, device: Device, previous: Device | None) -> None:
        """Register the device and ask platforms for entities of new capabilities."""
        device_entry = dr.async_get(self.hass).async_get_or_create(
            config_entry_id=self.entry.entry_id,
            identifiers={self.device_identifier(device.device_id)},
            name=device.name,
            manufacturer=device.info.manufacturer,
            model=device.info.model,
            sw_version=device.info.sw_version,
            hw_version=device.info.hw_version,
            serial_number=device.info.serial_number,
        )
        self._registry_ids[device.device_id] = device_entry.id
        entry_id = self.entry.entry_id
        if previous is None:
            async_dispatcher_send(self.hass, signal_new_device(entry_id), device)
        old = previous.capabilities if previous else {}
        for key, capability in old.items():
            new = device.capabilities.get(key)
            if new is None or new.kind is not capability.kind:
                async_dispatcher_send(
                    self.hass, signal_entity_remove(entry_id, device.device_id, key)
                )
        for key, capability in device.capabilities.items():
            known = old.get(key)
            # Same kind with new details: the existing entity reads them on its next update.
            if known is None or known.kind is not capability.kind:
                async_dispatcher_send(
                    self.hass, signal_new_capability(entry_id), device, capability
                )
        self.device_state_changed(device, None)

    @callback
    def device_removed(self, device_id: str) -> None:
        """The device went away for good: remove it from the registry."""
        registry_id = self._registry_ids.pop(device_id, None)
        self.health.pop(device_id, None)
        async_sync_device_timeouts(self.hass, self.entry.entry_id, device_id, "", timing_out=False)
        registry = dr.async_get(self.hass)
        if registry_id is not None and registry.async_get(registry_id) is not None:
            registry.async_remove_device(registry_id)

    @callback
    def _check_lapsed(self, now: datetime) -> None:
        """Open a repair issue for each device whose registration lapsed over a day ago."""
        bridge = self.bridge
        if not isinstance(bridge, LapseReporting):
            return
        for device in list(bridge.devices.values()):
            since = bridge.lapsed_since(device.device_id)
            if since is None or device.device_id in self._lapse_issues:
                continue
            lapsed = dt_util.utc_from_timestamp(since)
            if now - lapsed < LAPSE_REPAIR_AFTER:
                continue
            self._lapse_issues.add(device.device_id)
            async_warn(
                self.hass,
                self._lapse_issue_id(device.device_id),
                ISSUE_REGISTRATION_LAPSED,
                {
                    "device": device.name,
                    "since": lapsed.isoformat(timespec="minutes"),
                    "target": bridge.describe(),
                },
            )

    def _lapse_issue_id(self, device_id: str) -> str:
        return f"registration_lapsed_{self.entry.entry_id}_{device_id}"

    def _close_lapse_issue(self, device_id: str) -> None:
        # Also an issue from before a restart: the registry keeps issues, we do not.
        self._lapse_issues.discard(device_id)
        ir.async_delete_issue(self.hass, DOMAIN, self._lapse_issue_id(device_id))

    def async_follow_device(
        self, device_id: str, key: str | None, follower: DeviceFollower
    ) -> CALLBACK_TYPE:
        """Call `follower` when the value of `key` changes (`key` None: only when the device
        as a whole changed, e.g. its availability) and whenever the whole device did."""
        by_key = self._followers.setdefault(device_id, {})
        by_key.setdefault(key, []).append(follower)

        @callback
        def stop() -> None:
            followers = by_key.get(key)
            if followers is not None and follower in followers:
                followers.remove(follower)
                if not followers:
                    del by_key[key]
            if not by_key and self._followers.get(device_id) is by_key:
                del self._followers[device_id]

        return stop

    @callback
    def device_state_changed(self, device: Device, changed: frozenset[str] | None) -> None:
        """Tell the entities of the keys that changed (all of them when `changed` is None)."""
        if changed is None and device.available:
            self._close_lapse_issue(device.device_id)
        by_key = self._followers.get(device.device_id)
        if by_key is None:
            return
        if changed is None:
            targets = [follower for followers in by_key.values() for follower in followers]
        else:
            targets = [f for key in changed if (followers := by_key.get(key)) for f in followers]
        for follower in targets:
            try:
                follower(changed)
            except Exception:
                # One entity's failure must not keep the device's other entities stale.
                _LOGGER.exception("Error updating an entity of device %s", device.device_id)

    @callback
    def connection_changed(self, connected: bool) -> None:
        """Transport up or down: every entity's availability follows; pending commands are
        sent again at once (same id) so a reconnect inside their deadline still counts."""
        if connected:
            self.engine.resend_pending()
        async_dispatcher_send(self.hass, signal_connection(self.entry.entry_id))

    @callback
    def problem_changed(self, problem: str, active: bool) -> None:
        """The bridge found (or no longer finds) a problem the user can fix: a repair."""
        async_sync_problem(self.hass, self.entry, problem, active, self.bridge.describe())

    # Admission ----------------------------------------------------------------

    def _admission(self, device_id: str) -> Admission:
        """Whether a device the bridge just met may have entities (asks the user if unsure)."""
        options = self.entry.options
        protocol = self.entry.data.get(CONF_PROTOCOL, PROTOCOL_MQTT)
        if protocol == PROTOCOL_LWM2M:
            automatic = options.get(CONF_ADMISSION, ADMISSION_ASK) == ADMISSION_ACCEPT_ALL
        else:
            automatic = bool(options.get(CONF_AUTO_DISCOVERY, True))
        if automatic or self._accepted(device_id):
            return Admission.ACCEPTED
        unique_id = pending_device_unique_id(self.entry.entry_id, device_id)
        known = self.hass.config_entries.async_entry_for_domain_unique_id(DOMAIN, unique_id)
        if known is not None and known.source == SOURCE_IGNORE:
            return Admission.IGNORED
        if device_id not in self._asked:
            self._asked.add(device_id)
            discovery_flow.async_create_flow(
                self.hass,
                DOMAIN,
                context={"source": SOURCE_INTEGRATION_DISCOVERY},
                data={
                    CONF_PENDING_DEVICE: device_id,
                    CONF_ENTRY_ID: self.entry.entry_id,
                    CONF_NAME: device_id,
                },
            )
        return Admission.PENDING

    def _accepted(self, device_id: str) -> bool:
        return (
            device_id in self.entry.options.get(CONF_ACCEPTED, ())
            or self.device_registry_id(device_id) is not None
        )

    async def async_accept(self, device_id: str) -> None:
        """The user accepted a waiting device: remember it, and let the bridge set it up."""
        accepted = list(self.entry.options.get(CONF_ACCEPTED, ()))
        if device_id not in accepted:
            accepted.append(device_id)
            self.hass.config_entries.async_update_entry(
                self.entry, options={**self.entry.options, CONF_ACCEPTED: accepted}
            )
        self._asked.discard(device_id)
        await self.bridge.admit(device_id)


def pending_device_unique_id(entry_id: str, device_id: str) -> str:
    """The unique id of the flow that asks about a device (and of its ignore entry)."""
    return f"device:{entry_id}:{device_id}"


def _operation_path(params: dict[str, Any]) -> str:
    """What an operation is about, for messages: its path, or a composite's paths."""
    paths = params.get("paths")
    if "path" not in params and isinstance(paths, list):
        return ", ".join(str(path) for path in paths[:8])
    return str(params.get("path", ""))


# The iot_bridge_command event's outcome for each failed raw operation.
_OPERATION_OUTCOMES = {
    OperationFailure.INVALID: "rejected",
    OperationFailure.REFUSED: "rejected",
    OperationFailure.TIMEOUT: "timeout",
    OperationFailure.NOT_SUPPORTED: "rejected",
}

# Failed outcomes whose cause has a message of its own; the rest use their status's.
_ERROR_KEYS = {
    REFUSED_DEVICE_OFFLINE: "command_device_offline",
    REFUSED_NOT_CONNECTED: "command_not_connected",
}


def command_error(
    device: Device, capability: Capability, result: CommandResult, target: str
) -> HomeAssistantError:
    """A translated error naming the device and why the command failed."""
    key = _ERROR_KEYS.get(result.code or "", f"command_{result.status.value}")
    return HomeAssistantError(
        translation_domain=DOMAIN,
        translation_key=key,
        translation_placeholders={
            "device": device.name,
            "capability": capability.name or capability.key,
            "action": result.command.action,
            "reason": result.reason or "",
            "target": target,
        },
    )
