"""Constants shared by the Home Assistant side of IoT Bridge."""

from __future__ import annotations

import logging
from typing import Final

DOMAIN: Final = "iot_bridge"
LOGGER = logging.getLogger(__package__)

CONF_PROTOCOL: Final = "protocol"
CONF_CLIENT_ID: Final = "client_id"
CONF_DISCOVERY_PREFIX: Final = "discovery_prefix"
CONF_TLS: Final = "tls"
CONF_CA_FILE: Final = "ca_file"
CONF_DEADLINE: Final = "command_deadline"
CONF_RETRIES: Final = "command_retries"
CONF_AUTO_DISCOVERY: Final = "auto_discovery"
# CoAP: the id the device states (or its address), and how often unobserved values are read.
CONF_DEVICE_ID: Final = "device_id"
CONF_POLL_INTERVAL: Final = "poll_interval"
# configuration.yaml `iot_bridge: coap_discovery:` (where the multicast scan runs).
CONF_COAP_DISCOVERY: Final = "coap_discovery"
CONF_INTERFACE: Final = "interface"
CONF_IPV6_INTERFACE: Final = "ipv6_interface"
CONF_SCAN_INTERVAL: Final = "scan_interval"
CONF_ENABLED: Final = "enabled"

# LwM2M server: how new endpoints are admitted, observation periods, who was accepted.
CONF_ADMISSION: Final = "admission"
ADMISSION_ASK: Final = "ask"
ADMISSION_ACCEPT_ALL: Final = "accept_all"
CONF_PMIN: Final = "pmin"
CONF_PMAX: Final = "pmax"
CONF_ACCEPTED: Final = "accepted_devices"
# A discovery flow for a device a hub met but nobody admitted yet (LwM2M, MQTT).
CONF_PENDING_DEVICE: Final = "pending_device"
CONF_ENTRY_ID: Final = "entry_id"
CONF_NAME: Final = "name"

PROTOCOL_MQTT: Final = "mqtt"
PROTOCOL_COAP: Final = "coap"
PROTOCOL_LWM2M: Final = "lwm2m"

DEFAULT_PORT: Final = 1883
DEFAULT_TLS_PORT: Final = 8883
DEFAULT_DISCOVERY_PREFIX: Final = "iot_bridge"
DEFAULT_DEADLINE: Final = 10.0
DEFAULT_RETRIES: Final = 2
DEFAULT_COAP_PORT: Final = 5683
DEFAULT_POLL_INTERVAL: Final = 30.0
DEFAULT_SCAN_INTERVAL: Final = 300.0
DEFAULT_LWM2M_HOST: Final = "0.0.0.0"
DEFAULT_LWM2M_PORT: Final = 5683
DEFAULT_PMIN: Final = 1
DEFAULT_PMAX: Final = 300

EVENT_COMMAND: Final = "iot_bridge_command"
