"""The LwM2M client simulators over real UDP: driven by IoT Bridge's own Lwm2mServer (its
request/observe/cancel_observation API) and by Debian's coap-client-notls."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiocoap
import pytest
from aiocoap.numbers.types import Type

from custom_components.iot_bridge.core.lwm2m import (
    ContentFormat,
    LwM2MPath,
    Value,
    decode,
    default_registry,
    encode,
    parse_discover,
)
from custom_components.iot_bridge.core.lwm2m.registration import Registration
from custom_components.iot_bridge.core.lwm2m.server import (
    Following,
    Lwm2mServer,
    Response,
    ServerRequestError,
)
from iot_bridge_sim.devices import DeviceModel, parcel_locker, sensor_node
from iot_bridge_sim.lwm2m import (
    Lwm2mBehaviour,
    Lwm2mClient,
    Lwm2mDeviceSimulator,
    Lwm2mOptions,
)
from iot_bridge_sim.lwm2m_fleet import FleetOptions, Lwm2mFleet
from iot_bridge_sim.lwm2m_objects import Lwm2mError, ObjectTree, parse_arguments

pytestmark = pytest.mark.usefixtures("socket_enabled")

ROOT = Path(__file__).resolve().parent.parent
COAP_CLIENT = shutil.which("coap-client-notls") or "/usr/bin/coap-client-notls"
P = LwM2MPath
TLV, SENML_JSON, SENML_CBOR = ContentFormat.TLV, ContentFormat.SENML_JSON, ContentFormat.SENML_CBOR
QUIET = 0.4  # how long "nothing arrives" is awaited


class Events:
    """The server's registration listener, recording for the test to wait on."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Registration, Registration | None]] = []
        self.sends: list[tuple[str, dict[LwM2MPath, Value]]] = []

    def registered(self, registration: Registration, previous: Registration | None) -> None:
        self.log.append(("registered", registration, previous))

    def updated(self, registration: Registration, previous: Registration) -> None:
        self.log.append(("updated", registration, previous))

    def deregistered(self, registration: Registration, *, expired: bool) -> None:
        self.log.append(("expired" if expired else "deregistered", registration, None))

    def sent(
        self, registration: Registration, content_format: int, payload: bytes
    ) -> aiocoap.numbers.codes.Code:
        self.sends.append((registration.endpoint, decode(content_format, payload, P())))
        return aiocoap.CHANGED


class SimServer:
    """An Lwm2mServer on a free port with helpers to wait for what clients do."""

    def __init__(self) -> None:
        self.events = Events()
        self.lwm2m = Lwm2mServer("127.0.0.1", _free_udp_port(), self.events)

    @property
    def uri(self) -> str:
        return f"coap://127.0.0.1:{self.lwm2m.port}"

    def mark(self) -> int:
        return len(self.events.log)

    async def wait(
        self, kind: str, endpoint: str, *, after: int = 0, timeout: float = 5.0
    ) -> tuple[Registration, Registration | None]:
        async with asyncio.timeout(timeout):
            while True:
                for event, registration, previous in self.events.log[after:]:
                    if event == kind and registration.endpoint == endpoint:
                        return registration, previous
                await asyncio.sleep(0.01)

    def registration(self, endpoint: str) -> Registration:
        registration = self.lwm2m.registrations.by_endpoint(endpoint)
        assert registration is not None, f"{endpoint} is not registered"
        return registration

    async def request(
        self, endpoint: str, code: aiocoap.numbers.codes.Code, path: str, **kwargs: Any
    ) -> Response:
        kwargs.setdefault("timeout", 2.0)
        return await self.lwm2m.request(self.registration(endpoint), code, path, **kwargs)

    async def observe(
        self, endpoint: str, path: str, accept: int | None = None
    ) -> tuple[Response, Notifications]:
        notifications = Notifications()
        first, following = await self.lwm2m.observe(
            self.registration(endpoint),
            path,
            timeout=2.0,
            accept=accept,
            on_notification=notifications.queue.put_nowait,
            on_end=notifications.ended.set,
        )
        notifications.following = following
        return first, notifications

    async def read(self, endpoint: str, path: str, accept: int | None = None) -> dict[str, Value]:
        answer = await self.request(endpoint, aiocoap.GET, path, accept=accept)
        assert answer.code == aiocoap.CONTENT, answer.describe()
        assert answer.content_format is not None
        values = decode(int(answer.content_format), answer.payload, P.parse(path))
        return {str(p): v for p, v in values.items()}


type StartClient = Callable[..., Awaitable[Lwm2mClient]]


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def server() -> AsyncGenerator[SimServer]:
    test_server = SimServer()
    await test_server.lwm2m.start()
    yield test_server
    await test_server.lwm2m.stop()


@pytest.fixture
async def start_client(server: SimServer) -> AsyncGenerator[StartClient]:
    """Start simulated clients against the test server; all are stopped afterwards."""
    started: list[Lwm2mClient] = []

    async def start(
        model: DeviceModel | None = None,
        behaviour: Lwm2mBehaviour | None = None,
        **options: Any,
    ) -> Lwm2mClient:
        client = Lwm2mClient(
            model or parcel_locker(), Lwm2mOptions(server=server.uri, **options), behaviour
        )
        started.append(client)
        await client.start()
        return client

    yield start
    for client in started:
        await client.stop()


async def _wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


class Notifications:
    """An observation's notifications, queued as the server hands them over."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Response] = asyncio.Queue()
        self.ended = asyncio.Event()
        self.following: Following | None = None

    async def next(self, timeout: float = 3.0) -> Response:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def nothing(self) -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(self.queue.get(), QUIET)

    async def close(self) -> None:
        if self.following is not None:
            self.following.stop()


async def _probe(port: int, path: str) -> bytes | None:
    """A NON GET from a fresh socket; the raw answer, or None after QUIET seconds.

    Not through the server: a request of its that times out keeps retransmitting at the
    message layer, and aiocoap queues every later request to that client behind it
    (NSTART=1) for up to 93 s (see the report)."""
    request = aiocoap.Message(code=aiocoap.GET, uri_path=tuple(path.strip("/").split("/")))
    request.mtype, request.mid, request.token = Type.NON, 1, b"p"

    def exchange() -> bytes | None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(QUIET)
            sock.sendto(request.encode(), ("127.0.0.1", port))
            try:
                return sock.recv(2048)
            except TimeoutError:
                return None

    return await asyncio.to_thread(exchange)


def _tlv(values: dict[LwM2MPath, Value], base: LwM2MPath) -> bytes:
    return encode(TLV, values, base)


# -- registration ---------------------------------------------------------------------------


async def test_registration_names_endpoint_lifetime_binding_and_objects(
    server: SimServer, start_client: StartClient
) -> None:
    client = await start_client(lifetime=45)
    registration = server.registration("locker1")
    assert (registration.lifetime, registration.version, registration.binding) == (45, "1.1", "U")
    assert not registration.queue_mode
    assert registration.objects.content_formats == (TLV,)
    assert [str(p) for p in registration.objects.instance_paths()] == [
        "/1/0",
        "/3/0",
        "/3303/0",
        "/10351/0",
        "/10351/1",
        "/10351/2",
        "/10359/0",
        "/10359/1",
        "/10359/2",
    ]
    assert registration.objects.objects[1].version == "1.1"
    # Requests to the client go back to the socket it registered from.
    assert registration.remote.sockaddr[1] == client.port
    register = client.registrations[0]
    assert (register.operation, register.code) == ("register", "2.01")
    assert register.query == ("ep=locker1", "lt=45", "lwm2m=1.1", "b=U")


async def test_update_on_schedule_and_deregister_on_stop(server: SimServer) -> None:
    client = Lwm2mClient(parcel_locker("locker9"), Lwm2mOptions(server=server.uri, lifetime=1))
    await client.start()
    mark = server.mark()
    await server.wait("updated", "locker9", after=mark, timeout=3)  # at 0.8 s
    # The server has the Update before the client has its answer: wait for the client too.
    await _wait_for(lambda: any(e.operation == "update" for e in client.registrations))
    update = next(e for e in client.registrations if e.operation == "update")
    assert (update.code, update.payload, update.query) == ("2.04", b"", ())  # nothing changed
    await client.stop()
    await server.wait("deregistered", "locker9", after=mark)
    assert client.registrations[-1].operation == "deregister"
    assert not client.running


async def test_lwm2m_1_0_client_registers_and_answers_its_own_formats(
    server: SimServer, start_client: StartClient
) -> None:
    await start_client(version="1.0", queue_mode=True, queue_window=5.0)
    registration = server.registration("locker1")
    assert (registration.version, registration.binding, registration.queue_mode) == (
        "1.0",
        "UQ",
        True,
    )
    assert await server.read("locker1", "/10359/0/50", accept=TLV) == {"/10359/0/50": True}
    refused = await server.request("locker1", aiocoap.GET, "/10359/0/50", accept=SENML_CBOR)
    assert refused.code == aiocoap.NOT_ACCEPTABLE


# -- read -----------------------------------------------------------------------------------


async def test_read_answers_in_the_format_accept_asks_for(
    server: SimServer, start_client: StartClient
) -> None:
    await start_client()
    resource = "/3303/0/5700"
    for accept, expected_format in [
        (None, TLV),  # no Accept: TLV, as many real clients answer
        (TLV, TLV),
        (SENML_CBOR, SENML_CBOR),
        (SENML_JSON, SENML_JSON),
        (ContentFormat.LWM2M_JSON, ContentFormat.LWM2M_JSON),
        (ContentFormat.TEXT, ContentFormat.TEXT),
        (ContentFormat.CBOR, ContentFormat.CBOR),
    ]:
        answer = await server.request("locker1", aiocoap.GET, resource, accept=accept)
        assert answer.content_format == expected_format
        assert decode(expected_format, answer.payload, P.parse(resource)) == {
            P(3303, 0, 5700): 21.5
        }
    door = {"/10359/1/1": "Door 2", "/10359/1/50": True}
    for accept in (TLV, SENML_CBOR, SENML_JSON):
        assert await server.read("locker1", "/10359/1", accept=accept) == door
    device = await server.read("locker1", "/3", accept=SENML_JSON)
    assert device["/3/0/0"] == "IoT Bridge demo"
    assert device["/3/0/2"] == "SIM-locker1"
    assert device["/3/0/9"] == 100
    assert device["/3/0/11/0"] == 0
    assert (device["/3/0/17"], device["/3/0/19"]) == ("Parcel locker", "1.0.0")
    assert "/3/0/4" not in device  # executable, not readable


@pytest.mark.parametrize(
    ("path", "accept", "code"),
    [
        ("/10359/0", ContentFormat.TEXT, aiocoap.NOT_ACCEPTABLE),  # text: one resource only
        ("/3303/0/5700", 50, aiocoap.NOT_ACCEPTABLE),  # plain JSON is no LwM2M format
        ("/3303/0/5700", ContentFormat.OPAQUE, aiocoap.NOT_ACCEPTABLE),  # a float is not opaque
        ("/31024/0", None, aiocoap.NOT_FOUND),
        ("/3303/0/5800", None, aiocoap.NOT_FOUND),
        ("/10359/0/100", None, aiocoap.METHOD_NOT_ALLOWED),  # executable
        ("/rd", None, aiocoap.NOT_FOUND),
    ],
)
async def test_read_errors(
    server: SimServer, start_client: StartClient, path: str, accept: int | None, code: Any
) -> None:
    await start_client()
    answer = await server.request("locker1", aiocoap.GET, path, accept=accept)
    assert answer.code == code
    assert answer.payload  # a diagnostic payload says why


# -- write and execute ------------------------------------------------------------------------


async def test_write_replace_and_partial_update_reach_the_model(
    server: SimServer, start_client: StartClient
) -> None:
    client = await start_client(sensor_node())
    model = client.model
    answer = await server.request(
        "sensor1", aiocoap.PUT, "/3308/0/5900", payload=b"22.5", content_format=0
    )
    assert answer.code == aiocoap.CHANGED
    assert model.state["setpoint"] == 22.5
    partial = b'[{"bn":"/3311/0/","n":"5850","vb":true},{"n":"5851","v":40}]'
    answer = await server.request(
        "sensor1", aiocoap.POST, "/3311/0", payload=partial, content_format=SENML_JSON
    )
    assert answer.code == aiocoap.CHANGED
    assert model.state["light"] == {"on": True, "brightness": 102}
    assert await server.read("sensor1", "/3311/0", accept=SENML_CBOR) == {
        "/3311/0/5850": True,
        "/3311/0/5851": 40,
    }
    relay = _tlv({P(3312, 0, 5850): True}, P(3312, 0, 5850))
    answer = await server.request(
        "sensor1", aiocoap.PUT, "/3312/0/5850", payload=relay, content_format=TLV
    )
    assert (answer.code, model.state["relay"]) == (aiocoap.CHANGED, True)
    assert [e.path for e in client.executed] == [
        "/3308/0/5900",
        "/3311/0/5850",
        "/3311/0/5851",
        "/3312/0/5850",
    ]


@pytest.mark.parametrize(
    ("path", "payload", "content_format", "code", "reason"),
    [
        ("/3303/0/5700", b"30", 0, aiocoap.METHOD_NOT_ALLOWED, "not writable"),
        ("/3308/0/5900", b"40", 0, aiocoap.BAD_REQUEST, "outside 5..30"),
        ("/3308/0/5900", b"warm", 0, aiocoap.BAD_REQUEST, "not a number"),
        ("/3308/0/5900", b"22", 50, aiocoap.UNSUPPORTED_CONTENT_FORMAT, "not supported"),
        ("/3308/0/5900", b"22", None, aiocoap.UNSUPPORTED_CONTENT_FORMAT, "not supported"),
        ("/3308", b"22", 0, aiocoap.METHOD_NOT_ALLOWED, "instance or a resource"),
        ("/3311/0/5851", b"150", 0, aiocoap.BAD_REQUEST, "0-100"),
    ],
)
async def test_bad_writes_are_refused_with_a_reason(
    server: SimServer,
    start_client: StartClient,
    path: str,
    payload: bytes,
    content_format: int | None,
    code: Any,
    reason: str,
) -> None:
    client = await start_client(sensor_node())
    before = dict(client.model.state)
    answer = await server.request(
        "sensor1", aiocoap.PUT, path, payload=payload, content_format=content_format
    )
    assert answer.code == code
    assert reason in answer.payload.decode()
    assert client.model.state == before
    assert client.executed == []


async def test_execute_locks_unlocks_and_opens_doors(
    server: SimServer, start_client: StartClient
) -> None:
    client = await start_client()

    async def execute(path: str, argument: bytes = b"") -> Response:
        return await server.request("locker1", aiocoap.POST, path, payload=argument)

    assert (await execute("/10359/0/100", b"0")).code == aiocoap.CHANGED
    assert await server.read("locker1", "/10359/0/50") == {"/10359/0/50": False}
    assert (await execute("/10359/0/100", b"1")).code == aiocoap.CHANGED
    assert await server.read("locker1", "/10359/0/50") == {"/10359/0/50": True}
    # Door control opens door 2: unlatched and swung open.
    assert (await execute("/10351/1/100")).code == aiocoap.CHANGED
    assert await server.read("locker1", "/10351/1/50") == {"/10351/1/50": True}
    assert await server.read("locker1", "/10359/1/50") == {"/10359/1/50": False}
    assert client.model.state["door2_lock"] == "open"
    bad = await execute("/10359/0/100", b"7")
    assert bad.code == aiocoap.BAD_REQUEST
    assert "argument 1 (lock) or 0 (unlock)" in bad.payload.decode()
    assert (await execute("/10359/0/100", b"0='x")).code == aiocoap.BAD_REQUEST
    assert (await execute("/10359/0/50", b"1")).code == aiocoap.METHOD_NOT_ALLOWED
    assert [(e.path, e.detail) for e in client.executed] == [
        ("/10359/0/100", "unlock door1_lock"),
        ("/10359/0/100", "lock door1_lock"),
        ("/10351/1/100", "open door2_lock"),
    ]


async def test_writing_the_lifetime_sends_an_update(
    server: SimServer, start_client: StartClient
) -> None:
    client = await start_client()
    mark = server.mark()
    answer = await server.request("locker1", aiocoap.PUT, "/1/0/1", payload=b"45", content_format=0)
    assert answer.code == aiocoap.CHANGED
    updated, _ = await server.wait("updated", "locker1", after=mark)
    assert updated.lifetime == 45
    # The server has the Update before the client has its answer: wait for the client too.
    await _wait_for(lambda: client.registrations[-1].query == ("lt=45",))


async def test_reboot_comes_back_with_a_new_registration(
    server: SimServer, start_client: StartClient
) -> None:
    client = await start_client(reboot_delay=0.05)
    first = server.registration("locker1")
    mark = server.mark()
    answer = await server.request("locker1", aiocoap.POST, "/3/0/4")
    assert answer.code == aiocoap.CHANGED
    registration, previous = await server.wait("registered", "locker1", after=mark)
    assert previous is not None
    assert previous.registration_id == first.registration_id
    assert registration.remote != first.remote  # a rebooted device gets a new socket
    assert client.executed[-1].path == "/3/0/4"


# -- observe --------------------------------------------------------------------------------


@pytest.mark.parametrize("confirmable", [True, False], ids=["CON", "NON"])
async def test_observe_notifies_on_change(
    server: SimServer, start_client: StartClient, confirmable: bool
) -> None:
    client = await start_client(behaviour=Lwm2mBehaviour(notify_confirmable=confirmable))
    first, notifications = await server.observe("locker1", "/10359/0", accept=SENML_JSON)
    assert decode(SENML_JSON, first.payload, P(10359, 0))[P(10359, 0, 50)] is True
    await server.request("locker1", aiocoap.POST, "/10359/0/100", payload=b"0")
    notification = await notifications.next()
    assert notification.content_format == SENML_JSON
    assert decode(SENML_JSON, notification.payload, P(10359, 0))[P(10359, 0, 50)] is False
    client.publish_state({"door1_lock": "locked"})  # someone locked it by hand
    notification = await notifications.next()
    assert decode(SENML_JSON, notification.payload, P(10359, 0))[P(10359, 0, 50)] is True
    sent = client.notifications
    assert [n.confirmable for n in sent] == [confirmable, confirmable]
    assert [n.sequence for n in sent] == [1, 2]
    assert sent[-1].values["/10359/0/50"] is True
    await notifications.close()


async def test_pmax_notifies_without_change_and_pmin_coalesces(
    server: SimServer, start_client: StartClient
) -> None:
    client = await start_client()
    answer = await server.request("locker1", aiocoap.PUT, "/3303/0/5700", query=("pmax=1",))
    assert answer.code == aiocoap.CHANGED
    started = time.monotonic()
    _, notifications = await server.observe("locker1", "/3303/0/5700")
    await notifications.next()
    assert 0.9 < time.monotonic() - started < 2.0  # at pmax, without a change
    await server.request("locker1", aiocoap.PUT, "/3303/0/5700", query=("pmax",))  # cleared
    await server.request("locker1", aiocoap.PUT, "/3303/0", query=("pmin=1",))  # inherited
    client.publish_state({"temperature": 22.0})
    client.publish_state({"temperature": 22.5})
    notified = await notifications.next()
    last = time.monotonic()
    assert last - started >= 1.9  # one pmin after the pmax notification
    client.publish_state({"temperature": 23.0})
    client.publish_state({"temperature": 23.5})
    await notifications.nothing()
    notified = await notifications.next()
    assert time.monotonic() - last >= 0.9
    assert decode(TLV, notified.payload, P(3303, 0, 5700)) == {P(3303, 0, 5700): 23.5}
    assert [n.values["/3303/0/5700"] for n in client.notifications] == [21.5, 22.5, 23.5]
    await notifications.close()


async def test_greater_than_and_step_attributes_filter_changes(
    server: SimServer, start_client: StartClient
) -> None:
    client = await start_client()
    await server.request("locker1", aiocoap.PUT, "/3303/0/5700", query=("gt=25", "st=3"))
    _, notifications = await server.observe("locker1", "/3303/0/5700", accept=ContentFormat.TEXT)
    client.publish_state({"temperature": 22.0})  # +0.5: under the step, no crossing
    await notifications.nothing()
    client.publish_state({"temperature": 25.5})  # crosses 25
    assert (await notifications.next()).payload == b"25.5"
    client.publish_state({"temperature": 28.6})  # a step of 3.1
    assert (await notifications.next()).payload == b"28.6"
    await notifications.close()


async def test_cancel_on_the_wire_stops_notifications(
    server: SimServer, start_client: StartClient
) -> None:
    client = await start_client()
    registration = server.registration("locker1")
    _, notifications = await server.observe("locker1", "/10351/0/50")
    assert client.observations == ["/10351/0/50"]
    await server.lwm2m.cancel_observation(registration, "/10351/0/50", timeout=2)
    assert client.observations == []
    cancel = client.received[-1]
    assert (cancel.method, cancel.observe) == ("GET", 1)
    client.publish_state({"door1": True})
    await notifications.nothing()
    assert client.notifications == []
    await notifications.close()


async def test_reset_of_a_con_notification_ends_the_observation(
    server: SimServer, start_client: StartClient
) -> None:
    """A server that forgot the observation answers the next CON notification with RST."""
    client = await start_client()
    _, notifications = await server.observe("locker1", "/10351/0/50")
    await notifications.close()  # aiocoap forgets it locally, tells the client nothing
    client.publish_state({"door1": True})  # still taken in (and ACKed) by aiocoap
    await _wait_for(lambda: len(client.notifications) == 1)
    client.publish_state({"door1": False})  # unknown now: RST
    await _wait_for(lambda: client.observations == [])
    assert len(client.notifications) == 2


async def test_deleted_instance_ends_its_observation_with_4_04(
    server: SimServer, start_client: StartClient
) -> None:
    await start_client(sensor_node(), vendor_object=True)
    _, notifications = await server.observe("sensor1", "/31024/0")
    mark = server.mark()
    answer = await server.request("sensor1", aiocoap.DELETE, "/31024/0")
    assert answer.code == aiocoap.DELETED
    ended = await notifications.next()
    assert ended.code == aiocoap.NOT_FOUND
    await asyncio.wait_for(notifications.ended.wait(), 3.0)  # and the server says it ended
    # The client sends an Update (its object list changed): let it have the answer before
    # it stops (one more request to its socket is answered after the Update's 2.04 arrived).
    await server.wait("updated", "sensor1", after=mark)
    await server.request("sensor1", aiocoap.GET, "/3/0")


# -- discover, write-attributes, create, delete ------------------------------------------------


async def test_discover_lists_resources_with_their_attributes(
    server: SimServer, start_client: StartClient
) -> None:
    await start_client()
    answer = await server.request(
        "locker1", aiocoap.PUT, "/10359/0/50", query=("pmin=2", "pmax=60")
    )
    assert answer.code == aiocoap.CHANGED
    answer = await server.request("locker1", aiocoap.GET, "/10359", accept=40)
    assert answer.content_format == 40
    links = {str(link.path): dict(link.attributes) for link in parse_discover(answer.payload)}
    assert list(links)[:5] == ["/10359", "/10359/0", "/10359/0/1", "/10359/0/50", "/10359/0/100"]
    assert links["/10359/0/50"] == {"pmin": 2, "pmax": 60}
    assert "/10359/2/100" in links
    device = await server.request("locker1", aiocoap.GET, "/3/0", accept=40)
    device_links = {
        str(link.path): dict(link.attributes) for link in parse_discover(device.payload)
    }
    assert device_links["/3/0/11"] == {"dim": 1}
    assert "/3" not in device_links
    bad = await server.request("locker1", aiocoap.PUT, "/10359/0/50", query=("pmin=soon",))
    assert bad.code == aiocoap.BAD_REQUEST


async def test_create_and_delete_instances_of_the_vendor_object(
    server: SimServer, start_client: StartClient
) -> None:
    await start_client(sensor_node(), vendor_object=True)
    registration = server.registration("sensor1")
    assert P(31024, 0) in registration.objects.instance_paths()
    assert await server.read("sensor1", "/31024/0", accept=SENML_JSON) == {
        "/31024/0/0": 0,
        "/31024/0/1": "vendor instance 0",
    }
    # Create naming the instance (SenML), then one where the client picks the id (TLV).
    mark = server.mark()
    named = b'[{"bn":"/31024/","n":"7/1","vs":"made by the server"}]'
    answer = await server.request(
        "sensor1", aiocoap.POST, "/31024", payload=named, content_format=SENML_JSON
    )
    assert answer.code == aiocoap.CREATED
    updated, _ = await server.wait("updated", "sensor1", after=mark)
    assert P(31024, 7) in updated.objects.instance_paths()
    unnamed = _tlv({P(31024, 1, 0): 5}, P(31024, 1))  # resources only, no instance
    answer = await server.request(
        "sensor1", aiocoap.POST, "/31024", payload=unnamed, content_format=TLV
    )
    assert answer.code == aiocoap.CREATED
    assert (await server.read("sensor1", "/31024/1/0")) == {"/31024/1/0": 5}
    blink = await server.request("sensor1", aiocoap.POST, "/31024/1/2")
    assert blink.code == aiocoap.CHANGED
    assert (await server.read("sensor1", "/31024/1/0")) == {"/31024/1/0": 6}
    mark = server.mark()
    assert (await server.request("sensor1", aiocoap.DELETE, "/31024/7")).code == aiocoap.DELETED
    updated, _ = await server.wait("updated", "sensor1", after=mark)
    assert P(31024, 7) not in updated.objects.instance_paths()
    assert (await server.request("sensor1", aiocoap.GET, "/31024/7")).code == aiocoap.NOT_FOUND
    refused = await server.request("sensor1", aiocoap.POST, "/3303", payload=b"")
    assert refused.code == aiocoap.METHOD_NOT_ALLOWED
    assert (await server.request("sensor1", aiocoap.DELETE, "/3/0")).code == (
        aiocoap.METHOD_NOT_ALLOWED
    )


# -- failure modes -----------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["4.05", "5.00"])
async def test_refused_execute_and_write_carry_code_and_reason(
    server: SimServer, start_client: StartClient, code: str
) -> None:
    client = await start_client(behaviour=Lwm2mBehaviour(refuse="door blocked", refuse_code=code))
    answer = await server.request("locker1", aiocoap.POST, "/10351/0/100")
    assert (answer.code.dotted, answer.payload) == (code, b"door blocked")
    write = await server.request("locker1", aiocoap.PUT, "/1/0/1", payload=b"30", content_format=0)
    assert write.code.dotted == code
    assert client.executed == []
    assert await server.read("locker1", "/10351/0/50") == {"/10351/0/50": False}


async def test_jammed_lock_accepts_but_re_reports_the_old_status(
    server: SimServer, start_client: StartClient
) -> None:
    client = await start_client(behaviour=Lwm2mBehaviour(jam={"door1_lock"}))
    _, notifications = await server.observe("locker1", "/10359/0/50", accept=ContentFormat.TEXT)
    answer = await server.request("locker1", aiocoap.POST, "/10359/0/100", payload=b"0")
    assert answer.code == aiocoap.CHANGED  # delivered and accepted...
    assert (await notifications.next()).payload == b"1"  # ...but still locked
    assert client.executed == []
    assert client.model.state["door1_lock"] == "locked"
    await notifications.close()


async def test_late_status_answers_at_once_and_changes_later(
    server: SimServer, start_client: StartClient
) -> None:
    client = await start_client(behaviour=Lwm2mBehaviour(status_delay=0.3))
    _, notifications = await server.observe("locker1", "/10359/0/50", accept=ContentFormat.TEXT)
    sent = time.monotonic()
    answer = await server.request("locker1", aiocoap.POST, "/10359/0/100", payload=b"0")
    assert answer.code == aiocoap.CHANGED
    assert time.monotonic() - sent < 0.25
    assert await server.read("locker1", "/10359/0/50") == {"/10359/0/50": True}
    assert (await notifications.next()).payload == b"0"
    assert time.monotonic() - sent >= 0.3
    assert len(client.executed) == 1
    await notifications.close()


async def test_silent_client_acts_but_never_answers(
    server: SimServer, start_client: StartClient
) -> None:
    client = await start_client(behaviour=Lwm2mBehaviour(silent=True))
    with pytest.raises(ServerRequestError, match="no answer"):
        await server.request("locker1", aiocoap.POST, "/10359/2/100", payload=b"0", timeout=0.5)
    assert client.model.state["door3_lock"] == "unlocked"
    # The server retransmits within the request's own time (never after it); the client
    # recognises the message id and does not act again.
    handlings = [r.handling for r in client.received]
    assert handlings[0] == "silent"
    assert set(handlings[1:]) <= {"retransmission"}
    assert len({r.message_id for r in client.received}) == 1


async def test_a_dropped_transmission_is_retransmitted_and_executed_once(
    server: SimServer, start_client: StartClient
) -> None:
    client = await start_client(behaviour=Lwm2mBehaviour(drop_first=1))
    answer = await server.request(
        "locker1", aiocoap.POST, "/10351/2/100", timeout=8.0
    )  # aiocoap retransmits after 2-3 s
    assert answer.code == aiocoap.CHANGED
    received = client.received
    assert [r.handling for r in received] == ["dropped", "served"]
    assert received[0].message_id == received[1].message_id
    assert len(client.executed) == 1


async def test_offline_client_answers_nothing_then_comes_back(
    server: SimServer, start_client: StartClient
) -> None:
    client = await start_client()
    assert await _probe(client.port, "/3/0/0") is not None
    client.go_offline()
    assert await _probe(client.port, "/3/0/0") is None
    assert client.received[-1].handling == "offline"
    mark = server.mark()
    client.go_online()
    await server.wait("updated", "locker1", after=mark)
    assert await server.read("locker1", "/3/0/1") == {"/3/0/1": "PL-3"}


async def test_queue_mode_client_sleeps_between_wake_ups(
    server: SimServer, start_client: StartClient
) -> None:
    client = await start_client(queue_mode=True, queue_window=0.3, wake_interval=1.0)
    registration = server.registration("locker1")
    assert registration.queue_mode
    assert client.registrations[0].query[-1] == "Q"
    await asyncio.sleep(0.4)  # the window after the Register has closed
    assert await _probe(client.port, "/3/0/0") is None
    assert client.received[-1].handling == "asleep"
    mark = server.mark()
    await server.wait("updated", "locker1", after=mark, timeout=3)  # it wakes with an Update
    assert await server.read("locker1", "/3/0/0") == {"/3/0/0": "IoT Bridge demo"}


@pytest.mark.parametrize("content_format", [SENML_JSON, SENML_CBOR])
async def test_send_posts_current_values_to_dp(
    server: SimServer, start_client: StartClient, content_format: int
) -> None:
    client = await start_client(sensor_node())
    client.model.state["temperature"] = 19.75
    assert await client.send(["/3303/0/5700", "/3/0/9"], content_format=content_format) == "2.04"
    assert server.events.sends == [
        ("sensor1", {P(3303, 0, 5700): 19.75, P(3, 0, 9): client.tree.read(P(3, 0, 9))[P(3, 0, 9)]})
    ]
    assert client.registrations[-1].operation == "send"


async def test_rebind_updates_from_a_new_port_or_registers_anew(
    server: SimServer, start_client: StartClient
) -> None:
    client = await start_client()
    first = server.registration("locker1")
    old_port = client.port
    mark = server.mark()
    await client.rebind()  # NAT rebinding: same registration, new address
    updated, _ = await server.wait("updated", "locker1", after=mark)
    assert client.port != old_port
    assert updated.registration_id == first.registration_id
    assert updated.remote.sockaddr[1] == client.port
    assert await server.read("locker1", "/3/0/1") == {"/3/0/1": "PL-3"}
    mark = server.mark()
    await client.rebind(register=True)
    registration, previous = await server.wait("registered", "locker1", after=mark)
    assert previous is not None
    assert registration.registration_id != first.registration_id
    assert registration.remote.sockaddr[1] == client.port


# -- a third-party peer, the threaded wrapper, the CLI -------------------------------------------


async def _coap_client(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        COAP_CLIENT,
        "-B",
        "3",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return (out + err).decode().strip()


async def test_coap_client_notls_reads_discovers_and_executes(start_client: StartClient) -> None:
    client = await start_client()
    base = f"coap://127.0.0.1:{client.port}"
    senml = await _coap_client("-A", "110", f"{base}/10359/1")
    assert decode(SENML_JSON, senml.encode(), P(10359, 1)) == {
        P(10359, 1, 1): "Door 2",
        P(10359, 1, 50): True,
    }
    links = await _coap_client("-A", "40", f"{base}/3303/0")
    assert [str(link.path) for link in parse_discover(links.encode())] == [
        "/3303/0",
        "/3303/0/5700",
        "/3303/0/5701",
    ]
    await _coap_client("-m", "post", "-e", "0", f"{base}/10359/1/100")
    assert client.model.state["door2_lock"] == "unlocked"
    assert "4.05" in await _coap_client("-m", "delete", f"{base}/3303")
    assert await _coap_client("-A", "0", f"{base}/3303/0/5701") == "Cel"


async def test_threaded_simulator_registers_and_leaves_nothing_running(
    server: SimServer,
) -> None:
    simulator = Lwm2mDeviceSimulator(
        parcel_locker("locker5"), Lwm2mOptions(server=server.uri), printer=lambda _line: None
    )
    await asyncio.to_thread(simulator.start)
    assert server.registration("locker5").objects.instance_paths()[1] == P(3, 0)
    _, notifications = await server.observe("locker5", "/10351/2/50", accept=ContentFormat.TEXT)
    await asyncio.to_thread(simulator.publish_state, {"door3": True})
    assert (await notifications.next()).payload == b"1"
    await notifications.close()
    await asyncio.to_thread(simulator.stop)
    await server.wait("deregistered", "locker5")
    assert simulator.notifications[-1].values == {"/10351/2/50": True}
    assert not any(t.name.startswith("iot-bridge-sim-locker5") for t in _threads())


def _threads() -> list[Any]:
    import threading

    return threading.enumerate()


async def _run_module(*args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "simulator"), "PYTHONUNBUFFERED": "1"}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        *args,
        cwd=ROOT / "simulator",  # the CLI finds IoT Bridge's core without help
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def test_cli_runs_lwm2m_clients_until_sigterm(server: SimServer) -> None:
    process = await _run_module(
        "iot_bridge_sim",
        "--protocol",
        "lwm2m",
        "--server",
        server.uri,
        "--device",
        "locker",
        "--device",
        "sensor",
        "--number",
        "7",
        "--notify",
        "non",
        "--send",
        "/3/0/9",
        "--send-every",
        "0.2",
    )
    try:
        await server.wait("registered", "locker7", timeout=15)
        await server.wait("registered", "sensor7", timeout=5)
        assert P(31024, 0) in server.registration("sensor7").objects.instance_paths()
        assert await server.read("sensor7", "/3304/0/5700") == {"/3304/0/5700": 45.0}
        async with asyncio.timeout(5):  # both Send their battery level
            while {name for name, _ in server.events.sends} != {"locker7", "sensor7"}:
                await asyncio.sleep(0.02)
        assert all(set(values) == {P(3, 0, 9)} for _, values in server.events.sends)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 0, output.decode()
    await server.wait("deregistered", "locker7")
    assert b"locker7 registered as /rd/" in output


# -- the fleet -------------------------------------------------------------------------------


async def test_fleet_registers_endpoints_and_serves_them(server: SimServer) -> None:
    fleet = Lwm2mFleet(
        FleetOptions(server=("127.0.0.1", server.lwm2m.port), count=50, notify_rate=50),
        printer=lambda _line: None,
    )
    await fleet.start()
    try:
        await fleet.wait_registered(timeout=10)
        assert len(server.lwm2m.registrations) == 50
        assert fleet.counters.registrations == 50
        assert await server.read("fleet7", "/3/0/2") == {"/3/0/2": "SIM-fleet7"}
        first, notifications = await server.observe("fleet7", "/3303/0/5700", accept=SENML_CBOR)
        before = decode(SENML_CBOR, first.payload, P(3303, 0, 5700))[P(3303, 0, 5700)]
        after = await notifications.next()
        assert decode(SENML_CBOR, after.payload, P(3303, 0, 5700))[P(3303, 0, 5700)] != before
        await notifications.close()
        assert fleet.counters.notifications >= 1
    finally:
        await fleet.stop()
    assert len(server.lwm2m.registrations) == 0
    assert fleet.counters.deregistered == 50


async def test_fleet_process_with_a_hostile_flood(
    server: SimServer, caplog: pytest.LogCaptureFixture
) -> None:
    # aiocoap logs every datagram at debug level: thousands a second here, which on a busy
    # machine slows the server enough that the fleet's De-registers time out.
    for name in ("coap", "coap-server"):
        caplog.set_level(logging.INFO, logger=name)
    process = await _run_module(
        "iot_bridge_sim.lwm2m_fleet",
        "--server",
        server.uri,
        "--count",
        "20",
        "--processes",
        "2",
        "--hostile",
        "1",
        "--hostile-rate",
        "2000",
        "--duration",
        "1.5",
        "--report",
        "0.5",
    )
    output, _ = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0, output.decode()
    lines = output.decode().splitlines()
    totals = json.loads(lines[-1])
    assert totals["total"] is True
    assert totals["registrations"] >= 20
    finals = [json.loads(line.split(": ", 1)[1]) for line in lines if '"final"' in line]
    assert len(finals) == 2
    assert all(final["hostile_sent"] > 0 for final in finals)
    assert all(final["deregistered"] == 10 for final in finals), finals
    # The server counted the garbage (aiocoap alone lets some of it escape as errors with
    # tracebacks), logged a bounded number of lines, and nothing reached the event loop.
    assert server.lwm2m.rejects.counts["malformed datagram"] > 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) < 40
    # The flood left the server serving: a well-behaved client still registers.
    client = Lwm2mClient(parcel_locker("after"), Lwm2mOptions(server=server.uri))
    await client.start()
    await client.stop()


# -- the object layout ------------------------------------------------------------------------


class _Hooks:
    lifetime = 60
    default_pmin = 0
    default_pmax = 0
    binding = "U"

    def reboot(self) -> None:
        """Nothing to reboot."""

    def trigger_update(self) -> None:
        """Nothing to update."""


@pytest.mark.parametrize("factory", [parcel_locker, sensor_node])
def test_object_layout_agrees_with_the_object_registry(factory: Any) -> None:
    """Every resource the simulator serves exists in objects.json with the operations it
    offers, and reads as a value of the registry's type (the vendor object excepted)."""
    tree = ObjectTree(factory(), _Hooks(), vendor_object=True)
    registry = default_registry()
    for instance, resources in tree.instances.items():
        if instance.ids[0] == 31024:
            assert registry.object(31024) is None  # the unknown-object case stays unknown
            continue
        for resource_id, resource in resources.items():
            path = instance.child(resource_id)
            definition = registry.resource(path)
            assert definition is not None, path
            assert set(resource.operations) <= set(definition.operations.value), path
        values = tree.read(instance)
        for path, value in values.items():
            encode(TLV, {path: value}, path)  # typed by the registry: raises on a mismatch


@pytest.mark.parametrize(
    ("payload", "arguments"),
    [
        (b"", ()),
        (b"1", ((1, None),)),
        (b"0='x'", ((0, "x"),)),
        (b"0='open',3, 5=''", ((0, "open"), (3, None), (5, ""))),
    ],
)
def test_execute_arguments_follow_the_lwm2m_arglist_syntax(
    payload: bytes, arguments: tuple[tuple[int, str | None], ...]
) -> None:
    assert parse_arguments(payload) == arguments


@pytest.mark.parametrize("payload", [b"12", b"a", b"0='x", b"0=x", b"1,,2"])
def test_malformed_execute_arguments_are_a_4_00(payload: bytes) -> None:
    with pytest.raises(Lwm2mError) as refused:
        parse_arguments(payload)
    assert refused.value.code == "4.00"


def test_a_read_format_the_version_lacks_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="read format 112"):
        Lwm2mClient(parcel_locker(), Lwm2mOptions(version="1.0", read_format=SENML_CBOR))
