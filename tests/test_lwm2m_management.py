"""LwM2M device management and queue mode through Home Assistant, against the project's
simulated client over real UDP: reboot, lifetime and last seen, the repair issue of a
lapsed registration, and requests that wait for a sleeping client (or expire)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncGenerator, Callable
from datetime import timedelta
from typing import Any

import pytest
from homeassistant.components.lock import DOMAIN as LOCK_DOMAIN
from homeassistant.components.lock.const import LockState
from homeassistant.const import ATTR_ENTITY_ID, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import issue_registry as ir
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.iot_bridge import bridges
from custom_components.iot_bridge.const import DOMAIN
from custom_components.iot_bridge.core.lwm2m.bridge import Lwm2mBridge
from iot_bridge_sim.devices import parcel_locker
from iot_bridge_sim.lwm2m import Lwm2mClient, Lwm2mOptions

from .common import registry_device, setup_entry, wait_for
from .test_lwm2m_hub import ENTRY_ID, LOCK_1, TEMPERATURE, _state, lwm2m_entry

pytestmark = pytest.mark.usefixtures("socket_enabled")

LIFETIME = "sensor.locker1_registration_lifetime"
LAST_SEEN = "sensor.locker1_last_seen"
QUEUED = "sensor.locker1_requests_waiting_for_wake_up"
REBOOT = "button.locker1_reboot"
# How long the server believes a queue-mode client listens after it sent something.
AWAKE = 0.8

StartLocker = Callable[..., Any]


@pytest.fixture
async def hub(
    hass: HomeAssistant, unused_udp_port: int, monkeypatch: pytest.MonkeyPatch
) -> MockConfigEntry:
    """An accept-all LwM2M server entry whose queue-mode clients listen AWAKE seconds."""
    settings_from = bridges.lwm2m_settings_from

    def short_awake(data: Any, options: Any) -> Any:
        return dataclasses.replace(settings_from(data, options), queue_awake=AWAKE)

    monkeypatch.setattr(bridges, "lwm2m_settings_from", short_awake)
    entry = lwm2m_entry(unused_udp_port)
    await setup_entry(hass, entry)
    return entry


@pytest.fixture
async def start_locker(unused_udp_port: int) -> AsyncGenerator[StartLocker]:
    clients: list[Lwm2mClient] = []

    async def start(**options: Any) -> Lwm2mClient:
        client = Lwm2mClient(
            parcel_locker(), Lwm2mOptions(server=f"coap://127.0.0.1:{unused_udp_port}", **options)
        )
        await client.start()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.stop()


def _bridge(entry: MockConfigEntry) -> Lwm2mBridge:
    bridge = entry.runtime_data.bridge
    assert isinstance(bridge, Lwm2mBridge)
    return bridge


async def _asleep(entry: MockConfigEntry) -> None:
    endpoint = _bridge(entry).endpoints["locker1"]
    await wait_for(lambda: not endpoint.awake(time.monotonic()), what="the client to sleep")


def _executes(client: Lwm2mClient, path: str) -> list[float]:
    return [
        r.received_at
        for r in client.received
        if r.method == "POST" and r.path == path and r.handling in ("served", "retransmission")
    ]


async def _operate(hass: HomeAssistant, action: str, **data: Any) -> dict[str, Any]:
    device = registry_device(hass, ENTRY_ID, "locker1")
    assert device is not None
    response = await hass.services.async_call(
        DOMAIN,
        "send_command",
        {"device_id": device.id, "action": action, **data},
        blocking=True,
        return_response=True,
    )
    assert response is not None
    return dict(response)


# -- device management ---------------------------------------------------------------------


async def test_lifetime_last_seen_and_reboot_button(
    hass: HomeAssistant, hub: MockConfigEntry, start_locker: StartLocker
) -> None:
    client = await start_locker(lifetime=45)
    await wait_for(lambda: _state(hass, LIFETIME) == "45", what="lifetime sensor")
    entry = er.async_get(hass).async_get(LAST_SEEN)
    assert entry is not None
    assert entry.disabled_by is er.RegistryEntryDisabler.INTEGRATION
    assert _bridge(hub).devices["locker1"].state["last_seen"].endswith("+00:00")
    registrations = len(client.registrations)
    await hass.services.async_call("button", "press", {ATTR_ENTITY_ID: REBOOT}, blocking=True)
    assert _executes(client, "/3/0/4")
    # It reboots: a new Register, and its entities are live again.
    await wait_for(
        lambda: any(e.operation == "register" for e in client.registrations[registrations:]),
        what="the re-registration after the reboot",
    )
    await wait_for(lambda: _state(hass, LOCK_1) == LockState.LOCKED, what="lock after reboot")


async def test_lapsed_registration_raises_a_repair_issue_until_it_registers(
    hass: HomeAssistant, hub: MockConfigEntry, start_locker: StartLocker
) -> None:
    # The user enabled "Last seen" (it is disabled by default).
    er.async_get(hass).async_get_or_create(
        "sensor",
        DOMAIN,
        f"{ENTRY_ID}_locker1_last_seen",
        suggested_object_id="locker1_last_seen",
        config_entry=hub,
    )
    client = await start_locker(lifetime=1)
    await wait_for(lambda: _state(hass, LOCK_1) == LockState.LOCKED)
    assert _state(hass, LAST_SEEN) not in (None, "unknown", STATE_UNAVAILABLE)
    issues = ir.async_get(hass)
    issue_id = f"registration_lapsed_{ENTRY_ID}_locker1"
    client.go_offline()
    await wait_for(lambda: _state(hass, TEMPERATURE) == STATE_UNAVAILABLE, timeout=8)
    last_seen = _state(hass, LAST_SEEN)  # still shown: when the device was last heard of
    assert last_seen is not None
    assert dt_util.parse_datetime(last_seen) is not None
    # Travel in time: the lapse happened 23 hours ago, then a day and a minute ago.
    endpoint = _bridge(hub).endpoints["locker1"]
    assert endpoint.lapsed_at is not None
    endpoint.lapsed_at -= timedelta(hours=23).total_seconds()
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(minutes=11))
    await hass.async_block_till_done()
    assert issues.async_get_issue(DOMAIN, issue_id) is None  # not a day yet
    endpoint.lapsed_at -= timedelta(hours=1, minutes=1).total_seconds()
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(minutes=22))
    await hass.async_block_till_done()
    issue = issues.async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_key == "registration_lapsed"
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["device"] == "locker1"
    client.go_online()
    await wait_for(lambda: _state(hass, TEMPERATURE) == "21.5", timeout=8)
    assert issues.async_get_issue(DOMAIN, issue_id) is None


# -- queue mode ------------------------------------------------------------------------------


async def test_queued_unlock_waits_for_the_wake_up_and_shows_it(
    hass: HomeAssistant, hub: MockConfigEntry, start_locker: StartLocker
) -> None:
    client = await start_locker(queue_mode=True, queue_window=AWAKE, wake_interval=60)
    await wait_for(lambda: _state(hass, LOCK_1) == LockState.LOCKED)
    assert _state(hass, QUEUED) == "0"
    await _asleep(hub)
    unlock = hass.async_create_task(
        hass.services.async_call(LOCK_DOMAIN, "unlock", {ATTR_ENTITY_ID: LOCK_1}, blocking=True)
    )
    await wait_for(lambda: _state(hass, QUEUED) == "1", what="the request to be queued")
    assert _state(hass, LOCK_1) == LockState.UNLOCKING
    assert not _executes(client, "/10359/0/100")  # nothing sent to the sleeping client
    client.trigger_update()  # it wakes: the request goes out in its listening window
    await asyncio.wait_for(unlock, 5)
    assert _state(hass, LOCK_1) == LockState.UNLOCKED
    assert _state(hass, QUEUED) == "0"
    posts = [r for r in client.received if r.method == "POST" and r.path == "/10359/0/100"]
    assert [r.handling for r in posts] == ["served"]  # not sent again after the move

    # Read and Write wait for the wake-up the same way.
    await _asleep(hub)
    read = hass.async_create_task(_operate(hass, "read", params={"path": "/3/0/0"}))
    await wait_for(lambda: _state(hass, QUEUED) == "1", what="the read to be queued")
    client.trigger_update()
    assert (await asyncio.wait_for(read, 5))["values"] == {"/3/0/0": "IoT Bridge demo"}
    await _asleep(hub)
    write = hass.async_create_task(_operate(hass, "write", params={"path": "/1/0/3", "value": 50}))
    await wait_for(lambda: _state(hass, QUEUED) == "1", what="the write to be queued")
    client.trigger_update()
    assert (await asyncio.wait_for(write, 5))["code"] == "2.04"


async def test_queued_request_expires_and_is_never_delivered_late(
    hass: HomeAssistant, hub: MockConfigEntry, start_locker: StartLocker
) -> None:
    client = await start_locker(queue_mode=True, queue_window=AWAKE, wake_interval=60)
    await wait_for(lambda: _state(hass, LOCK_1) == LockState.LOCKED)
    await _asleep(hub)
    with pytest.raises(HomeAssistantError, match="device asleep"):
        await hass.services.async_call(LOCK_DOMAIN, "open", {ATTR_ENTITY_ID: LOCK_1}, blocking=True)
    assert _state(hass, LOCK_1) == LockState.LOCKED  # back to the last confirmed state
    with pytest.raises(HomeAssistantError, match="device asleep"):
        await _operate(
            hass, "execute", params={"path": "/10359/1/100", "arguments": "0"}, deadline=0.5
        )
    assert _state(hass, QUEUED) == "0"
    expired_at = time.time()
    # It wakes after the deadlines: a read queued now goes out, the expired requests never.
    read = hass.async_create_task(_operate(hass, "read", params={"path": "/10359/1/50"}))
    await wait_for(lambda: _state(hass, QUEUED) == "1", what="the read to be queued")
    client.trigger_update()
    assert (await asyncio.wait_for(read, 5))["values"] == {"/10359/1/50": True}
    assert [r for r in client.received if r.received_at > expired_at and r.method == "POST"] == []
    assert not _executes(client, "/10351/0/100")
    assert not _executes(client, "/10359/1/100")
    assert client.executed == []


# -- confirmed commands through Home Assistant ---------------------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "reason", "shown"),
    [
        ({"refuse": "door blocked"}, r"door blocked", LockState.LOCKED),
        ({"jam": {"door1_lock"}}, r"accepted, but /10351/0/50 stayed", LockState.LOCKED),
        # It acted without answering: the lock shows what the device then reported.
        ({"silent": True}, r"did not confirm open of Door 1 in time", LockState.UNLOCKED),
    ],
    ids=["refused", "status-never-matches", "silent"],
)
async def test_lock_open_failures_name_device_and_reason(
    hass: HomeAssistant,
    hub: MockConfigEntry,
    start_locker: StartLocker,
    behaviour: dict[str, Any],
    reason: str,
    shown: LockState,
) -> None:
    client = await start_locker()
    await wait_for(lambda: _state(hass, LOCK_1) == LockState.LOCKED)
    for name, value in behaviour.items():
        setattr(client.behaviour, name, value)
    with pytest.raises(HomeAssistantError, match=rf"^locker1 .*{reason}") as failure:
        await hass.services.async_call(LOCK_DOMAIN, "open", {ATTR_ENTITY_ID: LOCK_1}, blocking=True)
    assert failure.value.translation_key is not None
    assert _state(hass, LOCK_1) == shown
    # An Execute goes out once: CoAP retransmits it, the client executes it at most once.
    assert len([e for e in client.executed if e.path == "/10351/0/100"]) <= 1


async def test_retransmitted_execute_runs_once(
    hass: HomeAssistant, hub: MockConfigEntry, start_locker: StartLocker
) -> None:
    client = await start_locker()
    await wait_for(lambda: _state(hass, LOCK_1) == LockState.LOCKED)
    client.behaviour.drop_first = 1  # the first transmission is lost
    await hass.services.async_call(LOCK_DOMAIN, "unlock", {ATTR_ENTITY_ID: LOCK_1}, blocking=True)
    assert _state(hass, LOCK_1) == LockState.UNLOCKED
    posts = [r for r in client.received if r.method == "POST" and r.path == "/10359/0/100"]
    assert [r.handling for r in posts] == ["dropped", "served"]
    assert len({r.message_id for r in posts}) == 1  # a retransmission, not a new request
    assert [e.path for e in client.executed] == ["/10359/0/100"]


@pytest.mark.parametrize("register", [False, True], ids=["update", "register"])
async def test_new_address_in_the_middle_of_a_command_executes_once(
    hass: HomeAssistant, hub: MockConfigEntry, start_locker: StartLocker, register: bool
) -> None:
    client = await start_locker()
    await wait_for(lambda: _state(hass, LOCK_1) == LockState.LOCKED)
    client.behaviour.status_delay = 0.6  # accepted at once, unlocked a little later
    old_port = client.port
    unlock = hass.async_create_task(
        hass.services.async_call(LOCK_DOMAIN, "unlock", {ATTR_ENTITY_ID: LOCK_1}, blocking=True)
    )
    await wait_for(lambda: bool(_executes(client, "/10359/0/100")), what="the Execute")
    await client.rebind(register=register)  # NAT rebinding: a new source port
    assert client.port != old_port
    await asyncio.wait_for(unlock, 5)  # the status seen at the new address confirms it
    assert _state(hass, LOCK_1) == LockState.UNLOCKED
    assert [e.path for e in client.executed] == ["/10359/0/100"]
    posts = [r for r in client.received if r.method == "POST" and r.path == "/10359/0/100"]
    assert [r.handling for r in posts] == ["served"]  # not sent again after the move
