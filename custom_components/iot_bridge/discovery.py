"""CoAP multicast discovery, owned by the integration (not by a config entry).

At start-up (in the background, never delaying it) and then periodically, IoT Bridge asks
the all-CoAP-nodes groups who is there. Every device that answers from an address no entry
uses yet gets a discovery flow the user confirms (or ignores, which sticks); a known device
that answers from a new address gets its entry updated and reloaded by that flow.

Where the scan is sent: the interfaces Home Assistant's network integration has enabled
(Settings → System → Network), or the interface named in configuration.yaml:

    iot_bridge:
      coap_discovery:
        interface: 192.168.1.10   # IPv4 address of the interface to scan from
        ipv6_interface: eth0      # interface for ff02::fd (optional)
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

import voluptuous as vol
from homeassistant.components import network
from homeassistant.config_entries import SOURCE_INTEGRATION_DISCOVERY
from homeassistant.const import CONF_HOST, CONF_PORT, EVENT_HOMEASSISTANT_STOP
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import discovery_flow
from homeassistant.helpers.event import async_track_time_interval
from homeassistant.helpers.start import async_at_started
from homeassistant.util.hass_dict import HassKey

from .const import (
    CONF_ENABLED,
    CONF_INTERFACE,
    CONF_IPV6_INTERFACE,
    CONF_PROTOCOL,
    CONF_SCAN_INTERVAL,
    DEFAULT_COAP_PORT,
    DEFAULT_SCAN_INTERVAL,
    DOMAIN,
    LOGGER,
    PROTOCOL_COAP,
)
from .core.coap.scan import (
    ALL_COAP_NODES_IPV4,
    ALL_COAP_NODES_IPV6,
    ScanResult,
    ScanTarget,
    scan,
)

DATA_DISCOVERY: HassKey[CoapDiscovery] = HassKey(f"{DOMAIN}_coap_discovery")
# Addresses already offered are remembered (bounded) so each scan probes only new ones.
MAX_OFFERED: Final = 1024

DISCOVERY_SCHEMA: Final = vol.Schema(
    {
        vol.Optional(CONF_ENABLED, default=True): cv.boolean,
        vol.Optional(CONF_INTERFACE): vol.All(cv.string, vol.Match(r"^\d+\.\d+\.\d+\.\d+$")),
        vol.Optional(CONF_IPV6_INTERFACE): cv.string,
        vol.Optional(CONF_PORT, default=DEFAULT_COAP_PORT): cv.port,
        vol.Optional(CONF_SCAN_INTERVAL, default=DEFAULT_SCAN_INTERVAL): vol.All(
            vol.Coerce(float), vol.Range(min=10, max=86400)
        ),
    }
)


@dataclass(frozen=True, slots=True)
class DiscoverySettings:
    """Where and how often to scan."""

    enabled: bool = True
    interface: str | None = None
    ipv6_interface: str | None = None
    port: int = DEFAULT_COAP_PORT
    interval: float = DEFAULT_SCAN_INTERVAL

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DiscoverySettings:
        """From the validated `coap_discovery:` section."""
        settings = DISCOVERY_SCHEMA(dict(config))
        return cls(
            enabled=settings[CONF_ENABLED],
            interface=settings.get(CONF_INTERFACE),
            ipv6_interface=settings.get(CONF_IPV6_INTERFACE),
            port=settings[CONF_PORT],
            interval=settings[CONF_SCAN_INTERVAL],
        )


class CoapDiscovery:
    """Runs scans and turns new answers into discovery flows."""

    def __init__(self, hass: HomeAssistant, settings: DiscoverySettings) -> None:
        self.hass = hass
        self.settings = settings
        self.scans = 0
        self._offered: dict[tuple[str, int], None] = {}
        # Targets multicast does not work on: told once at INFO, then only at DEBUG.
        self._failing: set[ScanTarget] = set()
        self._unsubscribes: list[Callable[[], None]] = []
        self._unsubscribe_stop: Callable[[], None] | None = None
        self._scan_task: asyncio.Task[ScanResult] | None = None

    @callback
    def async_start(self) -> None:
        """First scan once Home Assistant has started, then every interval."""
        if not self.settings.enabled:
            return
        self._unsubscribes.append(async_at_started(self.hass, self._async_started))
        self._unsubscribe_stop = self.hass.bus.async_listen_once(
            EVENT_HOMEASSISTANT_STOP, self._async_on_stop
        )

    @callback
    def _async_started(self, _hass: HomeAssistant) -> None:
        self._unsubscribes.append(
            async_track_time_interval(
                self.hass,
                self._async_interval,
                timedelta(seconds=self.settings.interval),
                name="IoT Bridge CoAP discovery",
                cancel_on_shutdown=True,
            )
        )
        self._start_scan()

    @callback
    def _async_interval(self, _now: Any) -> None:
        self._start_scan()

    @callback
    def _start_scan(self) -> None:
        if self._scan_task is not None and not self._scan_task.done():
            return
        self._scan_task = self.hass.async_create_background_task(
            self.async_scan(), "IoT Bridge CoAP discovery scan"
        )

    async def _async_on_stop(self, _event: Event) -> None:
        self._unsubscribe_stop = None  # a one-time listener is gone once it ran
        self.async_stop()

    @callback
    def async_stop(self) -> None:
        """No more scans; a running one is cancelled."""
        if self._unsubscribe_stop is not None:
            self._unsubscribe_stop()
            self._unsubscribe_stop = None
        while self._unsubscribes:
            self._unsubscribes.pop()()
        if self._scan_task is not None and not self._scan_task.done():
            self._scan_task.cancel()

    async def async_scan(self) -> ScanResult:
        """One scan; new devices get a discovery flow."""
        targets = await self._async_targets()
        result = await scan(targets) if targets else ScanResult([], {})
        self.scans += 1
        self._report(targets, result)
        known = self._configured_addresses()
        for answer in result.answers:
            address = (answer.host, answer.port)
            if address in known or address in self._offered:
                continue
            self._offered[address] = None
            while len(self._offered) > MAX_OFFERED:
                del self._offered[next(iter(self._offered))]
            LOGGER.debug("CoAP device answered discovery from %s:%s", *address)
            discovery_flow.async_create_flow(
                self.hass,
                DOMAIN,
                context={"source": SOURCE_INTEGRATION_DISCOVERY},
                data={CONF_HOST: answer.host, CONF_PORT: answer.port},
            )
        return result

    def _report(self, targets: list[ScanTarget], result: ScanResult) -> None:
        """Multicast that does not work is normal on some networks: say so once, quietly."""
        for target, error in result.failures.items():
            if target in self._failing:
                LOGGER.debug("CoAP discovery on %s still fails: %s", target.describe(), error)
                continue
            self._failing.add(target)
            LOGGER.info(
                "CoAP discovery cannot send multicast on %s (%s); add such devices by host",
                target.describe(),
                error,
            )
        self._failing.intersection_update(result.failures)
        LOGGER.debug(
            "CoAP discovery scan on %d target(s): %d answer(s)", len(targets), len(result.answers)
        )

    def _configured_addresses(self) -> set[tuple[str, int]]:
        return {
            (entry.data[CONF_HOST], int(entry.data[CONF_PORT]))
            for entry in self.hass.config_entries.async_entries(DOMAIN)
            if entry.data.get(CONF_PROTOCOL) == PROTOCOL_COAP
        }

    async def _async_targets(self) -> list[ScanTarget]:
        """The configured interface, else the adapters the network integration enabled."""
        port = self.settings.port
        targets: list[ScanTarget] = []
        if self.settings.interface or self.settings.ipv6_interface:
            if self.settings.interface:
                targets.append(ScanTarget(ALL_COAP_NODES_IPV4, self.settings.interface, port))
            if self.settings.ipv6_interface:
                try:
                    index = socket.if_nametoindex(self.settings.ipv6_interface)
                except OSError:
                    index = 0
                targets.append(ScanTarget(ALL_COAP_NODES_IPV6, index, port))
            return targets
        if "network" not in self.hass.config.components:
            # Without the network integration nobody said which interfaces are ours to use.
            return targets
        for adapter in await network.async_get_adapters(self.hass):
            if not adapter["enabled"]:
                continue
            targets.extend(
                ScanTarget(ALL_COAP_NODES_IPV4, ipv4["address"], port) for ipv4 in adapter["ipv4"]
            )
            if adapter["ipv6"] and adapter["index"]:
                targets.append(ScanTarget(ALL_COAP_NODES_IPV6, adapter["index"], port))
        return targets


@callback
def async_setup_discovery(hass: HomeAssistant, config: Mapping[str, Any]) -> CoapDiscovery:
    """Create and start the integration's scanner (once per Home Assistant run)."""
    discovery = CoapDiscovery(hass, DiscoverySettings.from_config(config))
    hass.data[DATA_DISCOVERY] = discovery
    discovery.async_start()
    return discovery
