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

PROTOCOL_MQTT: Final = "mqtt"
PROTOCOL_COAP: Final = "coap"
PROTOCOL_LWM2M: Final = "lwm2m"

DEFAULT_PORT: Final = 1883
DEFAULT_TLS_PORT: Final = 8883
DEFAULT_DISCOVERY_PREFIX: Final = "iot_bridge"
DEFAULT_DEADLINE: Final = 10.0
DEFAULT_RETRIES: Final = 2

EVENT_COMMAND: Final = "iot_bridge_command"
