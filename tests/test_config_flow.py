"""The config flow, against real brokers."""

from __future__ import annotations

import json
import time
from typing import Any
from unittest.mock import patch

import pytest
from homeassistant import config_entries
from homeassistant.const import CONF_HOST, CONF_PASSWORD, CONF_PORT, CONF_USERNAME
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.iot_bridge.compat import MqttServiceInfo
from custom_components.iot_bridge.const import (
    CONF_AUTO_DISCOVERY,
    CONF_CA_FILE,
    CONF_CLIENT_ID,
    CONF_DEADLINE,
    CONF_DISCOVERY_PREFIX,
    CONF_PROTOCOL,
    CONF_RETRIES,
    CONF_TLS,
    DOMAIN,
)
from iot_bridge_sim.devices import parcel_locker
from iot_bridge_sim.mqtt import MqttDeviceSimulator

from .common import mqtt_entry, setup_entry, setup_ha_mqtt, wait_for
from .conftest import BROKER_PASSWORD, BROKER_USER
from .mosquitto import Broker, free_port

pytestmark = pytest.mark.usefixtures("socket_enabled")


def _form_input(broker: Broker, **overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        CONF_HOST: broker.host,
        CONF_PORT: broker.port,
        CONF_USERNAME: "",
        CONF_PASSWORD: "",
        CONF_TLS: False,
        CONF_CA_FILE: "",
        CONF_CLIENT_ID: "iot-bridge-flow",
        CONF_DISCOVERY_PREFIX: "iot_bridge",
    }
    values.update(overrides)
    return values


async def _open_mqtt_form(hass: HomeAssistant) -> str:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    assert result["type"] is FlowResultType.MENU
    assert result["menu_options"] == ["mqtt_broker", "coap", "lwm2m"]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "mqtt_broker"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "mqtt_broker"
    return str(result["flow_id"])


async def test_user_flow_creates_entry(hass: HomeAssistant, mqtt_broker: Broker) -> None:
    """A reachable broker gives an entry with the tested settings."""
    flow_id = await _open_mqtt_form(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, _form_input(mqtt_broker))
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == f"MQTT 127.0.0.1:{mqtt_broker.port}"
    assert result["data"][CONF_PROTOCOL] == "mqtt"
    assert result["data"][CONF_PORT] == mqtt_broker.port
    assert result["data"][CONF_CLIENT_ID] == "iot-bridge-flow"
    entry = result["result"]
    assert entry.unique_id == f"127.0.0.1:{mqtt_broker.port}:iot-bridge-flow"
    await hass.async_block_till_done()
    assert entry.state is config_entries.ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_wrong_port_then_recovery(hass: HomeAssistant, mqtt_broker: Broker) -> None:
    """Nothing listening: cannot_connect, and the user can correct the port."""
    flow_id = await _open_mqtt_form(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, _form_input(mqtt_broker, port=free_port())
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}
    result = await hass.config_entries.flow.async_configure(flow_id, _form_input(mqtt_broker))
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert await hass.config_entries.async_unload(result["result"].entry_id)


async def test_wrong_password(hass: HomeAssistant, auth_broker: Broker) -> None:
    """Rejected credentials: invalid_auth; the right ones then work."""
    flow_id = await _open_mqtt_form(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, _form_input(auth_broker, username=BROKER_USER, password="wrong")
    )
    assert result["errors"] == {"base": "invalid_auth"}
    result = await hass.config_entries.flow.async_configure(
        flow_id, _form_input(auth_broker, username=BROKER_USER, password=BROKER_PASSWORD)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert await hass.config_entries.async_unload(result["result"].entry_id)


async def test_unexpected_error(hass: HomeAssistant, mqtt_broker: Broker) -> None:
    """A bug in the connection test shows 'unknown' instead of crashing the flow."""
    flow_id = await _open_mqtt_form(hass)
    with patch(
        "custom_components.iot_bridge.config_flow.MqttConnection.probe",
        side_effect=RuntimeError("boom"),
    ):
        result = await hass.config_entries.flow.async_configure(flow_id, _form_input(mqtt_broker))
    assert result["errors"] == {"base": "unknown"}


async def test_duplicate_aborts(hass: HomeAssistant, mqtt_broker: Broker) -> None:
    """The same broker and client id cannot be added twice."""
    mqtt_entry(mqtt_broker, client_id="iot-bridge-flow").add_to_hass(hass)
    flow_id = await _open_mqtt_form(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, _form_input(mqtt_broker))
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_prefill_from_home_assistant_mqtt(hass: HomeAssistant) -> None:
    """Host, port and credentials come from Home Assistant's own MQTT entry."""
    MockConfigEntry(
        domain="mqtt",
        data={"broker": "10.1.2.3", CONF_PORT: 1884, CONF_USERNAME: "ha", CONF_PASSWORD: "pw"},
    ).add_to_hass(hass)
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "mqtt_broker"}
    )
    defaults = {
        str(key): key.default() for key in result["data_schema"].schema if callable(key.default)
    }
    assert defaults[CONF_HOST] == "10.1.2.3"
    assert defaults[CONF_PORT] == 1884
    assert defaults[CONF_USERNAME] == "ha"
    assert defaults[CONF_PASSWORD] == "pw"
    assert defaults[CONF_CLIENT_ID].startswith("iot-bridge-")
    assert defaults[CONF_DISCOVERY_PREFIX] == "iot_bridge"


async def test_reconfigure(hass: HomeAssistant, mqtt_broker: Broker, auth_broker: Broker) -> None:
    """Moving the hub to another broker tests it first and keeps the entry."""
    entry = mqtt_entry(mqtt_broker)
    await setup_entry(hass, entry)
    result = await entry.start_reconfigure_flow(hass)
    assert result["step_id"] == "reconfigure"
    new = {
        CONF_HOST: auth_broker.host,
        CONF_PORT: auth_broker.port,
        CONF_USERNAME: BROKER_USER,
        CONF_PASSWORD: "wrong",
        CONF_TLS: False,
        CONF_CA_FILE: "",
    }
    result = await hass.config_entries.flow.async_configure(result["flow_id"], new)
    assert result["errors"] == {"base": "invalid_auth"}
    new[CONF_PASSWORD] = BROKER_PASSWORD
    result = await hass.config_entries.flow.async_configure(result["flow_id"], new)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert entry.data[CONF_PORT] == auth_broker.port
    assert entry.data[CONF_PASSWORD] == BROKER_PASSWORD
    assert entry.unique_id == f"127.0.0.1:{auth_broker.port}:iot-bridge-test"
    assert entry.state is config_entries.ConfigEntryState.LOADED
    assert entry.runtime_data.connected
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_reconfigure_same_broker(hass: HomeAssistant, mqtt_broker: Broker) -> None:
    """Re-entering the same broker keeps the unique id and reloads."""
    entry = mqtt_entry(mqtt_broker)
    await setup_entry(hass, entry)
    unique_id = entry.unique_id
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_HOST: mqtt_broker.host, CONF_PORT: mqtt_broker.port, CONF_TLS: False},
    )
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert entry.unique_id == unique_id
    assert entry.state is config_entries.ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_reconfigure_onto_existing_hub_aborts(
    hass: HomeAssistant, mqtt_broker: Broker
) -> None:
    """Reconfiguring into another entry's broker and client id is refused."""
    other = mqtt_entry(mqtt_broker, client_id="other")
    other.add_to_hass(hass)
    entry = mqtt_entry(mqtt_broker, client_id="other", port=free_port())
    entry.add_to_hass(hass)
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_HOST: mqtt_broker.host, CONF_PORT: mqtt_broker.port, CONF_TLS: False},
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_reauth(hass: HomeAssistant, auth_broker: Broker) -> None:
    """Rejected credentials at start-up start reauth; new ones reload the hub."""
    entry = mqtt_entry(auth_broker, username=BROKER_USER, password="outdated")
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is config_entries.ConfigEntryState.SETUP_ERROR
    flows = hass.config_entries.flow.async_progress()
    assert [flow["context"]["source"] for flow in flows] == ["reauth"]
    flow_id = flows[0]["flow_id"]
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_USERNAME: BROKER_USER, CONF_PASSWORD: "still-wrong"}
    )
    assert result["errors"] == {"base": "invalid_auth"}
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_USERNAME: BROKER_USER, CONF_PASSWORD: BROKER_PASSWORD}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    assert entry.data[CONF_PASSWORD] == BROKER_PASSWORD
    assert entry.state is config_entries.ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_options(hass: HomeAssistant, mqtt_broker: Broker) -> None:
    """Deadline and retries are stored and apply to the next command, without a reload."""
    entry = mqtt_entry(mqtt_broker)
    await setup_entry(hass, entry)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["step_id"] == "init"
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_DEADLINE: 4.5, CONF_RETRIES: 1, CONF_AUTO_DISCOVERY: False}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert entry.options == {CONF_DEADLINE: 4.5, CONF_RETRIES: 1, CONF_AUTO_DISCOVERY: False}
    command = entry.runtime_data.new_command("locker1", "door2_lock", "open")
    assert command.deadline_unix - time.time() == pytest.approx(4.5, abs=0.5)
    assert command.retries == 1
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_tls_with_ca_file(hass: HomeAssistant, tls_broker: Broker) -> None:
    """TLS needs the broker's CA: without it the connection fails, with it the hub works."""
    assert tls_broker.ca_file is not None
    flow_id = await _open_mqtt_form(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, _form_input(tls_broker, tls=True, ca_file="")
    )
    assert result["errors"] == {"base": "cannot_connect"}  # system CAs do not trust it
    result = await hass.config_entries.flow.async_configure(
        flow_id, _form_input(tls_broker, tls=True, ca_file=str(tls_broker.ca_file))
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    entry = result["result"]
    assert entry.state is config_entries.ConfigEntryState.LOADED
    assert entry.runtime_data.connected
    assert await hass.config_entries.async_unload(entry.entry_id)


# -- zero-configuration: an IoT Bridge device on Home Assistant's own MQTT broker ------------

ANNOUNCEMENT = json.dumps(
    {"id": "locker7", "name": "Parcel locker 7", "capabilities": [{"kind": "lock", "key": "d1"}]}
)


def _ha_mqtt_entry(hass: HomeAssistant, port: int) -> None:
    MockConfigEntry(
        domain="mqtt", data={"broker": "127.0.0.1", CONF_PORT: port, CONF_USERNAME: ""}
    ).add_to_hass(hass)


def _announcement(
    payload: str = ANNOUNCEMENT, topic: str = "iot_bridge/locker7/config"
) -> MqttServiceInfo:
    return MqttServiceInfo(
        topic=topic,
        payload=payload,
        qos=1,
        retain=True,
        subscribed_topic="iot_bridge/+/config",
        timestamp=time.time(),
    )


async def _discover(hass: HomeAssistant, info: MqttServiceInfo) -> dict[str, Any]:
    return dict(
        await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": config_entries.SOURCE_MQTT}, data=info
        )
    )


async def test_mqtt_discovery_offers_hub_for_home_assistants_broker(
    hass: HomeAssistant, mqtt_broker: Broker
) -> None:
    """An announcement offers one hub, pre-filled from HA's MQTT entry; confirming tests it."""
    _ha_mqtt_entry(hass, mqtt_broker.port)
    # A hub on another broker does not count.
    mqtt_entry(mqtt_broker, client_id="elsewhere", port=free_port()).add_to_hass(hass)
    result = await _discover(hass, _announcement())
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "mqtt_confirm"
    assert result["description_placeholders"] == {
        "name": "Parcel locker 7",
        "broker": f"127.0.0.1:{mqtt_broker.port}",
    }
    # A second device on the same broker joins the offer instead of making another.
    second = await _discover(
        hass, _announcement(ANNOUNCEMENT.replace("locker7", "locker8"), "iot_bridge/locker8/config")
    )
    assert second["type"] is FlowResultType.ABORT
    assert second["reason"] == "already_in_progress"

    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == f"MQTT 127.0.0.1:{mqtt_broker.port}"
    data = result["data"]
    assert data[CONF_PROTOCOL] == "mqtt"
    assert (data[CONF_HOST], data[CONF_PORT]) == ("127.0.0.1", mqtt_broker.port)
    assert data[CONF_CLIENT_ID].startswith("iot-bridge-")
    assert data[CONF_DISCOVERY_PREFIX] == "iot_bridge"
    assert data[CONF_TLS] is False
    entry = result["result"]
    await hass.async_block_till_done()
    assert entry.state is config_entries.ConfigEntryState.LOADED

    # Once the broker has a hub, further announcements offer nothing.
    again = await _discover(hass, _announcement())
    assert again["type"] is FlowResultType.ABORT
    assert again["reason"] == "already_configured"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_mqtt_discovery_aborts_when_broker_has_a_hub(
    hass: HomeAssistant, mqtt_broker: Broker
) -> None:
    """A hub on that broker under another client id stops the offer."""
    _ha_mqtt_entry(hass, mqtt_broker.port)
    mqtt_entry(mqtt_broker, client_id="somebody-else").add_to_hass(hass)
    result = await _discover(hass, _announcement())
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_mqtt_discovery_without_home_assistant_mqtt(hass: HomeAssistant) -> None:
    """No MQTT entry of Home Assistant's own: nothing to pre-fill, no offer."""
    result = await _discover(hass, _announcement())
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "mqtt_not_configured"


@pytest.mark.parametrize(
    ("topic", "payload", "logged"),
    [
        ("iot_bridge/locker7/config", "{not json", "locker7/config"),
        ("iot_bridge/other/config", ANNOUNCEMENT, "does not match"),
        ("iot_bridge/bad id!/config", ANNOUNCEMENT, "does not name a device"),
        ("iot_bridge/locker7/config", "", None),  # a device cleared its announcement
    ],
)
async def test_mqtt_discovery_rejects_bad_announcements(
    hass: HomeAssistant,
    mqtt_broker: Broker,
    caplog: pytest.LogCaptureFixture,
    topic: str,
    payload: str,
    logged: str | None,
) -> None:
    """Bad announcements get one log line and no offer; an empty one is silently no offer."""
    _ha_mqtt_entry(hass, mqtt_broker.port)
    result = await _discover(hass, _announcement(payload, topic))
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "invalid_discovery_info"
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("custom_components")]
    if logged is None:
        assert not lines
    else:
        assert len(lines) == 1, lines
        assert logged in lines[0]
    assert not hass.config_entries.async_entries(DOMAIN)


async def test_mqtt_discovery_unreachable_broker_opens_the_form(
    hass: HomeAssistant, mqtt_broker: Broker
) -> None:
    """HA's broker settings fail the test: the full form, pre-filled, lets the user fix them."""
    _ha_mqtt_entry(hass, free_port())
    result = await _discover(hass, _announcement())
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "mqtt_broker"
    assert result["errors"] == {"base": "cannot_connect"}
    form = {str(key): key.default() for key in result["data_schema"].schema}
    assert form[CONF_HOST] == "127.0.0.1"
    form[CONF_PORT] = mqtt_broker.port
    result = await hass.config_entries.flow.async_configure(result["flow_id"], form)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_PORT] == mqtt_broker.port
    await hass.async_block_till_done()
    assert await hass.config_entries.async_unload(result["result"].entry_id)


async def test_mqtt_discovery_through_home_assistants_mqtt(
    hass: HomeAssistant, own_broker: Broker
) -> None:
    """End to end: a simulated locker's retained announcement on a real broker reaches
    Home Assistant's MQTT integration, which offers IoT Bridge (the manifest's mqtt topic)."""
    locker = MqttDeviceSimulator(parcel_locker(), port=own_broker.port, prefix="iot_bridge")
    await hass.async_add_executor_job(locker.start)
    try:
        await setup_ha_mqtt(hass, own_broker)

        def offers() -> list[Any]:
            return [
                flow
                for flow in hass.config_entries.flow.async_progress_by_handler(DOMAIN)
                if flow["context"]["source"] == config_entries.SOURCE_MQTT
            ]

        await wait_for(lambda: len(offers()) == 1, timeout=15, what="IoT Bridge offered")
        flow = offers()[0]
        assert flow["step_id"] == "mqtt_confirm"
        assert flow["context"]["title_placeholders"]["name"] == "Parcel locker"
    finally:
        await hass.async_add_executor_job(locker.stop)
