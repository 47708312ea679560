"""Config flow: pick a protocol, then set up and test the connection."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeassistant.config_entries import (
    ConfigEntryState,
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlow,
)
from homeassistant.const import CONF_HOST, CONF_PASSWORD, CONF_PORT, CONF_USERNAME
from homeassistant.core import callback
from homeassistant.helpers import instance_id
from homeassistant.helpers.selector import (
    BooleanSelector,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)

from .bridges import mqtt_settings_from
from .compat import MqttServiceInfo, vol
from .const import (
    ADMISSION_ACCEPT_ALL,
    ADMISSION_ASK,
    CONF_ADMISSION,
    CONF_AUTO_DISCOVERY,
    CONF_CA_FILE,
    CONF_CLIENT_ID,
    CONF_DEADLINE,
    CONF_DEVICE_ID,
    CONF_DISCOVERY_PREFIX,
    CONF_ENTRY_ID,
    CONF_PENDING_DEVICE,
    CONF_PMAX,
    CONF_PMIN,
    CONF_POLL_INTERVAL,
    CONF_PROTOCOL,
    CONF_RETRIES,
    CONF_TLS,
    DEFAULT_COAP_PORT,
    DEFAULT_DEADLINE,
    DEFAULT_DISCOVERY_PREFIX,
    DEFAULT_LWM2M_HOST,
    DEFAULT_LWM2M_PORT,
    DEFAULT_PMAX,
    DEFAULT_PMIN,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_PORT,
    DEFAULT_RETRIES,
    DOMAIN,
    LOGGER,
    PROTOCOL_COAP,
    PROTOCOL_LWM2M,
    PROTOCOL_MQTT,
)
from .core.bridge import BridgeStartError
from .core.coap.probe import DeviceUnreachable, NothingUsable, ProbeResult, probe
from .core.lwm2m.server import check_port_free
from .core.model import Device
from .core.mqtt.connection import MqttAuthError, MqttConnectError, MqttConnection
from .core.mqtt.profile import ProfileError, Topics, parse_device_config
from .hub import pending_device_unique_id

_PASSWORD = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))
_PORT = NumberSelector(NumberSelectorConfig(min=1, max=65535, mode=NumberSelectorMode.BOX))
_ADMISSION = SelectSelector(
    SelectSelectorConfig(
        options=[ADMISSION_ASK, ADMISSION_ACCEPT_ALL],
        translation_key=CONF_ADMISSION,
        mode=SelectSelectorMode.LIST,
    )
)
_CONNECTION_KEYS = (CONF_HOST, CONF_PORT, CONF_USERNAME, CONF_PASSWORD, CONF_TLS, CONF_CA_FILE)


def _connection_schema(defaults: Mapping[str, Any]) -> dict[vol.Marker, Any]:
    """Fields shared by the user and reconfigure steps, pre-filled from defaults."""

    def default(key: str, fallback: Any = "") -> Any:
        value = defaults.get(key)
        return fallback if value is None else value

    return {
        vol.Required(CONF_HOST, default=default(CONF_HOST)): str,
        vol.Required(CONF_PORT, default=default(CONF_PORT, DEFAULT_PORT)): _PORT,
        vol.Optional(CONF_USERNAME, default=default(CONF_USERNAME)): str,
        vol.Optional(CONF_PASSWORD, default=default(CONF_PASSWORD)): _PASSWORD,
        vol.Required(CONF_TLS, default=default(CONF_TLS, False)): BooleanSelector(),
        vol.Optional(CONF_CA_FILE, default=default(CONF_CA_FILE)): str,
    }


def _normalise(user_input: Mapping[str, Any]) -> dict[str, Any]:
    """Clean form input: integer port, no surrounding blanks."""
    data = dict(user_input)
    data[CONF_HOST] = str(data[CONF_HOST]).strip()
    data[CONF_PORT] = int(data[CONF_PORT])
    return data


def _unique_id(data: Mapping[str, Any]) -> str:
    return f"{data[CONF_HOST]}:{data[CONF_PORT]}:{data[CONF_CLIENT_ID]}".lower()


def coap_unique_id(device_id: str) -> str:
    """A CoAP entry is the device, wherever it is: its id, not its address."""
    return f"coap:{device_id}"


def _coap_address(user_input: Mapping[str, Any]) -> tuple[str, int]:
    """Host (an IPv6 literal without brackets) and port from the form."""
    host = str(user_input[CONF_HOST]).strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(user_input[CONF_PORT])


def _coap_schema(defaults: Mapping[str, Any]) -> vol.Schema:
    return vol.Schema(
        {
            vol.Required(CONF_HOST, default=defaults.get(CONF_HOST, "")): str,
            vol.Required(CONF_PORT, default=defaults.get(CONF_PORT, DEFAULT_COAP_PORT)): _PORT,
        }
    )


def _coap_entry_data(found: ProbeResult) -> dict[str, Any]:
    return {
        CONF_PROTOCOL: PROTOCOL_COAP,
        CONF_HOST: found.host,
        CONF_PORT: found.port,
        CONF_DEVICE_ID: found.device_id,
    }


async def _probe_coap(host: str, port: int) -> tuple[ProbeResult | None, str | None, str]:
    """Read the device; (result, None, "") or (None, error key, detail)."""
    try:
        return await probe(host, port), None, ""
    except DeviceUnreachable as err:
        return None, "cannot_connect", str(err)
    except NothingUsable as err:
        return None, "no_usable_resources", str(err)
    except Exception:
        LOGGER.exception("Unexpected error while reading CoAP device %s:%s", host, port)
        return None, "unknown", ""


def _announced_device(info: MqttServiceInfo) -> Device | None:
    """The device in a discovery message Home Assistant's MQTT integration passed on."""
    prefix = info.subscribed_topic.removesuffix("/+/config")
    device_id = Topics(prefix, "").device_id_of(info.topic)
    payload = info.payload.encode() if isinstance(info.payload, str) else bytes(info.payload)
    try:
        if device_id is None:
            raise ProfileError("the topic does not name a device")
        return parse_device_config(device_id, payload)
    except ProfileError as err:
        LOGGER.warning("Not offering IoT Bridge for the announcement on %s: %s", info.topic, err)
        return None


def _same_broker(data: Mapping[str, Any], host: str, port: int) -> bool:
    return (
        data.get(CONF_PROTOCOL, PROTOCOL_MQTT) == PROTOCOL_MQTT
        and str(data.get(CONF_HOST, "")).lower() == host.lower()
        and data.get(CONF_PORT) == port
    )


async def _test_connection(data: Mapping[str, Any]) -> str | None:
    """Connect once; return an error key for the form, or None on success."""
    try:
        await MqttConnection.probe(mqtt_settings_from(data))
    except MqttAuthError:
        return "invalid_auth"
    except MqttConnectError:
        return "cannot_connect"
    except Exception:
        LOGGER.exception("Unexpected error while testing the MQTT connection")
        return "unknown"
    return None


class IotBridgeConfigFlow(ConfigFlow, domain=DOMAIN):
    """Add an IoT Bridge hub."""

    VERSION = 1
    _discovered: ProbeResult | None = None
    _pending: tuple[str, str] | None = None
    _broker: dict[str, Any] | None = None

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: Any) -> IotBridgeOptionsFlow:
        """Options: command deadline, retries, discovery."""
        return IotBridgeOptionsFlow()

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask which protocol the hub speaks."""
        return self.async_show_menu(step_id="user", menu_options=["mqtt_broker", "coap", "lwm2m"])

    async def async_step_coap(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """One CoAP device by host and port, read before anything is created."""
        errors: dict[str, str] = {}
        if user_input is not None:
            host, port = _coap_address(user_input)
            found, error, detail = await _probe_coap(host, port)
            if error == "no_usable_resources":
                return self._abort_nothing_usable(host, port, detail)
            if found is not None:
                await self.async_set_unique_id(coap_unique_id(found.device_id))
                self._abort_if_unique_id_configured()
                return self.async_create_entry(title=found.name, data=_coap_entry_data(found))
            errors["base"] = str(error)
        return self.async_show_form(
            step_id="coap", data_schema=_coap_schema(user_input or {}), errors=errors
        )

    async def async_step_integration_discovery(
        self, discovery_info: dict[str, Any]
    ) -> ConfigFlowResult:
        """A device to offer: one a hub met (LwM2M, MQTT), or one the CoAP scan found."""
        if CONF_PENDING_DEVICE in discovery_info:
            return await self._async_step_pending_device(discovery_info)
        host, port = discovery_info[CONF_HOST], int(discovery_info[CONF_PORT])
        found, error, detail = await _probe_coap(host, port)
        if found is None:
            LOGGER.debug("Not offering CoAP device at %s:%s: %s %s", host, port, error, detail)
            return self.async_abort(reason=str(error))
        await self.async_set_unique_id(coap_unique_id(found.device_id))
        # A known device at a new address: its entry follows it (and reloads).
        self._abort_if_unique_id_configured(updates={CONF_HOST: host, CONF_PORT: port})
        self._discovered = found
        self.context["title_placeholders"] = {"name": found.name, "host": host}
        return await self.async_step_discovery_confirm()

    async def async_step_discovery_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Confirm a discovered CoAP device."""
        found = self._discovered
        assert found is not None
        if user_input is not None:
            return self.async_create_entry(title=found.name, data=_coap_entry_data(found))
        self._set_confirm_only()
        return self.async_show_form(
            step_id="discovery_confirm",
            description_placeholders={
                "name": found.name,
                "host": found.host,
                "port": str(found.port),
                "resources": str(len(found.description.resources)),
            },
        )

    def _abort_nothing_usable(self, host: str, port: int, detail: str) -> ConfigFlowResult:
        return self.async_abort(
            reason="no_usable_resources",
            description_placeholders={"host": f"{host}:{port}", "detail": detail},
        )

    async def async_step_lwm2m(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Where the LwM2M server listens, and how new devices are admitted."""
        errors: dict[str, str] = {}
        placeholders = {"port": str(DEFAULT_LWM2M_PORT), "error": ""}
        if user_input is not None:
            host = str(user_input[CONF_HOST]).strip() or DEFAULT_LWM2M_HOST
            port = int(user_input[CONF_PORT])
            await self.async_set_unique_id(f"lwm2m:{port}")
            self._abort_if_unique_id_configured()
            try:
                check_port_free(host, port)
            except BridgeStartError as err:
                errors["base"] = "port_in_use" if "in use" in str(err) else "cannot_listen"
                placeholders = {"port": str(port), "error": str(err)}
            else:
                return self.async_create_entry(
                    title=f"LwM2M server (UDP {port})",
                    data={CONF_PROTOCOL: PROTOCOL_LWM2M, CONF_HOST: host, CONF_PORT: port},
                    options={CONF_ADMISSION: user_input[CONF_ADMISSION]},
                )
        defaults = user_input or {}
        schema = vol.Schema(
            {
                vol.Required(CONF_HOST, default=defaults.get(CONF_HOST, DEFAULT_LWM2M_HOST)): str,
                vol.Required(CONF_PORT, default=defaults.get(CONF_PORT, DEFAULT_LWM2M_PORT)): _PORT,
                vol.Required(
                    CONF_ADMISSION, default=defaults.get(CONF_ADMISSION, ADMISSION_ASK)
                ): _ADMISSION,
            }
        )
        return self.async_show_form(
            step_id="lwm2m",
            data_schema=schema,
            errors=errors,
            description_placeholders=placeholders,
        )

    async def _async_step_pending_device(self, discovery_info: dict[str, Any]) -> ConfigFlowResult:
        """A hub met a device nobody admitted yet: ask the user."""
        entry_id, device_id = discovery_info[CONF_ENTRY_ID], discovery_info[CONF_PENDING_DEVICE]
        await self.async_set_unique_id(pending_device_unique_id(entry_id, device_id))
        # Ignored before (an ignore entry with this id): never asked again.
        self._abort_if_unique_id_configured()
        hub_entry = self.hass.config_entries.async_get_entry(entry_id)
        if hub_entry is None:
            return self.async_abort(reason="hub_not_loaded")
        self._pending = (entry_id, device_id)
        self.context["title_placeholders"] = {"name": device_id, "host": hub_entry.title}
        return await self.async_step_accept_device()

    async def async_step_accept_device(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Accept a waiting device: it gets its entities on the hub that met it."""
        assert self._pending is not None
        entry_id, device_id = self._pending
        hub_entry = self.hass.config_entries.async_get_entry(entry_id)
        if hub_entry is None or hub_entry.state is not ConfigEntryState.LOADED:
            return self.async_abort(reason="hub_not_loaded")
        if user_input is not None:
            await hub_entry.runtime_data.async_accept(device_id)
            return self.async_abort(
                reason="device_accepted",
                description_placeholders={"name": device_id, "hub": hub_entry.title},
            )
        self._set_confirm_only()
        return self.async_show_form(
            step_id="accept_device",
            description_placeholders={"name": device_id, "hub": hub_entry.title},
        )

    async def async_step_mqtt_broker(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Broker details, tested before the entry is created."""
        errors: dict[str, str] = {}
        if user_input is not None:
            data = {CONF_PROTOCOL: PROTOCOL_MQTT, **_normalise(user_input)}
            await self.async_set_unique_id(_unique_id(data))
            self._abort_if_unique_id_configured()
            if (error := await _test_connection(data)) is None:
                return self.async_create_entry(
                    title=f"MQTT {data[CONF_HOST]}:{data[CONF_PORT]}", data=data
                )
            errors["base"] = error
        return self._broker_form(user_input or await self._mqtt_defaults(), errors)

    def _broker_form(self, defaults: Mapping[str, Any], errors: dict[str, str]) -> ConfigFlowResult:
        schema = {
            **_connection_schema(defaults),
            vol.Required(CONF_CLIENT_ID, default=defaults[CONF_CLIENT_ID]): str,
            vol.Required(
                CONF_DISCOVERY_PREFIX,
                default=defaults.get(CONF_DISCOVERY_PREFIX, DEFAULT_DISCOVERY_PREFIX),
            ): str,
        }
        return self.async_show_form(
            step_id="mqtt_broker", data_schema=vol.Schema(schema), errors=errors
        )

    async def async_step_mqtt(self, discovery_info: MqttServiceInfo) -> ConfigFlowResult:
        """A device announced itself on the broker of Home Assistant's MQTT integration."""
        if not self.hass.config_entries.async_entries("mqtt"):
            return self.async_abort(reason="mqtt_not_configured")
        device = _announced_device(discovery_info)
        if device is None:
            return self.async_abort(reason="invalid_discovery_info")
        defaults = await self._mqtt_defaults()
        host, port = defaults[CONF_HOST], defaults[CONF_PORT]
        for entry in self._async_current_entries(include_ignore=False):
            if _same_broker(entry.data, host, port):
                return self.async_abort(reason="already_configured")
        data = {
            CONF_PROTOCOL: PROTOCOL_MQTT,
            CONF_TLS: False,
            CONF_CA_FILE: "",
            **defaults,
            CONF_DISCOVERY_PREFIX: discovery_info.subscribed_topic.removesuffix("/+/config"),
        }
        # The id the entry will have: a second announcing device joins this flow, not a new one.
        await self.async_set_unique_id(_unique_id(data))
        self._abort_if_unique_id_configured()
        self._broker = data
        self.context["title_placeholders"] = {"name": device.name, "host": f"{host}:{port}"}
        return await self.async_step_mqtt_confirm()

    async def async_step_mqtt_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Confirm the hub for Home Assistant's broker; a failed test opens the full form."""
        data = self._broker
        assert data is not None
        broker = f"{data[CONF_HOST]}:{data[CONF_PORT]}"
        if user_input is not None:
            if (error := await _test_connection(data)) is None:
                return self.async_create_entry(title=f"MQTT {broker}", data=data)
            return self._broker_form(data, {"base": error})
        self._set_confirm_only()
        return self.async_show_form(
            step_id="mqtt_confirm",
            description_placeholders={
                "name": self.context["title_placeholders"]["name"],
                "broker": broker,
            },
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change broker address or credentials of an existing hub."""
        entry = self._get_reconfigure_entry()
        if entry.data.get(CONF_PROTOCOL) == PROTOCOL_COAP:
            return await self.async_step_reconfigure_coap()
        if entry.data.get(CONF_PROTOCOL) == PROTOCOL_LWM2M:
            return await self.async_step_reconfigure_lwm2m()
        errors: dict[str, str] = {}
        if user_input is not None:
            data = {**entry.data, **_normalise(user_input)}
            new_unique_id = _unique_id(data)
            if new_unique_id != entry.unique_id:
                await self.async_set_unique_id(new_unique_id)
                self._abort_if_unique_id_configured()
            if (error := await _test_connection(data)) is None:
                return self.async_update_reload_and_abort(
                    entry,
                    unique_id=new_unique_id,
                    title=f"MQTT {data[CONF_HOST]}:{data[CONF_PORT]}",
                    data=data,
                )
            errors["base"] = error
        defaults = user_input or entry.data
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=vol.Schema(_connection_schema(defaults)),
            errors=errors,
        )

    async def async_step_reconfigure_coap(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Move a CoAP device's entry to a new address; it must be the same device."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            host, port = _coap_address(user_input)
            found, error, detail = await _probe_coap(host, port)
            if error == "no_usable_resources":
                return self._abort_nothing_usable(host, port, detail)
            if found is not None:
                if found.identified:
                    await self.async_set_unique_id(coap_unique_id(found.device_id))
                    self._abort_if_unique_id_mismatch(reason="wrong_device")
                return self.async_update_reload_and_abort(
                    entry, data_updates={CONF_HOST: host, CONF_PORT: port}
                )
            errors["base"] = str(error)
        return self.async_show_form(
            step_id="reconfigure_coap",
            data_schema=_coap_schema(user_input or entry.data),
            errors=errors,
        )

    async def async_step_reconfigure_lwm2m(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Move the LwM2M server to another address or port (devices must follow)."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        placeholders = {"port": str(entry.data[CONF_PORT]), "error": ""}
        if user_input is not None:
            host = str(user_input[CONF_HOST]).strip() or DEFAULT_LWM2M_HOST
            port = int(user_input[CONF_PORT])
            new_unique_id = f"lwm2m:{port}"
            if new_unique_id != entry.unique_id:
                await self.async_set_unique_id(new_unique_id)
                self._abort_if_unique_id_configured()
            unchanged = (host, port) == (entry.data[CONF_HOST], entry.data[CONF_PORT])
            try:
                if not unchanged:  # the entry's own server holds its current port
                    check_port_free(host, port)
            except BridgeStartError as err:
                errors["base"] = "port_in_use" if "in use" in str(err) else "cannot_listen"
                placeholders = {"port": str(port), "error": str(err)}
            else:
                return self.async_update_reload_and_abort(
                    entry,
                    unique_id=new_unique_id,
                    title=f"LwM2M server (UDP {port})",
                    data_updates={CONF_HOST: host, CONF_PORT: port},
                )
        defaults = user_input or entry.data
        schema = vol.Schema(
            {
                vol.Required(CONF_HOST, default=defaults.get(CONF_HOST, DEFAULT_LWM2M_HOST)): str,
                vol.Required(CONF_PORT, default=defaults.get(CONF_PORT, DEFAULT_LWM2M_PORT)): _PORT,
            }
        )
        return self.async_show_form(
            step_id="reconfigure_lwm2m",
            data_schema=schema,
            errors=errors,
            description_placeholders=placeholders,
        )

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        """The broker rejected the stored credentials."""
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for new credentials and test them."""
        entry = self._get_reauth_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            data = {**entry.data, **user_input}
            if (error := await _test_connection(data)) is None:
                return self.async_update_reload_and_abort(entry, data=data)
            errors["base"] = error
        schema = vol.Schema(
            {
                vol.Optional(CONF_USERNAME, default=entry.data.get(CONF_USERNAME) or ""): str,
                vol.Optional(CONF_PASSWORD, default=""): _PASSWORD,
            }
        )
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=schema,
            errors=errors,
            description_placeholders={"broker": f"{entry.data[CONF_HOST]}:{entry.data[CONF_PORT]}"},
        )

    async def _mqtt_defaults(self) -> dict[str, Any]:
        """Pre-fill from Home Assistant's own MQTT entry, when there is one."""
        defaults: dict[str, Any] = {
            CONF_PORT: DEFAULT_PORT,
            CONF_CLIENT_ID: f"iot-bridge-{(await instance_id.async_get(self.hass))[:8]}",
        }
        for entry in self.hass.config_entries.async_entries("mqtt"):
            defaults[CONF_HOST] = entry.data.get("broker", "")
            defaults[CONF_PORT] = entry.data.get(CONF_PORT, DEFAULT_PORT)
            defaults[CONF_USERNAME] = entry.data.get(CONF_USERNAME, "")
            defaults[CONF_PASSWORD] = entry.data.get(CONF_PASSWORD, "")
            break
        return defaults


class IotBridgeOptionsFlow(OptionsFlow):
    """Command deadline and retries; per protocol: MQTT discovery, CoAP polling, LwM2M
    admission and observation periods."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Show and store the options of the entry's protocol."""
        protocol = self.config_entry.data.get(CONF_PROTOCOL, PROTOCOL_MQTT)
        options = self.config_entry.options
        if user_input is not None:
            data: dict[str, Any] = {
                **options,
                CONF_DEADLINE: float(user_input[CONF_DEADLINE]),
                CONF_RETRIES: int(user_input[CONF_RETRIES]),
            }
            for key, convert in _PROTOCOL_OPTIONS[protocol]:
                data[key] = convert(user_input[key])
            if protocol == PROTOCOL_LWM2M and _periods(data) != _periods(options):
                # Observation periods are sent to devices when they are set up.
                self.hass.config_entries.async_schedule_reload(self.config_entry.entry_id)
            return self.async_create_entry(data=data)
        fields: dict[vol.Marker, Any] = {
            vol.Required(
                CONF_DEADLINE, default=options.get(CONF_DEADLINE, DEFAULT_DEADLINE)
            ): NumberSelector(
                NumberSelectorConfig(
                    min=1,
                    max=300,
                    step=0.5,
                    unit_of_measurement="s",
                    mode=NumberSelectorMode.BOX,
                )
            ),
            vol.Required(
                CONF_RETRIES, default=options.get(CONF_RETRIES, DEFAULT_RETRIES)
            ): NumberSelector(NumberSelectorConfig(min=0, max=10, mode=NumberSelectorMode.BOX)),
        }
        fields.update(_protocol_fields(protocol, options))
        return self.async_show_form(step_id="init", data_schema=vol.Schema(fields))


def _seconds(low: int, high: int) -> NumberSelector:
    return NumberSelector(
        NumberSelectorConfig(
            min=low, max=high, step=1, unit_of_measurement="s", mode=NumberSelectorMode.BOX
        )
    )


def _periods(options: Mapping[str, Any]) -> tuple[Any, Any]:
    return options.get(CONF_PMIN, DEFAULT_PMIN), options.get(CONF_PMAX, DEFAULT_PMAX)


# Each protocol's own options: (key, how the stored value is made from the form's).
_PROTOCOL_OPTIONS: dict[str, tuple[tuple[str, Any], ...]] = {
    PROTOCOL_MQTT: ((CONF_AUTO_DISCOVERY, bool),),
    PROTOCOL_COAP: ((CONF_POLL_INTERVAL, float),),
    PROTOCOL_LWM2M: ((CONF_ADMISSION, str), (CONF_PMIN, int), (CONF_PMAX, int)),
}


def _protocol_fields(protocol: str, options: Mapping[str, Any]) -> dict[vol.Marker, Any]:
    if protocol == PROTOCOL_COAP:
        return {
            vol.Required(
                CONF_POLL_INTERVAL,
                default=options.get(CONF_POLL_INTERVAL, DEFAULT_POLL_INTERVAL),
            ): _seconds(1, 3600)
        }
    if protocol == PROTOCOL_LWM2M:
        return {
            vol.Required(
                CONF_ADMISSION, default=options.get(CONF_ADMISSION, ADMISSION_ASK)
            ): _ADMISSION,
            vol.Required(CONF_PMIN, default=options.get(CONF_PMIN, DEFAULT_PMIN)): _seconds(
                0, 3600
            ),
            vol.Required(CONF_PMAX, default=options.get(CONF_PMAX, DEFAULT_PMAX)): _seconds(
                1, 86400
            ),
        }
    return {
        vol.Required(CONF_AUTO_DISCOVERY, default=options.get(CONF_AUTO_DISCOVERY, True)): (
            BooleanSelector()
        )
    }
