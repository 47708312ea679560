"""The config flow's CoAP steps against real CoAP servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Generator
from unittest.mock import patch

import pytest
from homeassistant import config_entries
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.iot_bridge.const import (
    CONF_DEADLINE,
    CONF_DEVICE_ID,
    CONF_POLL_INTERVAL,
    CONF_PROTOCOL,
    CONF_RETRIES,
    DOMAIN,
)
from iot_bridge_sim.devices import DeviceModel, parcel_locker

from .coap_peers import HOST, LibcoapServer, StartSim, coap_entry, free_udp_port, start_coap_sim
from .common import setup_entry, wait_for

pytestmark = pytest.mark.usefixtures("socket_enabled")

__all__ = ["start_coap_sim"]


@pytest.fixture
def libcoap() -> Generator[LibcoapServer]:
    """Debian's libcoap example server: states no id, so its address identifies it."""
    server = LibcoapServer()
    server.start()
    yield server
    server.close()


async def _open_coap_form(hass: HomeAssistant) -> str:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "coap"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "coap"
    defaults = {str(key): key.default() for key in result["data_schema"].schema}
    assert defaults[CONF_PORT] == 5683
    return str(result["flow_id"])


async def test_add_by_host(hass: HomeAssistant, start_coap_sim: StartSim) -> None:
    """The device is read first; the entry is named after it and identified by its id."""
    sim = await start_coap_sim(parcel_locker())
    flow_id = await _open_coap_form(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_HOST: f" {HOST} ", CONF_PORT: sim.port}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Parcel locker"
    assert result["data"] == {
        CONF_PROTOCOL: "coap",
        CONF_HOST: HOST,
        CONF_PORT: sim.port,
        CONF_DEVICE_ID: "locker1",
    }
    entry = result["result"]
    assert entry.unique_id == "coap:locker1"
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    await wait_for(lambda: hass.states.get("lock.parcel_locker_door_2") is not None)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_unreachable_keeps_the_form(hass: HomeAssistant, start_coap_sim: StartSim) -> None:
    """Nothing answers: cannot_connect, the entered values stay, a correction works."""
    flow_id = await _open_coap_form(hass)
    wrong = {CONF_HOST: HOST, CONF_PORT: free_udp_port()}
    result = await hass.config_entries.flow.async_configure(flow_id, wrong)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}
    defaults = {str(key): key.default() for key in result["data_schema"].schema}
    assert defaults == wrong
    sim = await start_coap_sim(parcel_locker())
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_HOST: f"[::ffff:{HOST}]", CONF_PORT: sim.port}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_HOST] == f"::ffff:{HOST}"
    await hass.async_block_till_done()
    assert await hass.config_entries.async_unload(result["result"].entry_id)


async def test_nothing_usable_aborts(hass: HomeAssistant, start_coap_sim: StartSim) -> None:
    """A device that describes no resource IoT Bridge can show: a clear abort."""
    sim = await start_coap_sim(DeviceModel(device_id="empty1", name="Empty"))
    flow_id = await _open_coap_form(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_HOST: HOST, CONF_PORT: sim.port}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "no_usable_resources"
    assert "lists no resource" in result["description_placeholders"]["detail"]
    assert not hass.config_entries.async_entries(DOMAIN)


async def test_duplicate_aborts(hass: HomeAssistant, start_coap_sim: StartSim) -> None:
    """The same device (by its id, at any address) cannot be added twice."""
    sim = await start_coap_sim(parcel_locker())
    coap_entry(free_udp_port(), "locker1").add_to_hass(hass)
    flow_id = await _open_coap_form(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_HOST: HOST, CONF_PORT: sim.port}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_unexpected_error(hass: HomeAssistant) -> None:
    """A bug while reading the device shows 'unknown' instead of crashing the flow."""
    flow_id = await _open_coap_form(hass)
    with patch("custom_components.iot_bridge.config_flow.probe", side_effect=RuntimeError("boom")):
        result = await hass.config_entries.flow.async_configure(
            flow_id, {CONF_HOST: HOST, CONF_PORT: 5683}
        )
    assert result["errors"] == {"base": "unknown"}


async def test_server_nobody_here_wrote(hass: HomeAssistant, libcoap: LibcoapServer) -> None:
    """libcoap's server states no id: its address is its identity."""
    flow_id = await _open_coap_form(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_HOST: HOST, CONF_PORT: libcoap.port}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == f"CoAP device {HOST}"
    assert result["result"].unique_id == f"coap:{HOST}:{libcoap.port}"
    await hass.async_block_till_done()
    assert await hass.config_entries.async_unload(result["result"].entry_id)


# Discovery ------------------------------------------------------------------------------


async def _discover(hass: HomeAssistant, port: int) -> dict[str, object]:
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": config_entries.SOURCE_INTEGRATION_DISCOVERY},
        data={CONF_HOST: HOST, CONF_PORT: port},
    )
    return dict(result)


async def test_discovered_device_is_confirmed(
    hass: HomeAssistant, start_coap_sim: StartSim
) -> None:
    """A discovered device waits for the user's confirmation, named in the flow title."""
    sim = await start_coap_sim(parcel_locker())
    result = await _discover(hass, sim.port)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "discovery_confirm"
    assert result["description_placeholders"] == {
        "name": "Parcel locker",
        "host": HOST,
        "port": str(sim.port),
        "resources": "7",
    }
    progress = hass.config_entries.flow.async_progress()
    assert progress[0]["context"]["title_placeholders"] == {"name": "Parcel locker", "host": HOST}
    result = await hass.config_entries.flow.async_configure(str(result["flow_id"]), {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_DEVICE_ID] == "locker1"
    await hass.async_block_till_done()
    assert await hass.config_entries.async_unload(result["result"].entry_id)


async def test_discovered_device_that_does_not_answer(hass: HomeAssistant) -> None:
    """An answer to the scan from a device that then stays silent offers nothing."""
    result = await _discover(hass, free_udp_port())
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "cannot_connect"


async def test_known_device_at_new_address_moves_its_entry(
    hass: HomeAssistant, start_coap_sim: StartSim
) -> None:
    """Found at another address: the entry follows (updated and reloaded), no new flow."""
    old = await start_coap_sim(parcel_locker())
    entry = coap_entry(old.port, "locker1")
    await setup_entry(hass, entry)
    await hass.async_add_executor_job(old.stop)
    new = await start_coap_sim(parcel_locker())
    assert new.port != old.port
    result = await _discover(hass, new.port)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert entry.data[CONF_PORT] == new.port
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    await wait_for(lambda: new.observers() == 7, what="observed at the new address")
    await hass.services.async_call(
        "lock", "open", {"entity_id": "lock.parcel_locker_door_1"}, blocking=True
    )
    assert len(new.executed) == 1
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_ignored_device_stays_ignored(hass: HomeAssistant, start_coap_sim: StartSim) -> None:
    """Once the user ignores a device, discovering it again offers nothing."""
    sim = await start_coap_sim(parcel_locker())
    result = await _discover(hass, sim.port)
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": config_entries.SOURCE_IGNORE},
        data={"unique_id": "coap:locker1", "title": "Parcel locker"},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    result = await _discover(hass, sim.port)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert not hass.config_entries.flow.async_progress()


# Reconfigure and options ------------------------------------------------------------------


async def _reconfigure(hass: HomeAssistant, entry: MockConfigEntry, port: int) -> dict[str, object]:
    result = await entry.start_reconfigure_flow(hass)
    assert result["step_id"] == "reconfigure_coap"
    return dict(
        await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_HOST: HOST, CONF_PORT: port}
        )
    )


async def test_reconfigure_to_new_address(hass: HomeAssistant, start_coap_sim: StartSim) -> None:
    """The same device at a new port: the entry moves and reloads."""
    sim = await start_coap_sim(parcel_locker())
    entry = coap_entry(free_udp_port(), "locker1")
    entry.add_to_hass(hass)
    result = await _reconfigure(hass, entry, sim.port)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert entry.data[CONF_PORT] == sim.port
    assert entry.state is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_reconfigure_refuses_another_device(
    hass: HomeAssistant, start_coap_sim: StartSim
) -> None:
    """Another device at the new address is not taken for this one."""
    sim = await start_coap_sim(parcel_locker("locker2"))
    entry = coap_entry(free_udp_port(), "locker1")
    entry.add_to_hass(hass)
    result = await _reconfigure(hass, entry, sim.port)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_device"
    assert entry.data[CONF_PORT] != sim.port


async def test_reconfigure_errors(hass: HomeAssistant, start_coap_sim: StartSim) -> None:
    """Unreachable keeps the form; a device with nothing usable aborts."""
    entry = coap_entry(free_udp_port(), "locker1")
    entry.add_to_hass(hass)
    result = await _reconfigure(hass, entry, free_udp_port())
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}
    empty = await start_coap_sim(DeviceModel(device_id="empty1", name="Empty"))
    result = await _reconfigure(hass, entry, empty.port)
    assert result["reason"] == "no_usable_resources"


async def test_reconfigure_device_without_id(hass: HomeAssistant, libcoap: LibcoapServer) -> None:
    """A device that states no id cannot be checked: the user's new address is taken."""
    entry = coap_entry(free_udp_port(), f"{HOST}:1", title="libcoap")
    entry.add_to_hass(hass)
    result = await _reconfigure(hass, entry, libcoap.port)
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert entry.data[CONF_PORT] == libcoap.port
    assert entry.state is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_coap_options(hass: HomeAssistant, start_coap_sim: StartSim) -> None:
    """CoAP options: deadline, retries and the poll interval (no MQTT discovery switch)."""
    sim = await start_coap_sim(parcel_locker())
    entry = coap_entry(sim.port, "locker1")
    await setup_entry(hass, entry)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    fields = {str(key) for key in result["data_schema"].schema}
    assert fields == {CONF_DEADLINE, CONF_RETRIES, CONF_POLL_INTERVAL}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_DEADLINE: 3, CONF_RETRIES: 0, CONF_POLL_INTERVAL: 12}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options == {CONF_DEADLINE: 3.0, CONF_RETRIES: 0, CONF_POLL_INTERVAL: 12.0}
    bridge = entry.runtime_data.bridge
    assert bridge._poll_interval() == 12.0  # read live: no reload needed
    assert await hass.config_entries.async_unload(entry.entry_id)
