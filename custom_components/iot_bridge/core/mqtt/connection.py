"""One MQTT 5 connection to the user's broker, kept alive with backoff.

Built on aiomqtt (asyncio over paho-mqtt): it runs in the caller's event loop and
starts no thread of its own, so Home Assistant sees nothing lingering after unload.
Received messages take a shorter path than aiomqtt's (receive.py): they are handed to the
handlers as `Inbound` objects while the socket is read, many per event-loop pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt
from paho.mqtt.client import topic_matches_sub
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .receive import Inbound, LeanReceiver

_LOGGER = logging.getLogger(__name__)

# MQTT 5 CONNACK reason codes (and their 3.1.1 equivalents 4 and 5) that mean
# the broker refused the credentials rather than being unreachable.
_AUTH_REASON_CODES = frozenset({4, 5, 134, 135})
_CONNECT_TIMEOUT = 10.0
# Topics remembered with their handlers: three per device, so this covers ~20,000 devices
# (about 2 MiB at 15,000 topics). At 4,096 a fleet of 5,000 devices cleared the cache over
# and over and matched every message against every filter again.
_ROUTE_CACHE_SIZE = 65_536
# Nagle's algorithm meeting delayed ACKs costs ~40 ms per QoS 1 hop; our socket is ours to fix.
_NODELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
# MQTT 5 Receive Maximum: how many QoS 1/2 messages the broker may send us before our
# acknowledgements come back. A client that does not say gets mosquitto's in-flight window
# of 20; everything beyond waits in its queue of 1,000 (max_queued_messages) and the rest is
# dropped without a word. Subscribing to a fleet's retained topics is such a burst: with 5,000
# devices x 3 retained topics, only ~1,020 arrived. 65,535, the protocol's maximum, lets the
# broker send the whole burst (measured lossless with 15,000 retained messages and with a
# 10,000-message live burst to a consumer stalled for 3 s, mosquitto 2.0.11 defaults).
RECEIVE_MAXIMUM = 65535
# mosquitto's count of messages it dropped (for all clients), retained and refreshed every
# sys_interval (10 s by default). Other brokers may not have it, or deny it: then no warning.
BROKER_DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"
# Longest piece of a payload written to the debug log: a 16 KiB payload per line helps no one.
_LOG_PAYLOAD_CHARS = 200

MessageHandler = Callable[[Inbound], None]
ConnectionListener = Callable[[bool], None]


class MqttConnectError(Exception):
    """The broker could not be reached or refused the connection."""


class MqttAuthError(MqttConnectError):
    """The broker rejected the username or password."""


class MqttNotConnected(Exception):
    """A publish was attempted while the broker connection is down."""


class MqttLinkLost(MqttNotConnected):
    """The connection dropped while a publish waited for the broker's acknowledgement: the
    message may or may not have reached the broker."""


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """Where and how to connect."""

    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    keepalive: int = 60


@dataclass(frozen=True, slots=True)
class _Subscription:
    topic_filter: str
    handler: MessageHandler
    qos: int


def _direct_delivery(dispatch: MessageHandler) -> type[asyncio.Queue[aiomqtt.Message]]:
    """A queue class for aiomqtt that hands each message straight to `dispatch`.

    Only what the lean receive path leaves to paho (QoS 2, which our subscriptions never
    ask for) comes this way. aiomqtt's own queue would cost a task and an asyncio.wait per
    message; its iterator is still awaited, to learn of a disconnect.
    """

    class DirectDelivery(asyncio.Queue[aiomqtt.Message]):
        def put_nowait(self, item: aiomqtt.Message) -> None:
            payload = item.payload
            dispatch(
                Inbound(
                    item.topic.value,
                    payload if isinstance(payload, bytes) else str(payload).encode(),
                    qos=item.qos,
                    retain=item.retain,
                    properties=item.properties,
                )
            )

    return DirectDelivery


def _tls_context(settings: MqttSettings) -> ssl.SSLContext | None:
    """Build the TLS context; loads certificate files, so call it in an executor."""
    if not settings.tls:
        return None
    return ssl.create_default_context(cafile=settings.ca_file or None)


def _is_auth_failure(err: aiomqtt.MqttError) -> bool:
    code = getattr(err, "rc", None)
    value = getattr(code, "value", code)
    return isinstance(value, int) and value in _AUTH_REASON_CODES


class MqttConnection:
    """A resilient MQTT 5 client: subscriptions survive reconnects, handlers never kill it."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        on_connection_change: ConnectionListener | None = None,
        on_auth_failed: Callable[[], None] | None = None,
        reconnect_min: float = 1.0,
        reconnect_max: float = 60.0,
        role: str | None = None,
    ) -> None:
        self.settings = settings
        # A helper connection (role "command") reports its loss and return at info level:
        # the main connection already warns when the broker goes away.
        self._role = role
        self._on_connection_change = on_connection_change
        self._on_auth_failed = on_auth_failed
        self._auth_reported = False
        self._reconnect_min = reconnect_min
        self._reconnect_max = reconnect_max
        self._subscriptions: list[_Subscription] = []
        self._route_cache: dict[str, list[MessageHandler]] = {}
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        # Done when the current link drops: wakes publishes that wait for a PUBACK, which
        # aiomqtt itself would leave waiting until its own timeout.
        self._link_down: asyncio.Future[None] | None = None
        self._tls: ssl.SSLContext | None = None
        self.connected = False
        self.reconnects = 0
        self.last_error: str | None = None
        # The broker's drop count as last reported on this connection (None: not yet), and
        # how far it rose while we were connected.
        self._dropped_last: int | None = None
        self._dropped_warned = False
        self.broker_dropped = 0

    @classmethod
    async def probe(cls, settings: MqttSettings) -> None:
        """Connect once and disconnect: the config flow's connection test."""
        connection = cls(settings)
        client = await connection._connect()
        await _close_quietly(client)

    def add_subscription(
        self, topic_filter: str, handler: MessageHandler, qos: int = 1
    ) -> Callable[[], None]:
        """Register a handler before start(); it is subscribed on every connect."""
        subscription = _Subscription(topic_filter, handler, qos)
        self._subscriptions.append(subscription)
        self._route_cache.clear()

        def remove() -> None:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)
                self._route_cache.clear()

        return remove

    async def start(self) -> None:
        """Connect now (raising MqttConnectError/MqttAuthError) and keep the link alive."""
        client = await self._connect()
        self._client = client
        self._set_connected(True)
        name = "iot_bridge_mqtt" if self._role is None else f"iot_bridge_mqtt_{self._role}"
        self._task = asyncio.create_task(self._run(client), name=name)

    async def stop(self) -> None:
        """Disconnect and end the background task; leaves nothing running."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._set_connected(False)

    async def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> None:
        """Publish; with QoS >= 1 returns once the broker acknowledged the message.

        Raises MqttNotConnected when the link is down, MqttLinkLost when it drops before the
        acknowledgement arrives (at once, not at aiomqtt's timeout: a command waiting here
        must be free to go out again as soon as the broker is back).
        """
        client, link_down = self._client, self._link_down
        if client is None or link_down is None or not self.connected:
            raise MqttNotConnected(self.last_error or "not connected to the broker")
        send = asyncio.ensure_future(
            client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        )
        try:
            await asyncio.wait((send, link_down), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not send.done():
                send.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await send
        if send.cancelled():
            raise MqttLinkLost("connection lost before the broker acknowledged the message")
        if (error := send.exception()) is not None:
            if isinstance(error, aiomqtt.MqttError):
                raise MqttNotConnected(str(error)) from error
            raise error

    async def _connect(self) -> aiomqtt.Client:
        if self.settings.tls and self._tls is None:
            loop = asyncio.get_running_loop()
            self._tls = await loop.run_in_executor(None, _tls_context, self.settings)
        client = aiomqtt.Client(
            self.settings.host,
            self.settings.port,
            username=self.settings.username or None,
            password=self.settings.password or None,
            identifier=self.settings.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            keepalive=self.settings.keepalive,
            timeout=_CONNECT_TIMEOUT,
            tls_context=self._tls,
            socket_options=[_NODELAY],
            queue_type=_direct_delivery(self._dispatch),
            properties=_connect_properties(),
        )
        LeanReceiver.install(client._client, self._dispatch)
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as err:
            raise self._connect_error(err) from err
        self._dropped_last = None
        self._dropped_warned = False
        try:
            # The drop count first, so its current (retained) value arrives before the burst.
            await self._watch_broker_drops(client)
            # Subscribe before reporting "connected": retained discovery arrives at once.
            for subscription in self._subscriptions:
                await client.subscribe(subscription.topic_filter, qos=subscription.qos)
        except aiomqtt.MqttError as err:
            await _close_quietly(client)
            raise self._connect_error(err) from err
        return client

    async def _watch_broker_drops(self, client: aiomqtt.Client) -> None:
        """Follow the broker's drop count; a broker that refuses it (ACL) just stays silent."""
        if not self._subscriptions or self._role is not None:
            return  # the config flow's probe; a helper connection (one warning is enough)
        await client.subscribe(BROKER_DROPPED_TOPIC, qos=0)

    def _on_broker_dropped(self, message: Inbound) -> None:
        """The broker's drop count went up while we are connected: warn once per connection.

        The count is the broker's total for all its clients: a rise means that some client,
        maybe this one, missed messages (a full queue for a slow subscriber, max_queued_messages).
        """
        try:
            value = int(message.payload)
        except (TypeError, ValueError):
            return
        last, self._dropped_last = self._dropped_last, value
        if last is None and not message.retain:
            # No retained value when we subscribed: the broker started less than one
            # sys_interval ago and counts from there, so every drop so far may be ours.
            last = 0
        if last is None or value <= last:
            return  # the value when we connected, no change, or a restarted count
        rise = value - last
        self.broker_dropped += rise
        log = _LOGGER.debug if self._dropped_warned else _LOGGER.warning
        self._dropped_warned = True
        log(
            "MQTT broker %s:%s dropped %d messages while IoT Bridge was connected (the count "
            "covers all its clients, %d since IoT Bridge started). Device announcements, "
            "states or availability may be missing or stale until the devices publish "
            "again; if this repeats, raise the broker's max_queued_messages",
            self.settings.host,
            self.settings.port,
            rise,
            self.broker_dropped,
        )

    def _connect_error(self, err: aiomqtt.MqttError) -> MqttConnectError:
        self.last_error = str(err)
        if _is_auth_failure(err):
            return MqttAuthError(str(err))
        return MqttConnectError(str(err))

    async def _run(self, client: aiomqtt.Client) -> None:
        """Serve the connection; on loss reconnect with exponential backoff."""
        try:
            while True:
                await self._serve(client)
                self._client = None
                await _close_quietly(client)
                client = await self._reconnect()
        finally:
            # Cancelled by stop(): close whatever connection is open now.
            if self._client is not None:
                await _close_quietly(self._client)
                self._client = None

    async def _serve(self, client: aiomqtt.Client) -> None:
        try:
            # Messages are dispatched as they arrive (see _direct_delivery); this only
            # returns, by raising, when the connection drops.
            async for _message in client.messages:
                pass  # never reached: DirectDelivery queues nothing
        except aiomqtt.MqttError as err:
            self.last_error = str(err)
            if self._role is None:
                _LOGGER.warning(
                    "Lost connection to MQTT broker %s:%s (%s); reconnecting",
                    self.settings.host,
                    self.settings.port,
                    err,
                )
            else:
                _LOGGER.info(
                    "MQTT %s connection to %s:%s lost (%s); reconnecting",
                    self._role,
                    self.settings.host,
                    self.settings.port,
                    err,
                )
        finally:
            self._set_connected(False)

    async def _reconnect(self) -> aiomqtt.Client:
        delay = self._reconnect_min
        while True:
            await asyncio.sleep(delay)
            try:
                client = await self._connect()
            except MqttAuthError as err:
                # Retrying cannot fix credentials: tell the owner (once) and keep trying
                # slowly, in case the broker's password file is being edited.
                if self._on_auth_failed is not None and not self._auth_reported:
                    self._auth_reported = True
                    _LOGGER.warning("MQTT broker %s rejected the credentials", self.settings.host)
                    self._on_auth_failed()
                _LOGGER.debug("Reconnect to %s refused: %s", self.settings.host, err)
                delay = self._reconnect_max
                continue
            except MqttConnectError as err:
                _LOGGER.debug("Reconnect to %s failed: %s", self.settings.host, err)
                delay = min(delay * 2, self._reconnect_max)
                continue
            self._auth_reported = False
            self.reconnects += 1
            self._client = client
            self._set_connected(True)
            if self._role is None:
                _LOGGER.info(
                    "Connection to MQTT broker %s:%s restored",
                    self.settings.host,
                    self.settings.port,
                )
            else:
                _LOGGER.info(
                    "MQTT %s connection to %s:%s is back",
                    self._role,
                    self.settings.host,
                    self.settings.port,
                )
            return client

    def _dispatch(self, message: Inbound) -> None:
        topic = message.topic
        if topic == BROKER_DROPPED_TOPIC:
            self._on_broker_dropped(message)
            return
        if _LOGGER.isEnabledFor(logging.DEBUG):
            _LOGGER.debug("Received %s: %s", topic, _loggable(message.payload))
        for handler in self._handlers_for(topic):
            try:
                handler(message)
            except Exception:
                # One bad handler or payload must not take the connection down.
                _LOGGER.exception("Error handling MQTT message on %s", topic)

    def _handlers_for(self, topic: str) -> list[MessageHandler]:
        """Handlers whose filter matches; devices reuse their topics, so remember the answer."""
        handlers = self._route_cache.get(topic)
        if handlers is None:
            if len(self._route_cache) >= _ROUTE_CACHE_SIZE:
                self._route_cache.clear()
            handlers = [
                s.handler for s in self._subscriptions if topic_matches_sub(s.topic_filter, topic)
            ]
            self._route_cache[topic] = handlers
        return handlers

    def _set_connected(self, connected: bool) -> None:
        if connected == self.connected:
            return
        self.connected = connected
        if connected:
            self._link_down = asyncio.get_running_loop().create_future()
        elif self._link_down is not None and not self._link_down.done():
            self._link_down.set_result(None)
        if self._on_connection_change is not None:
            self._on_connection_change(connected)


def _connect_properties() -> Properties:
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.ReceiveMaximum = RECEIVE_MAXIMUM
    return properties


def _loggable(payload: Any) -> str:
    """A payload as the debug log shows it: cut short, never the whole megabyte."""
    text = repr(payload)
    if len(text) <= _LOG_PAYLOAD_CHARS:
        return text
    size = len(payload) if isinstance(payload, bytes | bytearray | str) else len(text)
    return f"{text[:_LOG_PAYLOAD_CHARS]}... ({size} bytes)"


async def _close_quietly(client: aiomqtt.Client) -> None:
    with contextlib.suppress(aiomqtt.MqttError):
        await client.__aexit__(None, None, None)
    # aiomqtt cancels its housekeeping task with call_soon_threadsafe and does not
    # wait for it; wait here so an unload leaves no task behind.
    misc_task: asyncio.Task[None] | None = getattr(client, "_misc_task", None)
    if misc_task is not None and not misc_task.done():
        misc_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await misc_task
