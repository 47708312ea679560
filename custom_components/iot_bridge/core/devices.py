"""The devices a bridge knows, and the one place their state changes.

Every protocol package keeps its devices in a `DeviceStore`: announcements, state,
availability and command outcomes all go through it, so every protocol validates values
the same way (core/values.py), logs a bad device once rather than per message, keeps its
memory bounded, and tells the listener exactly which values changed.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Final

from .bridge import BridgeListener
from .model import Capability, CapabilityKind, Command, CommandResult, Device
from .values import InvalidValue, normalize

_LOGGER = logging.getLogger(__name__)
_MISSING: Final = object()
# State that arrives before a device's description is kept for this many devices, with at
# most this many keys each: enough for start-up races, too little for a hostile client to
# grow Home Assistant's memory by inventing device ids.
MAX_EARLY_DEVICES: Final = 256
MAX_EARLY_KEYS: Final = 64
# ... and at most this much data, per device and in all (values are counted by their size
# as JSON would spell them, roughly): keys alone would let 64 values of 16 KiB each through.
MAX_EARLY_DEVICE_BYTES: Final = 16 * 1024
MAX_EARLY_BYTES: Final = 1024 * 1024
# (device, cause) pairs remembered so each problem is logged once, not per message.
_MAX_WARNED: Final = 4096
_WARNINGS_PER_WINDOW: Final = 10
_WARNING_WINDOW: Final = 60.0

# The state a confirmed action leaves behind when the device's answer does not say.
_EXPECTED_STATE: Final[dict[tuple[CapabilityKind, str], Any]] = {
    (CapabilityKind.LOCK, "lock"): "locked",
    (CapabilityKind.LOCK, "unlock"): "unlocked",
    (CapabilityKind.LOCK, "open"): "open",
    (CapabilityKind.SWITCH, "turn_on"): True,
    (CapabilityKind.SWITCH, "turn_off"): False,
}


class RejectLog:
    """Logs a rejected input once per device and cause until that input is good again.

    A cause may come in variants (why a payload was refused): each variant is logged once.

    A flood from many senders (random device ids, new source ports) is still bounded: per
    cause at most _WARNINGS_PER_WINDOW warnings per window, then one line saying how many
    more were only counted.
    """

    def __init__(
        self, logger: logging.Logger = _LOGGER, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.counts: Counter[str] = Counter()
        self._logger = logger
        self._clock = clock
        # (device, cause) -> variants already logged
        self._warned: OrderedDict[tuple[str, str], set[str]] = OrderedDict()
        # cause -> (window start, warnings in it, warnings held back)
        self._windows: dict[str, tuple[float, int, int]] = {}

    def reject(self, device_id: str, cause: str, message: str, variant: str = "") -> None:
        """Count a rejection; warn the first time for this device, cause and variant."""
        self.counts[cause] += 1
        key = (device_id, cause)
        variants = self._warned.get(key)
        if variants is not None and variant in variants:
            self._logger.debug("%s (again)", message)
            return
        if variants is None:
            self._warned[key] = {variant}
        else:
            variants.add(variant)
        while len(self._warned) > _MAX_WARNED:
            self._warned.popitem(last=False)
        if self._allowed(cause):
            self._logger.warning("%s", message)
        else:
            self._logger.debug("%s", message)

    def _allowed(self, cause: str) -> bool:
        now = self._clock()
        start, warned, held = self._windows.get(cause, (now, 0, 0))
        if now - start >= _WARNING_WINDOW:
            if held:
                self._logger.warning(
                    "%d more rejections (%s) from other senders were only counted", held, cause
                )
            start, warned, held = now, 0, 0
        if warned < _WARNINGS_PER_WINDOW:
            self._windows[cause] = (start, warned + 1, held)
            return True
        self._windows[cause] = (start, warned, held + 1)
        return False

    @property
    def warned(self) -> bool:
        """Whether any rejection is remembered (accept has something to clear)."""
        return bool(self._warned)

    def accept(self, device_id: str, cause: str) -> None:
        """The input is good again: a new problem will be logged again."""
        self._warned.pop((device_id, cause), None)


def restore_value(device: Device, key: str, value: Any) -> bool:
    """Fill in a value remembered from before a restart for a key the device has not reported
    since; return whether it was used.

    A device that retains only the keys that changed leaves the broker holding part of its
    state: without this, every other reading would be unknown after a restart until the
    device happens to send it again. A value the device reports always wins.
    """
    capability = device.capabilities.get(key)
    if capability is None or value is None or key in device.state:
        return False
    try:
        device.state[key] = normalize(capability, value)
    except InvalidValue:
        return False
    return True


def expected_state(device: Device, command: Command) -> Any:
    """What a successful action sets when the device's answer does not report it."""
    capability = device.capabilities[command.capability]
    if capability.kind is CapabilityKind.NUMBER:
        return command.params.get("value")
    if capability.kind is CapabilityKind.LIGHT:
        current = device.state.get(command.capability)
        brightness = current.get("brightness") if isinstance(current, dict) else None
        return {
            "on": command.action == "turn_on",
            "brightness": command.params.get("brightness", brightness),
        }
    return _EXPECTED_STATE.get((capability.kind, command.action))


class DeviceStore:
    """Devices by id, with validated state; reports every change to the listener."""

    def __init__(self, listener: BridgeListener, rejects: RejectLog | None = None) -> None:
        self.devices: dict[str, Device] = {}
        self.rejects = rejects or RejectLog()
        self._listener = listener
        # device id -> key -> (value, its approximate size in bytes)
        self._early_state: OrderedDict[str, dict[str, tuple[Any, int]]] = OrderedDict()
        self._early_bytes = 0
        self._early_availability: OrderedDict[str, bool] = OrderedDict()

    def get(self, device_id: str) -> Device | None:
        """A known device."""
        return self.devices.get(device_id)

    # -- descriptions ---------------------------------------------------------------------

    def announce(self, device: Device) -> None:
        """A device appeared or described itself anew; its known state carries over."""
        previous = self.devices.get(device.device_id)
        if previous is not None:
            device.available = previous.available
            self._carry_over(device, previous.state, previous.capabilities)
        early = self._early_state.pop(device.device_id, {})
        self._early_bytes -= sum(size for _, size in early.values())
        self._carry_over(device, {key: value for key, (value, _) in early.items()})
        early_available = self._early_availability.pop(device.device_id, None)
        if early_available is not None:
            device.available = early_available
        self.devices[device.device_id] = device
        self._listener.device_discovered(device, previous)

    def _carry_over(
        self,
        device: Device,
        values: Mapping[str, Any],
        old_capabilities: Mapping[str, Capability] | None = None,
    ) -> None:
        """Keep values the new description can still hold; a kind change drops them."""
        for key, value in values.items():
            capability = device.capabilities.get(key)
            if capability is None:
                continue
            old = old_capabilities.get(key) if old_capabilities is not None else None
            if old is not None and old.kind is not capability.kind:
                # A sensor's 1 is not a switch's "on": unknown until the device reports.
                continue
            try:
                device.state[key] = normalize(capability, value)
            except InvalidValue:
                continue  # e.g. a number whose new range leaves the old value out

    def remove(self, device_id: str) -> bool:
        """The device is gone; True if it was known."""
        self._drop_early(device_id)
        self._early_availability.pop(device_id, None)
        if self.devices.pop(device_id, None) is None:
            return False
        self._listener.device_removed(device_id)
        return True

    def forget(self, device_id: str) -> None:
        """Drop a device without telling the listener (the user removed it already)."""
        self.devices.pop(device_id, None)
        self._drop_early(device_id)
        self._early_availability.pop(device_id, None)

    # -- state ------------------------------------------------------------------------------

    def apply_state(self, device_id: str, values: Mapping[str, Any]) -> frozenset[str]:
        """Validate and merge reported values; return (and announce) the keys that changed.

        State for a device not described yet is kept, bounded, until its description comes.
        """
        device = self.devices.get(device_id)
        if device is None:
            self._remember_early(device_id, values)
            return frozenset()
        changed: dict[str, Any] = {}
        for key, raw in values.items():
            capability = device.capabilities.get(key)
            if capability is None:
                self.rejects.counts["unknown_state_key"] += 1
                continue
            value = self._checked(device, capability, raw)
            if value is not _MISSING and device.state.get(key, _MISSING) != value:
                changed[key] = value
        if not changed:
            return frozenset()
        device.state.update(changed)
        keys = frozenset(changed)
        self._listener.device_state_changed(device, keys)
        return keys

    def _checked(self, device: Device, capability: Capability, raw: Any) -> Any:
        try:
            value = normalize(capability, raw)
        except InvalidValue as err:
            cause = f"value of {capability.key}"
            self.rejects.reject(
                device.device_id,
                cause,
                f"Dropped {cause} from device {device.device_id}: {err}",
            )
            return _MISSING
        if self.rejects.warned:  # a good value clears an earlier warning (rarely any)
            self.rejects.accept(device.device_id, f"value of {capability.key}")
        return value

    def set_available(self, device_id: str, available: bool) -> None:
        """The device says it is (un)reachable."""
        device = self.devices.get(device_id)
        if device is None:
            self._early_availability[device_id] = available
            self._early_availability.move_to_end(device_id)
            _trim(self._early_availability, MAX_EARLY_DEVICES)
            return
        if device.available != available:
            device.available = available
            self._listener.device_state_changed(device, None)

    def set_all_available(self, available: bool) -> None:
        """Every device's reachability follows the transport's (a single-device bridge)."""
        for device_id in list(self.devices):
            self.set_available(device_id, available)

    def apply_result(self, command: Command, result: CommandResult) -> None:
        """A command ended: apply the state its answer reported, or what success implies."""
        device = self.devices.get(command.device_id)
        if device is None:
            return
        if result.state:
            self.apply_state(device.device_id, result.state)
        if not result.succeeded or command.capability in (result.state or {}):
            return
        if command.capability not in device.capabilities:
            return
        value = expected_state(device, command)
        if value is not None:
            self.apply_state(device.device_id, {command.capability: value})

    @property
    def early_bytes(self) -> int:
        """Approximate size of the state kept for devices not described yet."""
        return self._early_bytes

    def _remember_early(self, device_id: str, values: Mapping[str, Any]) -> None:
        early = self._early_state.pop(device_id, {})
        device_bytes = sum(size for _, size in early.values())
        for key, value in values.items():
            if key not in early and len(early) >= MAX_EARLY_KEYS:
                self.rejects.counts["early_state_dropped"] += 1
                continue
            old_size = early[key][1] if key in early else 0
            size = approximate_size(key) + approximate_size(value, MAX_EARLY_DEVICE_BYTES)
            if device_bytes - old_size + size > MAX_EARLY_DEVICE_BYTES:
                self.rejects.counts["early_state_dropped"] += 1
                continue
            early[key] = (value, size)
            device_bytes += size - old_size
            self._early_bytes += size - old_size
        self._early_state[device_id] = early
        evicted = False
        while len(self._early_state) > MAX_EARLY_DEVICES or self._early_bytes > MAX_EARLY_BYTES:
            self._drop_early(next(iter(self._early_state)))
            evicted = True
        if evicted:
            self.rejects.counts["early_state_evicted"] += 1

    def _drop_early(self, device_id: str) -> None:
        early = self._early_state.pop(device_id, None)
        if early is not None:
            self._early_bytes -= sum(size for _, size in early.values())


def approximate_size(value: Any, limit: int = MAX_EARLY_BYTES) -> int:
    """Roughly how many bytes a value takes when spelled as JSON; stops counting at limit.

    Walked without recursion: a deeply nested value cannot exhaust the stack.
    """
    total = 0
    pending = [value]
    while pending and total <= limit:
        item = pending.pop()
        if isinstance(item, str | bytes | bytearray):
            total += len(item) + 2
        elif isinstance(item, dict):
            total += 2
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2
            pending.extend(item)
        else:
            total += 8  # numbers, booleans, null and other scalars
    return total


def _trim(store: OrderedDict[str, Any], limit: int) -> bool:
    """Drop the oldest entries beyond limit; True if any were dropped."""
    dropped = False
    while len(store) > limit:
        store.popitem(last=False)
        dropped = True
    return dropped
