"""CoAP multicast discovery on loopback: the scan, the integration's scanner, the flows.

Multicast works on these machines on `lo` when both ends name it (the simulators join
224.0.1.187 on 127.0.0.1, the scan sets IP_MULTICAST_IF 127.0.0.1). Where loopback
multicast does not work, the same scan and flows run with unicast requests to each
device instead (the `loopback_multicast` fixture says which one ran).
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterable
from datetime import timedelta
from typing import Any
from unittest.mock import patch

import pytest
from homeassistant import config_entries
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import async_fire_time_changed

from custom_components.iot_bridge.const import DOMAIN
from custom_components.iot_bridge.core.coap.profile import parse_description
from custom_components.iot_bridge.core.coap.scan import (
    ALL_COAP_NODES_IPV4,
    ALL_COAP_NODES_IPV6,
    ScanTarget,
    scan,
)
from custom_components.iot_bridge.discovery import (
    DATA_DISCOVERY,
    CoapDiscovery,
    DiscoverySettings,
)
from iot_bridge_sim.coap import CoapDeviceSimulator, MulticastSettings
from iot_bridge_sim.devices import climate_node, parcel_locker

from .coap_peers import HOST, StartSim, coap_entry, free_udp_port, start_coap_sim
from .common import wait_for

pytestmark = pytest.mark.usefixtures("socket_enabled")

__all__ = ["start_coap_sim"]


@pytest.fixture
def scan_port() -> int:
    """A port of this test's own for the group, so parallel runs do not hear each other."""
    return free_udp_port()


@pytest.fixture
async def devices(
    hass: HomeAssistant, start_coap_sim: StartSim, scan_port: int
) -> list[CoapDeviceSimulator]:
    """Two devices that answer discovery on loopback."""
    multicast = MulticastSettings(port=scan_port, interface=HOST)
    return [
        await start_coap_sim(parcel_locker(), multicast=multicast),
        await start_coap_sim(climate_node(), multicast=multicast, content_format="cbor"),
    ]


@pytest.fixture
async def loopback_multicast(devices: list[CoapDeviceSimulator], scan_port: int) -> bool:
    """Whether this machine delivers multicast on loopback."""
    result = await scan([ScanTarget(ALL_COAP_NODES_IPV4, HOST, scan_port)], wait=0.5)
    return bool(result.answers)


def _targets(
    devices: Iterable[CoapDeviceSimulator], scan_port: int, multicast: bool
) -> list[ScanTarget]:
    if multicast:
        return [ScanTarget(ALL_COAP_NODES_IPV4, HOST, scan_port)]
    # The unicast stand-in: the same request and parser, sent to each device.
    return [ScanTarget(HOST, HOST, device.port) for device in devices]


def _stand_in(
    devices: Iterable[CoapDeviceSimulator], multicast: bool
) -> contextlib.AbstractContextManager[Any]:
    """Without loopback multicast, the scanner's targets become the unicast stand-in."""
    if multicast:
        return contextlib.nullcontext()
    return patch.object(
        CoapDiscovery,
        "_async_targets",
        return_value=_targets(devices, 0, multicast=False),
        autospec=True,
    )


async def test_scan_collects_every_answer(
    devices: list[CoapDeviceSimulator], scan_port: int, loopback_multicast: bool
) -> None:
    """aiocoap keeps only the first answer to a multicast request; the scan keeps all."""
    result = await scan(_targets(devices, scan_port, loopback_multicast), wait=0.5)
    assert result.failures == {}
    assert [(answer.host, answer.port) for answer in result.answers] == sorted(
        (HOST, device.port) for device in devices
    )
    for answer in result.answers:
        description = parse_description(answer.payload)
        assert description.usable
        assert description.info_paths == [("oic", "d")]


async def test_scan_failures_are_reported_not_raised() -> None:
    """No multicast route (ff02::fd on lo) or a bad interface: a failure entry, no exception."""
    targets = [
        ScanTarget(ALL_COAP_NODES_IPV6, socket.if_nametoindex("lo"), 5683),
        ScanTarget(ALL_COAP_NODES_IPV4, "not-an-address", 5683),
    ]
    result = await scan(targets, wait=0.1)
    assert result.answers == []
    assert set(result.failures) == set(targets)


async def _setup(hass: HomeAssistant, **discovery: Any) -> CoapDiscovery:
    assert await async_setup_component(hass, DOMAIN, {DOMAIN: {"coap_discovery": discovery}})
    await hass.async_block_till_done()
    return hass.data[DATA_DISCOVERY]


def _discovery_flows(hass: HomeAssistant) -> list[dict[str, Any]]:
    return [
        dict(flow)
        for flow in hass.config_entries.flow.async_progress_by_handler(DOMAIN)
        if flow["context"]["source"] == config_entries.SOURCE_INTEGRATION_DISCOVERY
    ]


async def test_start_up_scan_offers_each_new_device(
    hass: HomeAssistant,
    devices: list[CoapDeviceSimulator],
    scan_port: int,
    loopback_multicast: bool,
) -> None:
    """At start-up (in the background) every answering device gets a flow to confirm;
    a device already set up at that address gets none."""
    locker, climate = devices
    entry = coap_entry(locker.port, "locker1")
    entry.add_to_hass(hass)  # set up with the integration below
    with _stand_in(devices, loopback_multicast):
        discovery = await _setup(hass, interface=HOST, port=scan_port)
        await wait_for(lambda: discovery.scans == 1, what="the start-up scan")
    await wait_for(lambda: bool(_discovery_flows(hass)), what="a discovery flow")
    await hass.async_block_till_done(wait_background_tasks=True)
    flows = _discovery_flows(hass)
    assert [flow["context"]["title_placeholders"] for flow in flows] == [
        {"name": "Climate node", "host": HOST}
    ]
    assert flows[0]["step_id"] == "discovery_confirm"
    assert climate.port != locker.port
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_periodic_scan_and_address_change(
    hass: HomeAssistant,
    start_coap_sim: StartSim,
    scan_port: int,
    devices: list[CoapDeviceSimulator],
    loopback_multicast: bool,
) -> None:
    """Later scans find a known device at a new address: its entry follows and reloads."""
    locker = devices[0]
    entry = coap_entry(locker.port, "locker1")
    entry.add_to_hass(hass)
    discovery = await _setup(hass, interface=HOST, port=scan_port, scan_interval=60)
    await wait_for(lambda: discovery.scans == 1)
    assert entry.state is ConfigEntryState.LOADED
    await hass.async_add_executor_job(locker.stop)
    moved = await start_coap_sim(
        parcel_locker(), multicast=MulticastSettings(port=scan_port, interface=HOST)
    )
    with _stand_in([moved], loopback_multicast):
        async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=61))
        await wait_for(lambda: discovery.scans == 2, what="the periodic scan")
    await wait_for(lambda: entry.data["port"] == moved.port, what="the entry moving")
    await hass.async_block_till_done()
    await wait_for(lambda: moved.observers() == 7, what="observed at the new address")
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_no_multicast_is_said_once_quietly(
    hass: HomeAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    """Where multicast does not work, one INFO line, not an error every scan."""
    caplog.set_level(logging.DEBUG)
    discovery = await _setup(hass, ipv6_interface="lo", port=free_udp_port())
    await wait_for(lambda: discovery.scans == 1)
    for _ in range(2):
        await discovery.async_scan()
    about = [r for r in caplog.records if "cannot send multicast" in r.getMessage()]
    assert len(about) == 1
    assert about[0].levelno == logging.INFO
    assert not [
        r for r in caplog.records if r.levelno >= logging.WARNING and "iot_bridge" in r.name
    ]


async def test_no_interface_named_no_scan(hass: HomeAssistant) -> None:
    """Without the network integration or a configured interface, nothing is sent."""
    discovery = await _setup(hass)
    await wait_for(lambda: discovery.scans == 1)
    assert await discovery._async_targets() == []


async def test_network_integration_adapters(hass: HomeAssistant) -> None:
    """With Home Assistant's network integration, its enabled adapters are scanned."""
    adapters = [
        {
            "name": "eth0",
            "index": 2,
            "enabled": True,
            "auto": True,
            "default": True,
            "ipv4": [{"address": "192.0.2.10", "network_prefix": 24}],
            "ipv6": [{"address": "fe80::1", "flowinfo": 0, "scope_id": 2, "network_prefix": 64}],
        },
        {
            "name": "wlan0",
            "index": 3,
            "enabled": False,
            "auto": False,
            "default": False,
            "ipv4": [{"address": "198.51.100.2", "network_prefix": 24}],
            "ipv6": [],
        },
    ]
    discovery = CoapDiscovery(hass, DiscoverySettings())
    hass.config.components.add("network")
    with patch(
        "custom_components.iot_bridge.discovery.network.async_get_adapters",
        return_value=adapters,
    ):
        targets = await discovery._async_targets()
    assert targets == [
        ScanTarget(ALL_COAP_NODES_IPV4, "192.0.2.10", 5683),
        ScanTarget(ALL_COAP_NODES_IPV6, 2, 5683),
    ]


async def test_disabled_discovery_never_scans(hass: HomeAssistant) -> None:
    """`enabled: false` turns the scanner off."""
    discovery = await _setup(hass, enabled=False, interface=HOST)
    await hass.async_block_till_done()
    assert discovery.scans == 0
