"""Setting up, reconnecting and unloading a hub against a real broker."""

from __future__ import annotations

import asyncio
import logging

import paho.mqtt.client as mqtt
import pytest
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from .common import mqtt_entry, setup_entry
from .conftest import BROKER_PASSWORD, BROKER_USER
from .mosquitto import Broker

pytestmark = pytest.mark.usefixtures("socket_enabled")


async def _wait_for(condition: object, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.05)


async def test_not_ready_while_broker_down_then_setup(
    hass: HomeAssistant, own_broker: Broker
) -> None:
    """An unreachable broker means retry later; once it is up the entry loads."""
    own_broker.stop()
    entry = mqtt_entry(own_broker)
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_RETRY
    assert "Cannot connect to the MQTT broker" in (entry.reason or "")

    own_broker.start()
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert entry.runtime_data.connected
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_reconnect_after_broker_restart(
    hass: HomeAssistant, own_broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """The entry stays loaded through a broker restart; one line down, one line back."""
    entry = mqtt_entry(own_broker)
    await setup_entry(hass, entry)
    hub = entry.runtime_data
    hub.bridge.connection._reconnect_min = (
        0.1  # Keep the test quick; the backoff logic is the same.
    )
    caplog.set_level(logging.INFO)

    own_broker.stop()
    await _wait_for(lambda: not hub.connected)
    assert entry.state is ConfigEntryState.LOADED
    await asyncio.sleep(0.5)  # Several failed reconnect attempts happen here.
    own_broker.start()
    await _wait_for(lambda: hub.connected)

    assert hub.bridge.connection.reconnects == 1
    lost = [r for r in caplog.records if "Lost connection to MQTT broker" in r.getMessage()]
    restored = [r for r in caplog.records if "restored" in r.getMessage()]
    assert len(lost) == 1
    assert lost[0].levelno == logging.WARNING
    assert len(restored) == 1
    # The restored connection really works: a publish is acknowledged by the broker.
    await hub.bridge.connection.publish("iot_bridge/test/ping", b"1", qos=1)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_unload_leaves_nothing_running(hass: HomeAssistant, mqtt_broker: Broker) -> None:
    """Unload closes the connection and ends the background task."""
    entry = mqtt_entry(mqtt_broker)
    await setup_entry(hass, entry)
    hub = entry.runtime_data
    task = hub.bridge.connection._task
    assert task is not None
    assert not task.done()

    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.NOT_LOADED
    assert task.done()
    assert not hub.connected
    assert hub.bridge.connection._client is None
    # pytest-homeassistant-custom-component also fails the test on any lingering
    # task, timer or thread after it returns.


async def test_wrong_credentials_start_reauth(hass: HomeAssistant, auth_broker: Broker) -> None:
    """A broker that rejects the stored password asks the user, it does not retry forever."""
    entry = mqtt_entry(auth_broker, username=BROKER_USER, password="old")
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_ERROR
    assert any(
        flow["context"]["source"] == "reauth" for flow in hass.config_entries.flow.async_progress()
    )


async def test_password_changed_while_running_starts_reauth(
    hass: HomeAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker restarts with a new password: the hub asks for credentials, once."""
    broker = Broker(users={BROKER_USER: BROKER_PASSWORD})
    broker.start()
    try:
        entry = mqtt_entry(broker, username=BROKER_USER, password=BROKER_PASSWORD)
        await setup_entry(hass, entry)
        hub = entry.runtime_data
        hub.bridge.connection._reconnect_min = 0.05
        hub.bridge.connection._reconnect_max = 0.2
        await hass.async_add_executor_job(broker.stop)
        await hass.async_add_executor_job(broker.set_password, BROKER_USER, "rotated")
        await hass.async_add_executor_job(broker.start)

        def reauth_flows() -> list[object]:
            return [
                flow
                for flow in hass.config_entries.flow.async_progress()
                if flow["context"]["source"] == "reauth"
            ]

        await _wait_for(lambda: len(reauth_flows()) == 1)
        await asyncio.sleep(0.5)  # several more refused attempts
        assert len(reauth_flows()) == 1
        assert caplog.text.count("rejected the credentials") == 1
        assert not hub.connected
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await hass.async_add_executor_job(broker.close)


async def test_diagnostics_redact_secrets(
    hass: HomeAssistant, auth_broker: Broker, hass_client: ClientSessionGenerator
) -> None:
    """Diagnostics show the connection but never the credentials."""
    entry = mqtt_entry(auth_broker, username=BROKER_USER, password=BROKER_PASSWORD)
    await setup_entry(hass, entry)
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    assert diagnostics["entry"]["data"]["password"] == "**REDACTED**"
    assert diagnostics["entry"]["data"]["username"] == "**REDACTED**"
    assert diagnostics["entry"]["data"]["port"] == auth_broker.port
    assert diagnostics["bridge"]["connection"]["connected"] is True
    assert diagnostics["bridge"]["command_connection"]["connected"] is True
    assert BROKER_PASSWORD not in str(diagnostics)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_command_connection_lost_and_back(hass: HomeAssistant, mqtt_broker: Broker) -> None:
    """The command connection alone drops: the hub is disconnected until it is back."""
    entry = mqtt_entry(mqtt_broker, client_id="iot-bridge-cmd-loss")
    await setup_entry(hass, entry)
    hub = entry.runtime_data
    commands = hub.bridge.commands
    commands._reconnect_min = 0.1
    assert commands.settings.client_id == "iot-bridge-cmd-loss-cmd"

    def take_over_client_id() -> None:
        # Same client id: the broker closes our command connection (session takeover).
        intruder = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=commands.settings.client_id
        )
        intruder.connect(mqtt_broker.host, mqtt_broker.port)
        intruder.loop(1.0)
        intruder.disconnect()

    await hass.async_add_executor_job(take_over_client_id)
    await _wait_for(lambda: not hub.connected)
    assert hub.bridge.connection.connected  # the state connection is untouched
    await _wait_for(lambda: hub.connected)
    assert commands.reconnects == 1
    await commands.publish("iot_bridge/test/ping", b"1", qos=1)
    assert await hass.config_entries.async_unload(entry.entry_id)
