"""Helpers shared by the Home Assistant tests."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Callable
from typing import Any, Protocol
from unittest.mock import patch

import paho.mqtt.client as mqtt
from homeassistant.const import CONF_HOST, CONF_PASSWORD, CONF_PORT, CONF_USERNAME
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from paho.mqtt.enums import CallbackAPIVersion
from pytest_homeassistant_custom_component.common import (  # type: ignore[import-untyped]
    MockConfigEntry,
)

from custom_components.iot_bridge.const import (
    CONF_CA_FILE,
    CONF_CLIENT_ID,
    CONF_DISCOVERY_PREFIX,
    CONF_PROTOCOL,
    CONF_TLS,
    DOMAIN,
    EVENT_COMMAND,
    PROTOCOL_MQTT,
)

from .mosquitto import Broker


def mqtt_entry_data(
    broker: Broker,
    *,
    client_id: str = "iot-bridge-test",
    prefix: str = "iot_bridge",
    username: str = "",
    password: str = "",
    port: int | None = None,
) -> dict[str, Any]:
    """Config entry data pointing at a test broker."""
    return {
        CONF_PROTOCOL: PROTOCOL_MQTT,
        CONF_HOST: broker.host,
        CONF_PORT: port or broker.port,
        CONF_USERNAME: username,
        CONF_PASSWORD: password,
        CONF_TLS: False,
        CONF_CA_FILE: "",
        CONF_CLIENT_ID: client_id,
        CONF_DISCOVERY_PREFIX: prefix,
    }


def mqtt_entry(
    broker: Broker,
    options: dict[str, Any] | None = None,
    entry_id: str | None = None,
    **kwargs: Any,
) -> MockConfigEntry:
    """A config entry for a test broker (not yet added to hass)."""
    data = mqtt_entry_data(broker, **kwargs)
    return MockConfigEntry(
        domain=DOMAIN,
        entry_id=entry_id,
        title=f"MQTT {broker.host}:{broker.port}",
        data=data,
        options=options or {},
        unique_id=f"{data[CONF_HOST]}:{data[CONF_PORT]}:{data[CONF_CLIENT_ID]}",
    )


async def setup_entry(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Add and set up an entry, asserting that it loaded."""
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()


async def setup_ha_mqtt(hass: HomeAssistant, broker: Broker) -> MockConfigEntry:
    """Home Assistant's own MQTT integration, set up against a test broker (MQTT 5)."""
    entry = MockConfigEntry(
        domain="mqtt",
        data={"broker": broker.host, "port": broker.port, "discovery": True, "protocol": "5"},
    )
    entry.add_to_hass(hass)
    # Its set-up reads configuration.yaml, which the test config directory does not have.
    with patch("homeassistant.config.load_yaml_config_file", return_value={}):
        assert await hass.config_entries.async_setup(entry.entry_id), "mqtt did not load"
    return entry


async def wait_for(
    predicate: Callable[[], bool],
    timeout: float = 5.0,
    what: str | Callable[[], object] = "",
) -> None:
    """Poll until predicate() holds; fail after timeout seconds saying what was awaited."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.02)
    except TimeoutError:
        detail = what() if callable(what) else what
        raise AssertionError(
            f"timed out after {timeout}s waiting for {detail or predicate}"
        ) from None


def registry_device(hass: HomeAssistant, entry_id: str, device_id: str) -> dr.DeviceEntry | None:
    """The device registry entry of one IoT Bridge device of a hub, if it exists.

    Looking up by identifier alone is deprecated since devices belong to one entry.
    """
    wanted = (DOMAIN, f"{entry_id}_{device_id}")
    devices = dr.async_entries_for_config_entry(dr.async_get(hass), entry_id)
    return next((device for device in devices if wanted in device.identifiers), None)


async def remove_device(client: Any, device_id: str, entry_id: str) -> Any:
    """Delete a device the way the UI does.

    The test plugin's helper takes the config entry only up to Home Assistant 2026.x,
    where a device belongs to one entry: pass what this version's helper accepts.
    """
    if len(inspect.signature(client.remove_device).parameters) == 2:
        return await client.remove_device(device_id, entry_id)
    return await client.remove_device(device_id)


def record_command_events(hass: HomeAssistant) -> list[dict[str, Any]]:
    """Every `iot_bridge_command` event from now on, as plain dicts, in order."""
    events: list[dict[str, Any]] = []

    @callback
    def record(event: Event) -> None:
        events.append(dict(event.data))

    hass.bus.async_listen(EVENT_COMMAND, record)
    return events


def publish_retained(port: int, messages: list[tuple[str, bytes]]) -> None:
    """Publish retained at QoS 1 and wait for every PUBACK (blocking: run in an executor)."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"retained-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    client.max_inflight_messages_set(200)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1, retain=True) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout=30)
    finally:
        client.disconnect()
        client.loop_stop()


class ThreadedSimulator(Protocol):
    """A simulator that runs in a thread of its own (the MQTT and CoAP ones)."""

    def start(self) -> None:
        """Start it; returns once it serves."""

    def stop(self) -> None:
        """Stop it and its thread."""


class Simulators[S: ThreadedSimulator]:
    """Simulators a test started (off the event loop), to stop them all after it."""

    def __init__(self, hass: HomeAssistant) -> None:
        self.hass = hass
        self.started: list[S] = []

    async def start(self, sim: S) -> S:
        await self.hass.async_add_executor_job(sim.start)
        self.started.append(sim)
        return sim

    async def stop_all(self) -> None:
        for sim in self.started:
            await self.hass.async_add_executor_job(sim.stop)
