"""A lean receive path for paho-mqtt: many packets per readable event, no per-message objects.

paho reads a packet with three `recv` calls (command byte, length, body), builds an
`MQTTMessage`, decodes MQTT 5 properties into a `Properties` object (about a third of its
cost for a small message, even when there are none), logs, takes two locks to find the
callback, and aiomqtt then wraps the result in a `Message` of its own. For a sensor that
sends one value per message that was most of IoT Bridge's work per state update.

`LeanReceiver` keeps paho for everything else (connect, subscribe, publish, keepalive,
QoS 2, TLS) and replaces only how bytes become PUBLISH messages: one `recv` of up to
16 KiB per pass, every complete packet in the buffer handled in that pass, QoS 0 and 1
PUBLISH packets handed straight to a callback as an `Inbound` (slots, no copies beyond
the payload), properties decoded only when a handler reads them (the reply topic's
Correlation Data; state topics never look). Every other packet goes to paho's own handler.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

_LOGGER = logging.getLogger(__name__)

# One read per readable event; the event loop calls again while the socket has more. 16 KiB
# is ~800 one-value state messages, 10-40 ms of work: a burst shares the loop with
# everything else in Home Assistant.
_READ_SIZE = 16_384
# What the lean path uses of paho's client besides its public API.
_PAHO_INTERNALS = (
    "_sock",
    "_sock_recv",
    "_in_packet",
    "_packet_handle",
    "_send_puback",
    "_msgtime_mutex",
    "_last_msg_in",
    "_easy_log",
    "_manual_ack",
    "_protocol",
)
_PUBLISH = 0x30
_QOS_MASK = 0x06
_QOS2 = 0x04


class Inbound:
    """One received PUBLISH: topic, payload, QoS, retain flag, MQTT 5 properties on demand."""

    __slots__ = ("_properties", "_raw_properties", "payload", "qos", "retain", "topic")

    def __init__(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 0,
        retain: bool = False,
        raw_properties: bytes = b"",
        properties: Properties | None = None,
    ) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self._raw_properties = raw_properties
        self._properties = properties

    @property
    def properties(self) -> Properties | None:
        """MQTT 5 properties, decoded at first use; None when the message had none."""
        if self._properties is None and self._raw_properties:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.unpack(self._raw_properties)  # type: ignore[no-untyped-call]
            self._properties = properties
        return self._properties

    def __repr__(self) -> str:
        return f"Inbound({self.topic!r}, {len(self.payload)} bytes, retain={self.retain})"


InboundHandler = Callable[[Inbound], None]


def _variable_int(data: bytes | bytearray, pos: int, end: int) -> tuple[int, int] | None:
    """An MQTT Variable Byte Integer at `pos`: (value, position after it); None if cut off.

    Raises ValueError for more than four bytes (a protocol error).
    """
    value = 0
    shift = 0
    while pos < end:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 21:
            raise ValueError("variable byte integer longer than four bytes")
    return None


class LeanReceiver(mqtt.Client):
    """paho's client with `_packet_read` replaced (see the module's description).

    aiomqtt builds its paho client itself; `install` turns that instance into this class
    (it adds methods and three attributes, no other state).
    """

    _lean_deliver: InboundHandler
    _lean_buffer: bytearray
    _lean_sock: object

    @classmethod
    def install(cls, client: mqtt.Client, deliver: InboundHandler) -> bool:
        """Give `client` (not yet connected, MQTT 5) the lean receive path.

        It relies on paho's internals (checked with paho-mqtt 2.1.0): if a paho release
        lacks one of them the client keeps paho's own path (slower, same results) and this
        returns False.
        """
        missing = [name for name in _PAHO_INTERNALS if not hasattr(client, name)]
        if missing:
            _LOGGER.debug("paho-mqtt lacks %s: using its own receive path", ", ".join(missing))
            return False
        client.__class__ = cls
        lean: LeanReceiver = client  # type: ignore[assignment]
        lean._lean_deliver = deliver
        lean._lean_buffer = bytearray()
        lean._lean_sock = None
        return True

    def _packet_read(self) -> MQTTErrorCode:
        sock = self._sock
        if sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        if sock is not self._lean_sock:
            # A new connection: nothing from the old one may be parsed as its start.
            self._lean_sock = sock
            self._lean_buffer = bytearray()
        buffer = self._lean_buffer
        lost = False
        try:
            data = self._sock_recv(_READ_SIZE)
        except BlockingIOError:
            pass  # nothing new: what is buffered may still hold whole packets
        except OSError as err:
            self._easy_log(mqtt.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
            lost = True
        else:
            lost = not data  # end of stream: the broker closed the connection
            buffer += data
        rc = self._handle_buffered(buffer)
        with self._msgtime_mutex:
            self._last_msg_in = time.monotonic()
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return rc
        if lost:
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        # "No more for now": loop_read returns success and the event loop calls again.
        return MQTTErrorCode.MQTT_ERR_AGAIN

    def _handle_buffered(self, buffer: bytearray) -> MQTTErrorCode:
        """Handle every complete packet in `buffer`; keep a partial one for the next read."""
        pos = 0
        end = len(buffer)
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        v5 = self._protocol == mqtt.MQTTv5
        try:
            while end - pos >= 2:
                command = buffer[pos]
                length = _variable_int(buffer, pos + 1, end)
                if length is None:
                    break
                size, start = length
                if end - start < size:
                    break
                body = bytes(buffer[start : start + size])
                pos = start + size
                if v5 and command & 0xF0 == _PUBLISH and command & _QOS_MASK != _QOS2:
                    rc = self._handle_lean_publish(command, body)
                else:
                    rc = self._handle_with_paho(command, size, body)
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
        except ValueError as err:
            _LOGGER.warning("Malformed packet from the MQTT broker (%s); reconnecting", err)
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        del buffer[:pos]
        return rc

    def _handle_with_paho(self, command: int, size: int, body: bytes) -> MQTTErrorCode:
        self._in_packet = {
            "command": command,
            "have_remaining": 1,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": size,
            "packet": bytearray(body),
            "to_process": 0,
            "pos": 0,
        }
        rc = self._packet_handle()
        self._in_packet = {
            "command": 0,
            "have_remaining": 0,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": 0,
            "packet": bytearray(b""),
            "to_process": 0,
            "pos": 0,
        }
        return rc

    def _handle_lean_publish(self, command: int, body: bytes) -> MQTTErrorCode:
        end = len(body)
        if end < 2:
            raise ValueError("PUBLISH without a topic length")
        topic_end = 2 + int.from_bytes(body[:2])
        qos = (command & _QOS_MASK) >> 1
        pos = topic_end + (2 if qos else 0)
        if pos > end:
            raise ValueError("PUBLISH shorter than its topic")
        mid = int.from_bytes(body[topic_end:pos]) if qos else 0
        properties = _variable_int(body, pos, end)
        if properties is None or properties[0] + properties[1] > end:
            raise ValueError("PUBLISH properties cut off")
        payload_start = properties[1] + properties[0]
        try:
            topic = body[2:topic_end].decode()
        except UnicodeDecodeError:
            _LOGGER.warning(
                "Dropped a message whose topic is not valid UTF-8: %r", body[2:topic_end]
            )
        else:
            self._lean_deliver(
                Inbound(
                    topic,
                    body[payload_start:],
                    qos=qos,
                    retain=bool(command & 0x01),
                    raw_properties=body[pos:payload_start] if properties[0] else b"",
                )
            )
        if qos and not self._manual_ack:
            return self._send_puback(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS
