"""A CoAP server nobody here wrote: Debian's libcoap example server (coap-server-notls)."""

from __future__ import annotations

import asyncio
from collections.abc import Generator

import pytest
from homeassistant import config_entries
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_HOST, CONF_PORT, EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er

from custom_components.iot_bridge.const import DOMAIN

from .coap_peers import HOST, LibcoapServer
from .common import wait_for

pytestmark = pytest.mark.usefixtures("socket_enabled")


@pytest.fixture
def libcoap() -> Generator[LibcoapServer]:
    """coap-server-notls -A 127.0.0.1 -p PORT, with its debug log."""
    server = LibcoapServer()
    server.start()
    yield server
    server.close()


async def test_added_by_host_and_followed_live(
    hass: HomeAssistant, libcoap: LibcoapServer, entity_registry: er.EntityRegistry
) -> None:
    """Added through the flow, its resources appear; /time is observed and ticks live;
    unload cancels the observations on the wire (GET Observe:1 in the server's log)."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "coap"}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: HOST, CONF_PORT: libcoap.port}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    entry = result["result"]
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED

    by_key = {
        key: entities_entry
        for entities_entry in er.async_entries_for_config_entry(entity_registry, entry.entry_id)
        for key in ("root", "time", "async", "example_data")
        if entities_entry.unique_id.endswith(f"_{key}")
    }
    assert set(by_key) == {"root", "time", "async", "example_data"}
    assert all(e.entity_category is EntityCategory.DIAGNOSTIC for e in by_key.values())
    # Observable ones are on; the others exist but stay off until the user wants them.
    assert by_key["time"].disabled_by is None
    assert by_key["example_data"].disabled_by is None
    assert by_key["root"].disabled_by is er.RegistryEntryDisabler.INTEGRATION
    assert by_key["async"].disabled_by is er.RegistryEntryDisabler.INTEGRATION
    assert by_key["time"].original_name == "Internal Clock"

    clock = by_key["time"].entity_id
    await wait_for(lambda: hass.states.get(clock) is not None)
    seen: set[str] = set()
    async with asyncio.timeout(6):
        while len(seen) < 3:  # it notifies every second
            state = hass.states.get(clock)
            if state is not None and state.state not in ("unknown", "unavailable"):
                seen.add(state.state)
            await asyncio.sleep(0.1)
    example = hass.states.get(by_key["example_data"].entity_id)
    assert example is not None
    assert len(example.state) <= 255  # its long text is cut, not refused

    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    await wait_for(
        lambda: bool(libcoap.requests(r"c:GET .*Observe:1.*Uri-Path:time")),
        what="the deregistration of /time in libcoap's log",
    )
    assert libcoap.requests(r"c:GET .*Observe:1.*Uri-Path:example_data")
