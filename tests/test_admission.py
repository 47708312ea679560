"""Admission: devices a hub meets wait for the user when it does not add them by itself.

One mechanism for every protocol: a discovery flow per waiting device (accept or ignore),
accepted ids remembered in the hub's options, ignored ones kept out by Home Assistant's
ignore entry. LwM2M's side is in test_lwm2m_hub.py; here MQTT with automatic discovery off,
and the flow's edge cases.
"""

from __future__ import annotations

import logging
import uuid

import pytest
from homeassistant import config_entries
from homeassistant.components.lock.const import LockState
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType

from custom_components.iot_bridge.const import (
    CONF_ACCEPTED,
    CONF_ADMISSION,
    CONF_AUTO_DISCOVERY,
    CONF_ENTRY_ID,
    CONF_NAME,
    CONF_PENDING_DEVICE,
    DOMAIN,
)
from custom_components.iot_bridge.hub import pending_device_unique_id
from iot_bridge_sim.devices import climate_node, parcel_locker
from iot_bridge_sim.mqtt import MqttDeviceSimulator

from .common import mqtt_entry, setup_entry, wait_for
from .mosquitto import Broker

pytestmark = pytest.mark.usefixtures("socket_enabled")

LOCK_2 = "lock.parcel_locker_door_2"


def _pending(hass: HomeAssistant) -> list[dict]:  # type: ignore[type-arg]
    return [
        flow
        for flow in hass.config_entries.flow.async_progress_by_handler(DOMAIN)
        if flow["context"].get("source") == config_entries.SOURCE_INTEGRATION_DISCOVERY
    ]


async def test_mqtt_device_waits_for_acceptance_when_discovery_is_off(
    hass: HomeAssistant, mqtt_broker: Broker
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    entry = mqtt_entry(mqtt_broker, options={CONF_AUTO_DISCOVERY: False}, prefix=prefix)
    await setup_entry(hass, entry)
    sims = [
        MqttDeviceSimulator(model, port=mqtt_broker.port, prefix=prefix, printer=logging.info)
        for model in (parcel_locker(), climate_node())
    ]
    for sim in sims:
        await hass.async_add_executor_job(sim.start)
    try:
        await wait_for(lambda: len(_pending(hass)) == 2, what="two waiting devices")
        assert hass.states.get(LOCK_2) is None
        flows = {flow["context"]["title_placeholders"]["name"]: flow for flow in _pending(hass)}
        assert set(flows) == {"locker1", "climate1"}
        result = await hass.config_entries.flow.async_configure(flows["locker1"]["flow_id"], {})
        assert result["reason"] == "device_accepted"
        await wait_for(lambda: hass.states.get(LOCK_2) is not None, what="accepted locker")
        assert hass.states.get(LOCK_2).state == LockState.LOCKED
        assert entry.options[CONF_ACCEPTED] == ["locker1"]
        # Ignoring the other keeps it out, also after a restart of the hub.
        ignored = await hass.config_entries.flow.async_init(
            DOMAIN,
            context={"source": config_entries.SOURCE_IGNORE},
            data={"unique_id": flows["climate1"]["context"]["unique_id"], "title": "climate1"},
        )
        assert ignored["type"] is FlowResultType.CREATE_ENTRY
        await hass.config_entries.async_reload(entry.entry_id)
        await hass.async_block_till_done()
        await wait_for(lambda: hass.states.get(LOCK_2) is not None, what="locker after reload")
        assert _pending(hass) == []
        assert "climate1" not in entry.runtime_data.bridge.devices
    finally:
        for sim in sims:
            await hass.async_add_executor_job(sim.stop)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_flow_for_a_hub_that_is_gone(hass: HomeAssistant, mqtt_broker: Broker) -> None:
    """A waiting device whose hub no longer exists (or is unloaded) cannot be accepted."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": config_entries.SOURCE_INTEGRATION_DISCOVERY},
        data={CONF_PENDING_DEVICE: "dev1", CONF_ENTRY_ID: "nope", CONF_NAME: "dev1"},
    )
    assert result["reason"] == "hub_not_loaded"

    entry = mqtt_entry(mqtt_broker, options={CONF_AUTO_DISCOVERY: False})
    await setup_entry(hass, entry)
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": config_entries.SOURCE_INTEGRATION_DISCOVERY},
        data={CONF_PENDING_DEVICE: "dev1", CONF_ENTRY_ID: entry.entry_id, CONF_NAME: "dev1"},
    )
    assert result["step_id"] == "accept_device"
    assert result["description_placeholders"] == {"name": "dev1", "hub": entry.title}
    assert await hass.config_entries.async_unload(entry.entry_id)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["reason"] == "hub_not_loaded"
    assert pending_device_unique_id(entry.entry_id, "dev1") == f"device:{entry.entry_id}:dev1"


async def test_lwm2m_flow_cannot_listen_on_a_foreign_address(hass: HomeAssistant) -> None:
    """An address this host does not have is a form error naming the reason."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "lwm2m"}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_HOST: "192.0.2.1", CONF_PORT: 5690, CONF_ADMISSION: "ask"},
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_listen"}
    assert "192.0.2.1" in result["description_placeholders"]["error"]
