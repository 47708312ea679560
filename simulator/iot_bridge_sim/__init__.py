"""Device simulators for IoT Bridge: protocol-neutral models, MQTT transport, a CLI."""

from .behaviour import Behaviour
from .devices import DEVICE_FACTORIES, Answer, DeviceModel, climate_node, parcel_locker
from .fleet import build_fleet, crash_fleet, start_fleet, stop_fleet
from .mqtt import MqttDeviceSimulator, ReceivedCommand

__all__ = [
    "DEVICE_FACTORIES",
    "Answer",
    "Behaviour",
    "DeviceModel",
    "MqttDeviceSimulator",
    "ReceivedCommand",
    "build_fleet",
    "climate_node",
    "crash_fleet",
    "parcel_locker",
    "start_fleet",
    "stop_fleet",
]
