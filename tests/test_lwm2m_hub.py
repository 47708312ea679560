"""The LwM2M server in Home Assistant: config flow, admission, entities, commands, unload.

Clients are the project's simulators (real UDP on 127.0.0.1, speaking LwM2M with the
project's codecs) and Debian's coap-client-notls for a registration nobody here wrote.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import pytest
from homeassistant import config_entries
from homeassistant.components.lock import DOMAIN as LOCK_DOMAIN
from homeassistant.components.lock.const import LockState
from homeassistant.const import (
    ATTR_ENTITY_ID,
    CONF_HOST,
    CONF_PORT,
    STATE_NOT_HOME,
    STATE_OFF,
    STATE_ON,
    STATE_UNAVAILABLE,
    STATE_UNKNOWN,
)
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_device,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator
from syrupy.assertion import SnapshotAssertion

from custom_components.iot_bridge.const import (
    ADMISSION_ACCEPT_ALL,
    ADMISSION_ASK,
    CONF_ACCEPTED,
    CONF_ADMISSION,
    CONF_DEADLINE,
    CONF_PMAX,
    CONF_PMIN,
    CONF_PROTOCOL,
    CONF_RETRIES,
    DOMAIN,
    PROTOCOL_LWM2M,
)
from custom_components.iot_bridge.core.lwm2m import LwM2MPath
from custom_components.iot_bridge.hub import pending_device_unique_id
from iot_bridge_sim.devices import parcel_locker, sensor_node
from iot_bridge_sim.lwm2m import Lwm2mBehaviour, Lwm2mClient, Lwm2mOptions
from iot_bridge_sim.lwm2m_objects import showcase_node

from .common import registry_device, setup_entry, wait_for

pytestmark = pytest.mark.usefixtures("socket_enabled")

ENTRY_ID = "01JLWM2MENTRY00000000000000"
COAP_CLIENT = shutil.which("coap-client-notls") or "/usr/bin/coap-client-notls"
LOCK_1 = "lock.locker1_door_1"
DOOR_1 = "binary_sensor.locker1_door_1"
TEMPERATURE = "sensor.locker1_temperature"
TRACKER = "device_tracker.showcase1_location"
BUTTON_EVENT = "event.showcase1_button"
SHOWCASE_LIVE = (
    "sensor.showcase1_signal_strength",
    "binary_sensor.showcase1_digital_input",
    "switch.showcase1_digital_output",
    "sensor.showcase1_analog_input",
    "binary_sensor.showcase1_occupancy",
    "sensor.showcase1_power",
    "sensor.showcase1_energy",
    "light.showcase1_actuation",
    "binary_sensor.showcase1_on_off_switch",
    BUTTON_EVENT,
)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _state(hass: HomeAssistant, entity_id: str) -> str | None:
    state = hass.states.get(entity_id)
    return None if state is None else state.state


def lwm2m_entry(
    port: int, admission: str = ADMISSION_ACCEPT_ALL, **options: Any
) -> MockConfigEntry:
    return MockConfigEntry(
        domain=DOMAIN,
        entry_id=ENTRY_ID,
        title=f"LwM2M server (UDP {port})",
        data={CONF_PROTOCOL: PROTOCOL_LWM2M, CONF_HOST: "127.0.0.1", CONF_PORT: port},
        options={
            CONF_ADMISSION: admission,
            CONF_DEADLINE: 2.0,
            CONF_RETRIES: 1,
            CONF_PMIN: 0,
            CONF_PMAX: 60,
            **options,
        },
        unique_id=f"lwm2m:{port}",
    )


StartClient = Callable[..., Awaitable[Lwm2mClient]]


@pytest.fixture
def port() -> int:
    return _free_udp_port()


@pytest.fixture
async def start_client(port: int) -> AsyncGenerator[StartClient]:
    clients: list[Lwm2mClient] = []

    async def start(
        model: Any = None, behaviour: Lwm2mBehaviour | None = None, **options: Any
    ) -> Lwm2mClient:
        client = Lwm2mClient(
            model or parcel_locker(),
            Lwm2mOptions(**{"server": f"coap://127.0.0.1:{port}", **options}),
            behaviour=behaviour,
        )
        await client.start(**({"wait": options.pop("wait")} if "wait" in options else {}))
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.stop()


async def _accept_all_hub(hass: HomeAssistant, port: int) -> MockConfigEntry:
    entry = lwm2m_entry(port)
    await setup_entry(hass, entry)
    return entry


# -- config flow -------------------------------------------------------------------------


async def test_flow_creates_the_server_and_refuses_a_port_in_use(
    hass: HomeAssistant, port: int
) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "lwm2m"}
    )
    assert result["step_id"] == "lwm2m"
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", port))
    form = {CONF_HOST: "127.0.0.1", CONF_PORT: port, CONF_ADMISSION: ADMISSION_ASK}
    try:
        result = await hass.config_entries.flow.async_configure(result["flow_id"], form)
    finally:
        holder.close()
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "port_in_use"}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], form)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == {
        CONF_PROTOCOL: PROTOCOL_LWM2M,
        CONF_HOST: "127.0.0.1",
        CONF_PORT: port,
    }
    assert result["options"] == {CONF_ADMISSION: ADMISSION_ASK}
    await hass.async_block_till_done()
    entry = result["result"]
    assert entry.runtime_data.connected
    # The same port again is the same server.
    again = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    again = await hass.config_entries.flow.async_configure(
        again["flow_id"], {"next_step_id": "lwm2m"}
    )
    again = await hass.config_entries.flow.async_configure(again["flow_id"], form)
    assert again["reason"] == "already_configured"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_port_taken_at_start_is_a_clear_retry(hass: HomeAssistant, port: int) -> None:
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", port))
    try:
        entry = lwm2m_entry(port)
        entry.add_to_hass(hass)
        await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        assert entry.state is config_entries.ConfigEntryState.SETUP_RETRY
        assert f"UDP port {port} on 127.0.0.1 is already in use" in (entry.reason or "")
    finally:
        holder.close()


async def test_options_flow(hass: HomeAssistant, port: int) -> None:
    entry = await _accept_all_hub(hass, port)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {
            CONF_DEADLINE: 5,
            CONF_RETRIES: 0,
            CONF_ADMISSION: ADMISSION_ASK,
            CONF_PMIN: 2,
            CONF_PMAX: 120,
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert entry.options[CONF_ADMISSION] == ADMISSION_ASK
    assert (entry.options[CONF_PMIN], entry.options[CONF_PMAX]) == (2, 120)
    # New periods apply to devices set up from now on: the server was reloaded with them.
    assert entry.runtime_data.bridge.settings.pmax == 120
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_reconfigure_moves_the_server_to_a_free_port(
    hass: HomeAssistant, port: int, start_client: StartClient
) -> None:
    """Reconfigure is the LwM2M server's own form (not the broker's): a taken port is
    refused, a free one moves the server and the old port is released."""
    entry = await _accept_all_hub(hass, port)
    result = await entry.start_reconfigure_flow(hass)
    assert result["step_id"] == "reconfigure_lwm2m"
    # Unchanged: the entry's own server holds the port, which is not "in use".
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: "127.0.0.1", CONF_PORT: port}
    )
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    new_port = _free_udp_port()
    result = await entry.start_reconfigure_flow(hass)
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", new_port))
    form = {CONF_HOST: "127.0.0.1", CONF_PORT: new_port}
    try:
        result = await hass.config_entries.flow.async_configure(result["flow_id"], form)
    finally:
        holder.close()
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "port_in_use"}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], form)
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert entry.data[CONF_PORT] == new_port
    assert entry.unique_id == f"lwm2m:{new_port}"
    assert entry.title == f"LwM2M server (UDP {new_port})"
    assert entry.options[CONF_ADMISSION] == ADMISSION_ACCEPT_ALL
    assert entry.runtime_data.bridge.settings.port == new_port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as old:
        old.bind(("127.0.0.1", port))  # released by the reload
    client = await start_client(sensor_node(), server=f"coap://127.0.0.1:{new_port}")
    await wait_for(lambda: client.device_id in entry.runtime_data.bridge.devices)
    assert await hass.config_entries.async_unload(entry.entry_id)


# -- devices and entities -------------------------------------------------------------------


async def test_registered_locker_appears_with_entities(
    hass: HomeAssistant,
    port: int,
    start_client: StartClient,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    entry = await _accept_all_hub(hass, port)
    client = await start_client()
    await wait_for(lambda: _state(hass, LOCK_1) == LockState.LOCKED, what="lock entity")
    assert _state(hass, DOOR_1) == STATE_OFF
    assert _state(hass, TEMPERATURE) == "21.5"
    entities = sorted(
        er.async_entries_for_config_entry(entity_registry, entry.entry_id),
        key=lambda e: e.entity_id,
    )
    assert [
        {
            "entity_id": e.entity_id,
            "unique_id": e.unique_id,
            "original_name": e.original_name,
            "device_class": e.original_device_class,
            "unit": e.unit_of_measurement,
            "category": e.entity_category,
            "disabled_by": e.disabled_by,
        }
        for e in entities
    ] == snapshot
    client.publish_state({"temperature": 23.0})
    await wait_for(lambda: _state(hass, TEMPERATURE) == "23.0", what="notification")
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_showcase_objects_become_entities_with_live_values(
    hass: HomeAssistant,
    port: int,
    start_client: StartClient,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    """One instance of each mapped IPSO object beyond the locker's: entity kind, device
    class and unit per object, and a notification reaches each entity's state."""
    entry = await _accept_all_hub(hass, port)
    client = await start_client(showcase_node())
    await wait_for(lambda: _state(hass, TRACKER) == STATE_NOT_HOME, what="showcase entities")
    entities = sorted(
        er.async_entries_for_config_entry(entity_registry, entry.entry_id),
        key=lambda e: e.entity_id,
    )
    assert [
        {
            "entity_id": e.entity_id,
            "unique_id": e.unique_id,
            "original_name": e.original_name,
            "device_class": e.original_device_class,
            "unit": e.unit_of_measurement,
            "category": e.entity_category,
            "disabled_by": e.disabled_by,
        }
        for e in entities
    ] == snapshot
    before = {entity_id: _state(hass, entity_id) for entity_id in SHOWCASE_LIVE}
    assert before == {
        "sensor.showcase1_signal_strength": "-70",
        "binary_sensor.showcase1_digital_input": STATE_OFF,
        "switch.showcase1_digital_output": STATE_OFF,
        "sensor.showcase1_analog_input": "1.5",
        "binary_sensor.showcase1_occupancy": STATE_OFF,
        "sensor.showcase1_power": "100.0",
        "sensor.showcase1_energy": "1000.0",
        "light.showcase1_actuation": STATE_OFF,
        "binary_sensor.showcase1_on_off_switch": STATE_OFF,
        BUTTON_EVENT: STATE_UNKNOWN,  # presses before Home Assistant started are not news
    }
    _coordinates_are(hass, 48.85, 2.35)
    # The push button's press count becomes news only once it is observed (its first value
    # is the base): publish after the observation is in place.
    await wait_for(
        lambda: any(path.startswith("/3347/") for path in client.observations),
        what="the push button observed",
    )
    client.publish_state(
        {
            "signal": -95,
            "input": True,
            "output": True,
            "analog": 3.25,
            "presence": True,
            "power": 42.5,
            "power_energy": 1234.0,
            "actuator": {"on": True, "brightness": 255},
            "position": {"latitude": 52.52, "longitude": 13.405},
            "on_off": True,
            "button": 1,
        }
    )
    after = {
        "sensor.showcase1_signal_strength": "-95",
        "binary_sensor.showcase1_digital_input": STATE_ON,
        "switch.showcase1_digital_output": STATE_ON,
        "sensor.showcase1_analog_input": "3.25",
        "binary_sensor.showcase1_occupancy": STATE_ON,
        "sensor.showcase1_power": "42.5",
        "sensor.showcase1_energy": "1234.0",
        "light.showcase1_actuation": STATE_ON,
        "binary_sensor.showcase1_on_off_switch": STATE_ON,
    }
    await wait_for(
        lambda: all(_state(hass, e) == value for e, value in after.items()),
        what="notifications",
    )
    await wait_for(lambda: _state(hass, BUTTON_EVENT) not in (None, STATE_UNKNOWN))
    pressed = hass.states.get(BUTTON_EVENT)
    assert pressed is not None
    assert pressed.attributes["event_type"] == "press"
    assert pressed.attributes["presses"] == 1
    await wait_for(lambda: _coordinates(hass) == (52.52, 13.405), what="new position")
    # Two presses between notifications are one event that says so.
    client.publish_state({"button": 3})
    await wait_for(
        lambda: (state := hass.states.get(BUTTON_EVENT)) is not None
        and state.attributes.get("count") == 3
    )
    pressed = hass.states.get(BUTTON_EVENT)
    assert pressed is not None
    assert pressed.attributes["presses"] == 2
    # A counter that went down (the device restarted) is the new base, not an event.
    client.publish_state({"button": 0})
    counter = LwM2MPath(3347, 0, 5501)
    showcase = entry.runtime_data.bridge.endpoints["showcase1"]
    await wait_for(lambda: showcase.values.get(counter) == 0, what="the reset counter")
    client.publish_state({"button": 1})
    await wait_for(
        lambda: (state := hass.states.get(BUTTON_EVENT)) is not None
        and state.attributes.get("count") == 1
    )
    after_restart = hass.states.get(BUTTON_EVENT)
    assert after_restart is not None
    assert after_restart.attributes["presses"] == 1
    assert after_restart.state != pressed.state
    # The Digital Output is a switch whose command is a confirmed Write of 5550.
    await hass.services.async_call(
        "switch", "turn_off", {ATTR_ENTITY_ID: "switch.showcase1_digital_output"}, blocking=True
    )
    assert _state(hass, "switch.showcase1_digital_output") == STATE_OFF
    assert client.model.state["output"] is False
    assert await hass.config_entries.async_unload(entry.entry_id)


def _coordinates(hass: HomeAssistant) -> tuple[Any, Any]:
    state = hass.states.get(TRACKER)
    assert state is not None
    return state.attributes.get("latitude"), state.attributes.get("longitude")


def _coordinates_are(hass: HomeAssistant, latitude: float, longitude: float) -> None:
    assert _coordinates(hass) == (latitude, longitude)


async def test_lock_commands_are_confirmed_by_the_device_status(
    hass: HomeAssistant,
    port: int,
    start_client: StartClient,
    hass_client: ClientSessionGenerator,
) -> None:
    entry = await _accept_all_hub(hass, port)
    client = await start_client()
    await wait_for(lambda: _state(hass, LOCK_1) == LockState.LOCKED)
    await hass.services.async_call(LOCK_DOMAIN, "unlock", {ATTR_ENTITY_ID: LOCK_1}, blocking=True)
    assert _state(hass, LOCK_1) == LockState.UNLOCKED
    await hass.services.async_call(LOCK_DOMAIN, "open", {ATTR_ENTITY_ID: LOCK_1}, blocking=True)
    await wait_for(lambda: _state(hass, DOOR_1) == STATE_ON, what="door opens")
    client.behaviour.refuse = "door blocked"
    with pytest.raises(HomeAssistantError, match="door blocked"):
        await hass.services.async_call(LOCK_DOMAIN, "lock", {ATTR_ENTITY_ID: LOCK_1}, blocking=True)
    # LwM2M's lock status knows locked and unlocked; "open" is the door's own status.
    assert _state(hass, LOCK_1) == LockState.UNLOCKED

    # The device's diagnostics: its outcomes, registration and objects, address redacted.
    device = registry_device(hass, ENTRY_ID, "locker1")
    assert device is not None
    diagnostics = await get_diagnostics_for_device(hass, hass_client, entry, device)
    outcomes = [o["outcome"] for o in diagnostics["command_health"]["recent"]]
    assert outcomes == ["confirmed", "confirmed", "rejected"]
    registration = diagnostics["protocol"]
    assert registration["registered"] is True
    assert registration["address"] == "**REDACTED**"
    assert any(path.startswith("/10359/") for path in registration["objects"]), registration
    assert registration["observing"]
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_ask_accept_then_remembered_across_a_restart(
    hass: HomeAssistant, port: int, start_client: StartClient
) -> None:
    entry = lwm2m_entry(port, ADMISSION_ASK)
    await setup_entry(hass, entry)
    client = await start_client()
    await wait_for(lambda: bool(_pending_flows(hass)), what="a discovered device")
    flow = _pending_flows(hass)[0]
    assert flow["context"]["unique_id"] == pending_device_unique_id(ENTRY_ID, "locker1")
    await asyncio.sleep(0.3)
    assert _state(hass, LOCK_1) is None  # nothing until accepted
    assert client.received == []
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "device_accepted"
    await wait_for(lambda: _state(hass, LOCK_1) == LockState.LOCKED, what="accepted device")
    assert entry.options[CONF_ACCEPTED] == ["locker1"]
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    client.trigger_update()  # the restarted server forgot it: 4.04, and it registers again
    await wait_for(lambda: _state(hass, LOCK_1) == LockState.LOCKED, timeout=8)
    assert _pending_flows(hass) == []
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_ignored_device_stays_out(
    hass: HomeAssistant, port: int, start_client: StartClient
) -> None:
    entry = lwm2m_entry(port, ADMISSION_ASK)
    await setup_entry(hass, entry)
    client = await start_client()
    await wait_for(lambda: bool(_pending_flows(hass)))
    flow = _pending_flows(hass)[0]
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": config_entries.SOURCE_IGNORE},
        data={"unique_id": flow["context"]["unique_id"], "title": "locker1"},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    client.trigger_update()
    await wait_for(
        lambda: client.registration_id is not None and client.registrations[-1] is not None
    )
    await asyncio.sleep(0.5)
    assert _pending_flows(hass) == []
    assert _state(hass, LOCK_1) is None
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_third_party_registration_waits_for_acceptance(
    hass: HomeAssistant, port: int
) -> None:
    """coap-client-notls registers by hand-written link format; it shows up as discovered."""
    entry = lwm2m_entry(port, ADMISSION_ASK)
    await setup_entry(hass, entry)
    process = await asyncio.create_subprocess_exec(
        COAP_CLIENT,
        "-B",
        "3",
        "-m",
        "post",
        "-t",
        "40",
        "-e",
        '</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>,</3303/0>',
        f"coap://127.0.0.1:{port}/rd?ep=handmade&lt=60&lwm2m=1.1&b=U",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    await process.communicate()
    await wait_for(lambda: bool(_pending_flows(hass)))
    assert _pending_flows(hass)[0]["context"]["title_placeholders"]["name"] == "handmade"
    registration = entry.runtime_data.bridge.server.registrations.by_endpoint("handmade")
    assert registration is not None
    assert [str(p) for p in registration.objects.instance_paths()] == ["/1/0", "/3/0", "/3303/0"]
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_lifetime_expiry_makes_readings_unavailable(
    hass: HomeAssistant, port: int, start_client: StartClient
) -> None:
    entry = await _accept_all_hub(hass, port)
    client = await start_client(lifetime=1)
    await wait_for(lambda: _state(hass, TEMPERATURE) == "21.5")
    client.go_offline()
    await wait_for(lambda: _state(hass, TEMPERATURE) == STATE_UNAVAILABLE, timeout=8)
    assert _state(hass, LOCK_1) == STATE_UNKNOWN  # commands still reach IoT Bridge and fail
    with pytest.raises(HomeAssistantError, match="offline"):
        await hass.services.async_call(
            LOCK_DOMAIN, "unlock", {ATTR_ENTITY_ID: LOCK_1}, blocking=True
        )
    client.go_online()
    await wait_for(lambda: _state(hass, TEMPERATURE) == "21.5", timeout=8)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_unload_cancels_observations_on_the_wire(
    hass: HomeAssistant, port: int, start_client: StartClient
) -> None:
    entry = await _accept_all_hub(hass, port)
    client = await start_client(sensor_node())
    await wait_for(lambda: len(client.observations) >= 3, what="observations")
    bridge = entry.runtime_data.bridge
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert client.observations == []
    cancels = [r for r in client.received if r.observe == 1]
    assert cancels
    assert bridge.endpoints["sensor1"].observations == {}
    assert not bridge.connected
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", port))  # the server's port is free again


async def test_pending_device_is_still_pending_after_a_restart(
    hass: HomeAssistant, port: int, start_client: StartClient
) -> None:
    """Not accepted before a restart: still waiting afterwards, asked once, sent nothing."""
    entry = lwm2m_entry(port, ADMISSION_ASK)
    await setup_entry(hass, entry)
    client = await start_client()
    await wait_for(lambda: bool(_pending_flows(hass)), what="a discovered device")
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    registrations = len(client.registrations)
    client.trigger_update()  # 4.04 from the restarted server, then a new Register
    await wait_for(
        lambda: any(
            event.operation == "register" and event.code == "2.01"
            for event in client.registrations[registrations:]
        ),
        what="registration with the restarted server",
    )
    await asyncio.sleep(0.3)
    bridge = entry.runtime_data.bridge
    assert bridge.endpoints["locker1"].admission.value == "pending"
    assert [f["context"]["unique_id"] for f in _pending_flows(hass)] == [
        pending_device_unique_id(ENTRY_ID, "locker1")
    ]
    assert CONF_ACCEPTED not in entry.options
    assert _state(hass, LOCK_1) is None
    assert client.received == []  # still nothing beyond the answers to its registrations
    result = await hass.config_entries.flow.async_configure(_pending_flows(hass)[0]["flow_id"], {})
    assert result["reason"] == "device_accepted"
    await wait_for(lambda: _state(hass, LOCK_1) == LockState.LOCKED, what="accepted device")
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_update_with_new_objects_adds_and_removes_entities(
    hass: HomeAssistant, port: int, start_client: StartClient, entity_registry: er.EntityRegistry
) -> None:
    entry = await _accept_all_hub(hass, port)
    client = await start_client()
    door_3 = "binary_sensor.locker1_door_3"
    await wait_for(lambda: _state(hass, door_3) == STATE_OFF, what="door 3")
    client.tree.delete(LwM2MPath(10351, 2))  # the compartment is gone...
    client.tree.create(LwM2MPath(31024, 0), {})  # ...and a vendor object came
    client.trigger_update()
    vendor = "sensor.locker1_object_31024_0_resource_0"
    await wait_for(lambda: _state(hass, vendor) == "0", what="entity of the new instance")
    await wait_for(lambda: entity_registry.async_get(door_3) is None, what="door 3 removed")
    assert _state(hass, door_3) is None
    assert _state(hass, DOOR_1) == STATE_OFF  # the others stay
    assert _state(hass, TEMPERATURE) == "21.5"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_deregister_makes_readings_unavailable(
    hass: HomeAssistant, port: int, start_client: StartClient
) -> None:
    entry = await _accept_all_hub(hass, port)
    client = await start_client()
    await wait_for(lambda: _state(hass, TEMPERATURE) == "21.5")
    await client.stop()  # De-register (DELETE /rd/<id>)
    assert client.registrations[-1].operation == "deregister"
    assert client.registrations[-1].code == "2.02"
    await wait_for(lambda: _state(hass, TEMPERATURE) == STATE_UNAVAILABLE, what="unavailable")
    assert _state(hass, DOOR_1) == STATE_UNAVAILABLE
    await client.start()  # and back with its next Register
    await wait_for(lambda: _state(hass, TEMPERATURE) == "21.5", what="back")
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_non_confirmable_notifications_reach_the_entity(
    hass: HomeAssistant, port: int, start_client: StartClient
) -> None:
    entry = await _accept_all_hub(hass, port)
    client = await start_client(behaviour=Lwm2mBehaviour(notify_confirmable=False))
    await wait_for(lambda: _state(hass, TEMPERATURE) == "21.5")
    client.publish_state({"temperature": 18.5})
    await wait_for(lambda: _state(hass, TEMPERATURE) == "18.5", what="NON notification")
    sent = [n for n in client.notifications if n.path == "/3303/0"]
    assert sent
    assert not any(n.confirmable for n in sent)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_malformed_payloads_are_logged_once_and_dropped(
    hass: HomeAssistant,
    port: int,
    start_client: StartClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A read answer and notifications that do not decode: one warning for the device,
    nothing applied, and the next good notification works."""
    entry = await _accept_all_hub(hass, port)
    # The first read answer of the setup (the Device object) is broken.
    client = await start_client(behaviour=Lwm2mBehaviour(corrupt_payloads=1))
    await wait_for(lambda: _state(hass, TEMPERATURE) == "21.5")
    client.behaviour.corrupt_payloads = 2
    for temperature in (30.0, 31.0):
        sent = len(client.notifications)
        client.publish_state({"temperature": temperature})
        await wait_for(lambda sent=sent: len(client.notifications) > sent, what="notification")
    await asyncio.sleep(0.2)
    assert _state(hass, TEMPERATURE) == "21.5"  # dropped, not applied
    client.publish_state({"temperature": 32.0})
    await wait_for(lambda: _state(hass, TEMPERATURE) == "32.0", what="a good notification")
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelname == "WARNING" and "dropped a payload" in r.getMessage()
    ]
    assert len(warnings) == 2, warnings  # the broken read; then the run of notifications
    assert all(w.startswith("LwM2M client locker1: dropped a payload") for w in warnings)
    assert entry.runtime_data.bridge.rejects.counts["payload"] == 3
    assert await hass.config_entries.async_unload(entry.entry_id)


def _pending_flows(hass: HomeAssistant) -> list[Any]:
    return [
        flow
        for flow in hass.config_entries.flow.async_progress_by_handler(DOMAIN)
        if flow["context"].get("source") == config_entries.SOURCE_INTEGRATION_DISCOVERY
    ]
