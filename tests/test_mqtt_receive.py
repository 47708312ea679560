"""The lean MQTT receive path (core/mqtt/receive.py) on a real socket, fed by hand-made packets:
packets cut at every byte, many in one read, QoS 1 acknowledged, properties decoded only
when read, a payload larger than one read, and a malformed packet ending the connection."""

from __future__ import annotations

import socket
from collections.abc import Generator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from custom_components.iot_bridge.core.mqtt.receive import Inbound, LeanReceiver

pytestmark = pytest.mark.usefixtures("socket_enabled")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def publish(
    topic: str,
    payload: bytes,
    *,
    qos: int = 0,
    mid: int = 0,
    props: bytes = b"",
    retain: bool = False,
) -> bytes:
    """An MQTT 5 PUBLISH packet."""
    body = len(topic.encode()).to_bytes(2) + topic.encode()
    if qos:
        body += mid.to_bytes(2)
    body += _varint(len(props)) + props + payload
    return bytes([0x30 | qos << 1 | int(retain)]) + _varint(len(body)) + body


class Wire:
    """A paho client with the lean receive path on one end of a socket pair; we are the broker."""

    def __init__(self) -> None:
        self.received: list[Inbound] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        LeanReceiver.install(self.client, self.received.append)
        self.ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        self.client._sock = theirs
        self.ours.settimeout(2)

    def feed(self, data: bytes) -> MQTTErrorCode:
        self.ours.sendall(data)
        return self.client.loop_read()

    def close(self) -> None:
        self.ours.close()
        if self.client._sock is not None:
            self.client._sock.close()


@pytest.fixture
def wire() -> Generator[Wire]:
    wire = Wire()
    yield wire
    wire.close()


def test_packets_cut_at_every_byte_arrive_whole_and_in_order(wire: Wire) -> None:
    correlation = b"cmd-1"
    props = b"\x09" + len(correlation).to_bytes(2) + correlation  # Correlation Data
    stream = (
        publish("p/dev1/state", b'{"t": 1}')
        + publish("p/dev2/state", b'{"t": 2}', retain=True)
        + publish("p/_bridge/x/reply", b'{"id": "cmd-1"}', qos=1, mid=7, props=props)
    )
    for index in range(len(stream)):
        assert wire.feed(stream[index : index + 1]) == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert [(m.topic, m.payload, m.retain, m.qos) for m in wire.received] == [
        ("p/dev1/state", b'{"t": 1}', False, 0),
        ("p/dev2/state", b'{"t": 2}', True, 0),
        ("p/_bridge/x/reply", b'{"id": "cmd-1"}', False, 1),
    ]
    assert wire.received[0].properties is None  # none sent, none decoded
    assert wire.received[2].properties.CorrelationData == correlation  # type: ignore[union-attr]
    # The QoS 1 message is acknowledged: PUBACK for message id 7.
    wire.client.loop_write()
    assert wire.ours.recv(16)[:4] == b"\x40\x02\x00\x07"


def test_many_packets_in_one_read_and_one_larger_than_a_read(wire: Wire) -> None:
    big = b"x" * 200_000
    stream = b"".join(publish(f"p/d{i}/state", b"{}") for i in range(500))
    assert wire.feed(stream + publish("p/big/state", big)) == MQTTErrorCode.MQTT_ERR_SUCCESS
    while len(wire.received) < 501:  # more than one pass is allowed for 200 KB
        assert wire.client.loop_read() == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert [m.topic for m in wire.received[:500]] == [f"p/d{i}/state" for i in range(500)]
    assert wire.received[500].payload == big


def test_malformed_publish_ends_the_connection(
    wire: Wire, caplog: pytest.LogCaptureFixture
) -> None:
    # Topic length 200 in a 4-byte body.
    rc = wire.feed(b"\x30\x04\x00\xc8ab")
    assert rc != MQTTErrorCode.MQTT_ERR_SUCCESS
    assert not wire.received
    assert "Malformed packet from the MQTT broker" in caplog.text


def test_a_paho_without_the_internals_keeps_its_own_path() -> None:
    """If a paho release drops an internal the lean path needs, the client stays paho's."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    del client._manual_ack
    assert not LeanReceiver.install(client, lambda _message: None)
    assert type(client) is mqtt.Client
    assert LeanReceiver.install(
        mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5), lambda _message: None
    )
