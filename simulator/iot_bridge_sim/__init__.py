"""Device simulators for IoT Bridge: protocol-neutral models, MQTT and CoAP transports, a CLI."""

from .behaviour import Behaviour
from .coap import CoapDeviceSimulator, MulticastSettings
from .devices import DEVICE_FACTORIES, Answer, DeviceModel, climate_node, parcel_locker
from .fleet import build_coap_fleet, build_fleet, crash_fleet, start_fleet, stop_fleet
from .mqtt import MqttDeviceSimulator, ReceivedCommand

__all__ = [
    "DEVICE_FACTORIES",
    "Answer",
    "Behaviour",
    "CoapDeviceSimulator",
    "DeviceModel",
    "MqttDeviceSimulator",
    "MulticastSettings",
    "ReceivedCommand",
    "build_coap_fleet",
    "build_fleet",
    "climate_node",
    "crash_fleet",
    "parcel_locker",
    "start_fleet",
    "stop_fleet",
]
