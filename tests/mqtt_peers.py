"""Simulated MQTT devices for the Home Assistant tests: fixtures to import where needed."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable

import pytest
from homeassistant.core import HomeAssistant

from iot_bridge_sim.behaviour import Behaviour
from iot_bridge_sim.devices import DeviceModel
from iot_bridge_sim.mqtt import MqttDeviceSimulator

from .common import Simulators
from .mosquitto import Broker

StartSim = Callable[..., Awaitable[MqttDeviceSimulator]]


@pytest.fixture
def prefix() -> str:
    """A discovery prefix of this test's own: the session broker keeps retained messages."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def start_sim(
    hass: HomeAssistant, mqtt_broker: Broker, prefix: str
) -> AsyncGenerator[StartSim]:
    """Start simulated devices on the test broker (or another); all stop after the test."""
    simulators: Simulators[MqttDeviceSimulator] = Simulators(hass)

    async def start(
        model: DeviceModel,
        protocol: str = "5",
        behaviour: Behaviour | None = None,
        broker: Broker | None = None,
    ) -> MqttDeviceSimulator:
        sim = MqttDeviceSimulator(
            model,
            port=(broker or mqtt_broker).port,
            prefix=prefix,
            protocol=protocol,  # type: ignore[arg-type]
            behaviour=behaviour,
            printer=logging.getLogger("simulator").info,
        )
        return await simulators.start(sim)

    yield start
    await simulators.stop_all()
