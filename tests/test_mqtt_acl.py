"""The MQTT profile's mosquitto ACL, run against a real mosquitto exactly as documented.

The ACL text is read from docs/protocols/mqtt.md itself, so the document cannot drift from
what is tested: a device works end to end, and another authenticated device can neither
take over its id (retained config, availability) nor read its commands to answer them.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import AsyncGenerator, Generator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from homeassistant.components.lock import DOMAIN as LOCK_DOMAIN
from homeassistant.components.lock.const import LockState
from homeassistant.const import ATTR_ENTITY_ID, STATE_ON
from homeassistant.core import HomeAssistant
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pytest_homeassistant_custom_component.common import MockConfigEntry

from iot_bridge_sim.devices import parcel_locker
from iot_bridge_sim.mqtt import MqttDeviceSimulator

from .common import mqtt_entry, registry_device, setup_entry, wait_for
from .mosquitto import Broker

pytestmark = pytest.mark.usefixtures("socket_enabled")

DOC = Path(__file__).resolve().parents[1] / "docs" / "protocols" / "mqtt.md"
PREFIX = "iot_bridge"  # the prefix and the user the documented ACL names
BRIDGE_USER = "iot-bridge"
CLIENT_ID = "iot-bridge-acl-test"
PASSWORDS = {BRIDGE_USER: "bridge-pw", "locker1": "locker-pw", "intruder": "intruder-pw"}
ENTRY_ID = "01JACLENTRY00000000000000"
LOCK_2 = "lock.parcel_locker_door_2"
CONNECTIVITY = "binary_sensor.parcel_locker_connectivity"
NOT_AUTHORIZED = 135  # MQTT 5 reason code 0x87


def _doc_blocks() -> list[tuple[str, str]]:
    """(text before, body) of each fenced block of the MQTT profile."""
    text = DOC.read_text(encoding="utf-8")
    return [
        (text[: match.start()], match.group(1))
        for match in re.finditer(r"```text\n(.*?)```", text, re.DOTALL)
    ]


def documented_acl() -> str:
    """The ACL block under the marker that names this test."""
    for before, body in _doc_blocks():
        if before.rstrip().endswith("-->") and "test_mqtt_acl.py" in before.splitlines()[-1]:
            return body
    raise AssertionError("no ACL block marked for tests/test_mqtt_acl.py in the profile")


def documented_conf() -> list[str]:
    """The mosquitto.conf lines of the profile's ACL section."""
    for before, body in _doc_blocks():
        if "`mosquitto.conf`" in before.splitlines()[-2]:
            return body.splitlines()
    raise AssertionError("no mosquitto.conf block in the profile")


def test_documented_conf_needs_passwords_and_the_acl() -> None:
    """The fixture below applies these three settings (paths of its own)."""
    settings = {line.split()[0]: line.split()[1:] for line in documented_conf()}
    assert settings["allow_anonymous"] == ["false"]
    assert "password_file" in settings
    assert "acl_file" in settings


@pytest.fixture
def acl_broker() -> Generator[Broker]:
    """mosquitto with users, a password file and the profile's ACL file, verbatim."""
    broker = Broker(users=PASSWORDS, acl=documented_acl())
    broker.start()
    yield broker
    broker.close()


class Client:
    """A plain MQTT 5 client that records the broker's reason codes and what it receives."""

    def __init__(self, broker: Broker, user: str) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"acl-{user}", protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(user, PASSWORDS[user])
        self.acks: dict[int, list[ReasonCode]] = {}
        self.received: list[mqtt.MQTTMessage] = []
        self._acked = threading.Condition()
        self.client.on_publish = self._on_ack
        self.client.on_subscribe = self._on_ack
        self.client.on_message = lambda _c, _u, message: self.received.append(message)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_ack(self, _client: Any, _userdata: Any, mid: int, codes: Any, _props: Any) -> None:
        with self._acked:
            self.acks[mid] = codes if isinstance(codes, list) else [codes]
            self._acked.notify_all()

    def _wait(self, mid: int) -> list[int]:
        with self._acked:
            assert self._acked.wait_for(lambda: mid in self.acks, timeout=5), "no ack"
            return [code.value for code in self.acks[mid]]

    def publish(
        self, topic: str, payload: str, *, retain: bool = False, props: Properties | None = None
    ) -> int:
        """Publish at QoS 1; the PUBACK's reason code."""
        info = self.client.publish(topic, payload, qos=1, retain=retain, properties=props)
        return self._wait(info.mid)[0]

    def subscribe(self, topic: str) -> int:
        """Subscribe at QoS 1; the SUBACK's reason code."""
        _, mid = self.client.subscribe(topic, qos=1)
        assert mid is not None
        return self._wait(mid)[0]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
async def hub(hass: HomeAssistant, acl_broker: Broker) -> MockConfigEntry:
    """IoT Bridge logged in as the ACL's user."""
    entry = mqtt_entry(
        acl_broker,
        entry_id=ENTRY_ID,
        prefix=PREFIX,
        client_id=CLIENT_ID,
        username=BRIDGE_USER,
        password=PASSWORDS[BRIDGE_USER],
    )
    await setup_entry(hass, entry)
    return entry


@pytest.fixture
async def victim(
    hass: HomeAssistant, acl_broker: Broker, hub: MockConfigEntry
) -> AsyncGenerator[MqttDeviceSimulator]:
    """The parcel locker, logged in with its device id as username, discovered."""
    sim = MqttDeviceSimulator(
        parcel_locker("locker1"),
        port=acl_broker.port,
        prefix=PREFIX,
        username="locker1",
        password=PASSWORDS["locker1"],
        printer=logging.getLogger("simulator").info,
    )
    await hass.async_add_executor_job(sim.start)
    await wait_for(lambda: _state(hass, LOCK_2) == LockState.LOCKED, what="locker entities")
    yield sim
    await hass.async_add_executor_job(sim.stop)


@pytest.fixture
async def intruder(hass: HomeAssistant, acl_broker: Broker) -> AsyncGenerator[Client]:
    """Another device, properly authenticated as itself."""
    client = await hass.async_add_executor_job(Client, acl_broker, "intruder")
    yield client
    await hass.async_add_executor_job(client.close)


def _state(hass: HomeAssistant, entity_id: str) -> str | None:
    state = hass.states.get(entity_id)
    return None if state is None else state.state


async def _lock(hass: HomeAssistant, action: str) -> None:
    await hass.services.async_call(LOCK_DOMAIN, action, {ATTR_ENTITY_ID: LOCK_2}, blocking=True)


async def test_device_works_end_to_end_under_the_acl(
    hass: HomeAssistant, hub: MockConfigEntry, victim: MqttDeviceSimulator
) -> None:
    """Discovered, state shown, a command confirmed: the ACL lets the legitimate flow pass."""
    device = registry_device(hass, ENTRY_ID, "locker1")
    assert device is not None
    assert device.name == "Parcel locker"
    assert _state(hass, CONNECTIVITY) == STATE_ON
    await _lock(hass, "open")
    assert _state(hass, LOCK_2) == LockState.OPEN
    assert len(victim.executed) == 1


async def test_another_device_cannot_take_over_or_answer(
    hass: HomeAssistant,
    hub: MockConfigEntry,
    victim: MqttDeviceSimulator,
    intruder: Client,
) -> None:
    """The broker refuses another device's config, availability and command subscription
    under the victim's id; it never sees the victim's commands, so it cannot answer them."""
    config = json.dumps(
        {
            "id": "locker1",
            "name": "Hijacked",
            "capabilities": [{"kind": "lock", "key": "door2_lock", "name": "Door 2"}],
        }
    )
    run = hass.async_add_executor_job
    assert await run(lambda: intruder.publish(f"{PREFIX}/locker1/config", config, retain=True)) == (
        NOT_AUTHORIZED
    )
    assert await run(
        lambda: intruder.publish(f"{PREFIX}/locker1/availability", "offline", retain=True)
    ) == (NOT_AUTHORIZED)
    # mosquitto grants subscriptions and checks read access per message: nothing arrives.
    assert await run(intruder.subscribe, f"{PREFIX}/locker1/command") in (0, 1)
    # Its own topics are its to use: the ACL is per device, not a blanket refusal.
    assert await run(lambda: intruder.publish(f"{PREFIX}/intruder/state", "{}")) == 0
    assert await run(intruder.subscribe, f"{PREFIX}/#") in (0, 1)

    await _lock(hass, "open")  # confirmed by the real device
    assert _state(hass, LOCK_2) == LockState.OPEN
    assert [m.topic for m in intruder.received if m.topic.endswith("/command")] == []

    # The reply topic is shared, so an answer can be published there; without the id of a
    # pending command it is ignored (counted as foreign), and the victim is unaffected.
    engine = hub.runtime_data.engine
    foreign = engine.stats["foreign"]
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.CorrelationData = b"01JGUESSEDID0000000000000"
    forged = json.dumps({"id": "01JGUESSEDID0000000000000", "status": "error", "reason": "x"})
    reply_topic = f"{PREFIX}/_bridge/{CLIENT_ID}/reply"
    assert await run(lambda: intruder.publish(reply_topic, forged, props=props)) == 0
    await wait_for(lambda: engine.stats["foreign"] == foreign + 1, what="forged answer ignored")
    await _lock(hass, "lock")
    assert _state(hass, LOCK_2) == LockState.LOCKED

    device = registry_device(hass, ENTRY_ID, "locker1")
    assert device is not None
    assert device.name == "Parcel locker"
    assert _state(hass, CONNECTIVITY) == STATE_ON
    assert len(victim.executed) == 2
