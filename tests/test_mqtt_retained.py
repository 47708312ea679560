"""Retained state at fleet size: more retained messages than a default mosquitto queues.

mosquitto's defaults allow 20 QoS 1 messages in flight to a client that sets no MQTT 5
Receive Maximum and queue 1,000 more (max_queued_messages); the rest of a burst is dropped
without a word. Subscribing to a fleet's retained topics is such a burst.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Generator

import pytest
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er

from custom_components.iot_bridge.const import DOMAIN
from custom_components.iot_bridge.core.mqtt.connection import (
    BROKER_DROPPED_TOPIC,
    MqttConnection,
    MqttSettings,
)
from custom_components.iot_bridge.core.mqtt.receive import Inbound

from .common import mqtt_entry, publish_retained, setup_entry, wait_for
from .mosquitto import Broker

pytestmark = pytest.mark.usefixtures("socket_enabled")

# 600 devices x 3 retained topics = 1,800 messages: far more than 20 in flight + 1,000 queued.
DEVICES = 600
PREFIX = "fleet"


def offline(index: int) -> bool:
    """Every fifth device announced itself and then went offline (its Last Will)."""
    return index % 5 == 0


def fleet() -> list[tuple[str, bytes]]:
    """Config, state and availability of every device, as the profile has them retained."""
    messages: list[tuple[str, bytes]] = []
    for index in range(DEVICES):
        device = f"dev{index:04d}"
        config = {
            "id": device,
            "name": f"Device {index}",
            "capabilities": [
                {"kind": "sensor", "key": "level", "unit": "%", "state_class": "measurement"}
            ],
        }
        base = f"{PREFIX}/{device}"
        messages += [
            (f"{base}/config", json.dumps(config).encode()),
            (f"{base}/state", json.dumps({"level": index}).encode()),
            (f"{base}/availability", b"offline" if offline(index) else b"online"),
        ]
    return messages


@pytest.fixture
def default_broker() -> Generator[Broker]:
    """mosquitto with its defaults (no set_tcp_nodelay, no queue settings)."""
    broker = Broker(nodelay=False)
    broker.start()
    yield broker
    broker.close()


async def test_retained_fleet_beyond_broker_queue_arrives_whole(
    hass: HomeAssistant, default_broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """Every config, state and availability retained before start-up arrives: 0 lost."""
    await hass.async_add_executor_job(publish_retained, default_broker.port, fleet())

    entry = mqtt_entry(default_broker, prefix=PREFIX)
    await setup_entry(hass, entry)
    bridge = entry.runtime_data.bridge

    await wait_for(
        lambda: len(bridge.devices) == DEVICES,
        timeout=15,
        what=lambda: f"{DEVICES} devices, {len(bridge.devices)} discovered",
    )
    registry = er.async_get(hass)

    def wrong() -> list[str]:
        """Sensors that do not show their device's retained state or availability."""
        bad = []
        for index in range(DEVICES):
            unique_id = f"{entry.entry_id}_dev{index:04d}_level"
            entity_id = registry.async_get_entity_id("sensor", DOMAIN, unique_id)
            state = hass.states.get(entity_id) if entity_id else None
            expected = STATE_UNAVAILABLE if offline(index) else str(index)
            if state is None or state.state != expected:
                bad.append(f"dev{index:04d}: {state.state if state else None} != {expected}")
        return bad

    await wait_for(lambda: not wrong(), timeout=15, what=lambda: wrong()[:5])
    ours = [r for r in caplog.records if r.name.startswith("custom_components.iot_bridge")]
    assert not [r for r in ours if r.levelno >= logging.WARNING]
    assert bridge.connection.broker_dropped == 0
    # Before this test's broker goes away (its fixture ends before hass does).
    assert await hass.config_entries.async_unload(entry.entry_id)


def _drop_count(value: int, *, retain: bool) -> Inbound:
    return Inbound(BROKER_DROPPED_TOPIC, str(value).encode(), retain=retain)


def test_broker_drop_count_rising_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """A rise of mosquitto's $SYS drop count while connected is a warning, once."""
    connection = MqttConnection(MqttSettings("127.0.0.1", 1883, "t"))
    dispatch = connection._dispatch  # the reader callback itself
    dispatch(_drop_count(1980, retain=True))  # the count when we subscribed: not ours
    dispatch(_drop_count(1980, retain=False))
    assert connection.broker_dropped == 0
    assert not caplog.records
    dispatch(_drop_count(2100, retain=False))
    dispatch(_drop_count(2150, retain=False))
    assert connection.broker_dropped == 170
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "dropped 120 messages" in warnings[0].getMessage()
    assert "max_queued_messages" in warnings[0].getMessage()


def test_broker_drop_count_without_retained_value_counts_from_zero() -> None:
    """A broker younger than its sys_interval had no count to retain: it started from 0."""
    connection = MqttConnection(MqttSettings("127.0.0.1", 1883, "t"))
    connection._dispatch(_drop_count(780, retain=False))
    assert connection.broker_dropped == 780


async def test_partial_retained_state_keeps_the_other_readings(
    hass: HomeAssistant, mqtt_broker: Broker
) -> None:
    """A device that retains only the keys that changed leaves part of its state on the
    broker; after a restart (here: a reload) the readings it left out show their last value,
    not unknown, and the retained keys show theirs."""
    prefix = "partial"
    base = f"{prefix}/meter"
    config = {
        "id": "meter",
        "name": "Meter",
        "capabilities": [
            {"kind": "sensor", "key": "power", "unit": "W"},
            {"kind": "sensor", "key": "label"},
            {"kind": "binary_sensor", "key": "door", "device_class": "door"},
        ],
    }
    full = {"power": 5, "label": "hall", "door": True}
    await hass.async_add_executor_job(
        publish_retained,
        mqtt_broker.port,
        [
            (f"{base}/config", json.dumps(config).encode()),
            (f"{base}/availability", b"online"),
            (f"{base}/state", json.dumps(full).encode()),
        ],
    )
    entry = mqtt_entry(mqtt_broker, prefix=prefix, client_id="partial-retained")
    await setup_entry(hass, entry)
    registry = er.async_get(hass)

    def shown() -> dict[str, str | None]:
        states = {}
        for key, domain in (("power", "sensor"), ("label", "sensor"), ("door", "binary_sensor")):
            entity_id = registry.async_get_entity_id(
                domain, DOMAIN, f"{entry.entry_id}_meter_{key}"
            )
            state = hass.states.get(entity_id) if entity_id else None
            states[key] = state.state if state else None
        return states

    await wait_for(lambda: shown() == {"power": "5", "label": "hall", "door": "on"}, what=shown)
    # The device retains only what changed: the broker's snapshot is now {"power": 7}.
    await hass.async_add_executor_job(
        publish_retained, mqtt_broker.port, [(f"{base}/state", b'{"power": 7}')]
    )
    await wait_for(lambda: shown()["power"] == "7", what=shown)
    assert shown() == {"power": "7", "label": "hall", "door": "on"}

    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    await wait_for(lambda: shown() == {"power": "7", "label": "hall", "door": "on"}, what=shown)
    assert entry.runtime_data.bridge.devices["meter"].state == {
        "power": 7,
        "label": "hall",
        "door": True,
    }
    # A reported value wins over the restored one.
    await hass.async_add_executor_job(
        publish_retained, mqtt_broker.port, [(f"{base}/state", b'{"label": "porch"}')]
    )
    await wait_for(lambda: shown()["label"] == "porch", what=shown)
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_add_executor_job(
        publish_retained,
        mqtt_broker.port,
        [(f"{base}/{topic}", b"") for topic in ("config", "state")],
    )
