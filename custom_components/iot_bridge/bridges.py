"""How each protocol's bridge is built from a config entry.

The only module of the Home Assistant side that knows which protocols exist: it turns a
config entry's data into the settings of one `core` package and builds its bridge. The
hub, entities, actions and diagnostics use the result through `core.bridge.Bridge` alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from homeassistant.const import CONF_HOST, CONF_PASSWORD, CONF_PORT, CONF_USERNAME

from .const import (
    CONF_CA_FILE,
    CONF_CLIENT_ID,
    CONF_DEVICE_ID,
    CONF_DISCOVERY_PREFIX,
    CONF_PMAX,
    CONF_PMIN,
    CONF_POLL_INTERVAL,
    CONF_PROTOCOL,
    CONF_TLS,
    DEFAULT_DISCOVERY_PREFIX,
    DEFAULT_LWM2M_HOST,
    DEFAULT_LWM2M_PORT,
    DEFAULT_PMAX,
    DEFAULT_PMIN,
    DEFAULT_POLL_INTERVAL,
    PROTOCOL_COAP,
    PROTOCOL_LWM2M,
    PROTOCOL_MQTT,
)
from .core.bridge import Admission, Bridge, BridgeListener
from .core.coap.bridge import CoapBridge, CoapSettings
from .core.commands import CommandEngine
from .core.lwm2m.bridge import Lwm2mBridge, Lwm2mSettings
from .core.lwm2m.mapping import entity_table
from .core.lwm2m.registry import default_registry
from .core.mqtt.bridge import MqttBridge
from .core.mqtt.connection import MqttSettings
from .core.mqtt.profile import Topics


class BridgeContext:
    """What a bridge may ask of the hub besides the listener interface."""

    def __init__(
        self,
        listener: BridgeListener,
        engine: CommandEngine,
        *,
        admission: Callable[[str], Admission],
        request_reauth: Callable[[], None],
        title: str = "",
        options: Callable[[], Mapping[str, Any]] = dict,
    ) -> None:
        self.listener = listener
        self.engine = engine
        # Whether a device the bridge just met may become a Home Assistant device.
        self.admission = admission
        self.request_reauth = request_reauth
        # The entry's title and current options (options change without a reload).
        self.title = title
        self.options = options


def mqtt_settings_from(data: Mapping[str, Any]) -> MqttSettings:
    """Connection settings from config entry data (or config flow input)."""
    return MqttSettings(
        host=data[CONF_HOST],
        port=int(data[CONF_PORT]),
        client_id=data[CONF_CLIENT_ID],
        username=data.get(CONF_USERNAME) or None,
        password=data.get(CONF_PASSWORD) or None,
        tls=bool(data.get(CONF_TLS, False)),
        ca_file=data.get(CONF_CA_FILE) or None,
    )


def _mqtt_bridge(data: Mapping[str, Any], context: BridgeContext) -> Bridge:
    topics = Topics(
        prefix=data.get(CONF_DISCOVERY_PREFIX, DEFAULT_DISCOVERY_PREFIX),
        client_id=data[CONF_CLIENT_ID],
    )
    return MqttBridge(
        mqtt_settings_from(data),
        topics,
        context.engine,
        context.listener,
        accept_new_devices=lambda device_id: (context.admission(device_id) is Admission.ACCEPTED),
        # The broker came back but refuses the stored credentials: ask the user.
        on_auth_failed=context.request_reauth,
    )


def _coap_bridge(data: Mapping[str, Any], context: BridgeContext) -> Bridge:
    def poll_interval() -> float:
        return float(context.options().get(CONF_POLL_INTERVAL, DEFAULT_POLL_INTERVAL))

    settings = CoapSettings(
        host=data[CONF_HOST],
        port=int(data[CONF_PORT]),
        device_id=data[CONF_DEVICE_ID],
        name=context.title or data[CONF_DEVICE_ID],
        poll_interval=poll_interval,
    )
    return CoapBridge(settings, context.engine, context.listener)


def lwm2m_settings_from(data: Mapping[str, Any], options: Mapping[str, Any]) -> Lwm2mSettings:
    """Where the LwM2M server listens, and the observation periods it asks for."""
    return Lwm2mSettings(
        host=data.get(CONF_HOST, DEFAULT_LWM2M_HOST),
        port=int(data.get(CONF_PORT, DEFAULT_LWM2M_PORT)),
        pmin=int(options.get(CONF_PMIN, DEFAULT_PMIN)),
        pmax=int(options.get(CONF_PMAX, DEFAULT_PMAX)),
    )


def _lwm2m_bridge(data: Mapping[str, Any], context: BridgeContext) -> Bridge:
    return Lwm2mBridge(
        lwm2m_settings_from(data, context.options()),
        context.engine,
        context.listener,
        admission=context.admission,
    )


_BUILDERS: dict[str, Callable[[Mapping[str, Any], BridgeContext], Bridge]] = {
    PROTOCOL_MQTT: _mqtt_bridge,
    PROTOCOL_COAP: _coap_bridge,
    PROTOCOL_LWM2M: _lwm2m_bridge,
}


def load_protocol_data() -> None:
    """Read the data files the protocol packages ship, once (file I/O: not on the event loop)."""
    default_registry()
    entity_table()


def build_bridge(data: Mapping[str, Any], context: BridgeContext) -> Bridge:
    """The bridge for a config entry's protocol (entries from before 0.2 are MQTT)."""
    protocol = data.get(CONF_PROTOCOL, PROTOCOL_MQTT)
    return _BUILDERS[protocol](data, context)
