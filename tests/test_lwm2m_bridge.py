"""The LwM2M bridge against simulated clients on real UDP: registrations become devices,
objects become capabilities, notifications become state, commands are confirmed."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import aiocoap
import aiocoap.optiontypes
import pytest

from custom_components.iot_bridge.core.bridge import Admission
from custom_components.iot_bridge.core.commands import CommandEngine
from custom_components.iot_bridge.core.lwm2m import LwM2MPath, ResourceType, default_registry
from custom_components.iot_bridge.core.lwm2m.bridge import Lwm2mBridge, Lwm2mSettings
from custom_components.iot_bridge.core.lwm2m.codec import ContentFormat, encode
from custom_components.iot_bridge.core.lwm2m.mapping import Mapper
from custom_components.iot_bridge.core.lwm2m.registry import (
    ObjectDefinition,
    ObjectRegistry,
    Operations,
    ResourceDefinition,
)
from custom_components.iot_bridge.core.model import CommandResult, CommandStatus, Device
from iot_bridge_sim.devices import parcel_locker, sensor_node
from iot_bridge_sim.lwm2m import Lwm2mBehaviour, Lwm2mClient, Lwm2mOptions
from iot_bridge_sim.lwm2m_objects import Lwm2mError, showcase_node

from .common import wait_for

pytestmark = pytest.mark.usefixtures("socket_enabled")


class Listener:
    """BridgeListener that records what the hub would hear."""

    def __init__(self) -> None:
        self.discovered: list[str] = []
        self.removed: list[str] = []
        self.changes: list[tuple[str, frozenset[str] | None]] = []

    def device_discovered(self, device: Device, previous: Device | None) -> None:
        self.discovered.append(device.device_id)

    def device_removed(self, device_id: str) -> None:
        self.removed.append(device_id)

    def device_state_changed(self, device: Device, changed: frozenset[str] | None) -> None:
        self.changes.append((device.device_id, changed))

    def connection_changed(self, connected: bool) -> None:
        """Not used by a server."""


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Rig:
    """A started bridge and the clients a test starts against it."""

    def __init__(self, bridge: Lwm2mBridge, listener: Listener) -> None:
        self.bridge = bridge
        self.listener = listener
        self.clients: list[Lwm2mClient] = []
        self.uri = f"coap://127.0.0.1:{bridge.settings.port}"

    async def client(
        self,
        model: Any = None,
        behaviour: Lwm2mBehaviour | None = None,
        **options: Any,
    ) -> Lwm2mClient:
        client = Lwm2mClient(
            model or parcel_locker(),
            Lwm2mOptions(server=self.uri, **options),
            behaviour=behaviour,
        )
        await client.start()
        self.clients.append(client)
        return client

    async def device(self, name: str = "locker1") -> Device:
        await wait_for(lambda: name in self.bridge.devices, what=f"device {name}")
        return self.bridge.devices[name]

    async def command(
        self, device: str, key: str, action: str, deadline: float = 2.0, **params: Any
    ) -> CommandResult:
        capability = self.bridge.devices[device].capabilities[key]
        command = self.bridge.engine.new_command(
            device, key, action, params, deadline=deadline, retries=2
        )
        return await self.bridge.execute(command, capability)


MakeRig = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig() -> AsyncGenerator[MakeRig]:
    rigs: list[Rig] = []

    async def make(
        admission: Callable[[str], Admission] = lambda _ep: Admission.ACCEPTED,
        mapper: Mapper | None = None,
        **settings: Any,
    ) -> Rig:
        listener = Listener()
        bridge = Lwm2mBridge(
            Lwm2mSettings(host="127.0.0.1", port=_free_udp_port(), **settings),
            CommandEngine(),
            listener,
            admission=admission,
            mapper=mapper,
        )
        await bridge.start()
        rig = Rig(bridge, listener)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        for client in rig.clients:
            await client.stop()
        await rig.bridge.stop()


async def test_registered_locker_becomes_a_device_with_entities(make_rig: MakeRig) -> None:
    rig = await make_rig()
    await rig.client()
    device = await rig.device()
    caps = device.capabilities
    assert caps["10359_0"].kind.value == "lock"
    assert caps["10351_0_50"].kind.value == "binary_sensor"
    assert caps["10351_0_100"].kind.value == "button"
    assert caps["3303_0_5700"].device_class == "temperature"
    assert caps["3303_0_5700"].unit == "°C"  # UCUM "Cel" from 5701
    assert caps["3_0_9"].category == "diagnostic"
    assert caps["3_0_4"].device_class == "restart"
    assert device.info.manufacturer == "IoT Bridge demo"
    await wait_for(lambda: device.state.get("10359_0") == "locked")
    assert device.state["10351_0_50"] is False
    assert device.state["3303_0_5700"] == 21.5


async def test_notifications_update_state(make_rig: MakeRig) -> None:
    rig = await make_rig()
    client = await rig.client()
    device = await rig.device()
    await wait_for(lambda: device.state.get("3303_0_5700") == 21.5)
    client.publish_state({"temperature": 25.25})
    await wait_for(lambda: device.state.get("3303_0_5700") == 25.25, what="notification")


def _register(endpoint: str, objects: bytes) -> aiocoap.Message:
    """A bare client's Register (CON, message id 1), as bytes on the wire would carry it."""
    message = aiocoap.Message(
        code=aiocoap.POST,
        uri_path=("rd",),
        uri_query=(f"ep={endpoint}", "lt=60", "lwm2m=1.1", "b=U"),
        payload=objects,
        content_format=40,
    )
    message.mtype, message.mid, message.token = aiocoap.CON, 1, b"r"
    return message


class _BlockwiseClient(asyncio.DatagramProtocol):
    """A bare LwM2M client on a plain UDP socket whose generic sensor /3300/0 (TLV, units
    longer than a block) answers reads and notifies in 1,024-byte blocks (RFC 7959), as a
    constrained client does: the observation sees only each first block."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.value = 1.5
        self.observe_token: bytes | None = None
        self.transport: asyncio.DatagramTransport | None = None

    def body(self) -> bytes:
        instance = LwM2MPath(3300, 0)
        values = {instance.child(5700): self.value, instance.child(5701): "u" * 1500}
        return encode(ContentFormat.TLV, values, instance)

    def send(self, message: aiocoap.Message) -> None:
        assert self.transport is not None
        self.transport.sendto(message.encode(), self.server)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport
        self.send(_register("blocky", b"</3300/0>"))

    def block(self, number: int, observe: int | None = None) -> aiocoap.Message:
        body = self.body()
        chunk = body[number * 1024 : (number + 1) * 1024]
        more = (number + 1) * 1024 < len(body)
        answer = aiocoap.Message(code=aiocoap.CONTENT, payload=chunk, content_format=11542)
        answer.opt.block2 = aiocoap.optiontypes.BlockOption.BlockwiseTuple(number, more, 6)
        if observe is not None:
            answer.opt.observe = observe
        return answer

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        request = aiocoap.Message.decode(data)
        if not request.code.is_request():
            return  # the Register's 2.01, ACKs of notifications
        if request.opt.observe == 0:
            self.observe_token = request.token
            answer = self.block(0, observe=0)
        elif request.code == aiocoap.GET:
            block2 = request.opt.block2
            answer = self.block(block2.block_number if block2 is not None else 0)
        else:
            answer = aiocoap.Message(code=aiocoap.CHANGED)  # Write-Attributes
        answer.mtype, answer.mid, answer.token = aiocoap.ACK, request.mid, request.token
        self.send(answer)

    def notify(self, value: float) -> None:
        assert self.observe_token is not None
        self.value = value
        notification = self.block(0, observe=2)
        notification.mtype, notification.mid = aiocoap.NON, 7
        notification.token = self.observe_token
        self.send(notification)


async def test_notification_larger_than_one_block_is_read_whole(make_rig: MakeRig) -> None:
    """Observations run without aiocoap's block-wise layer: a first answer or notification
    bigger than one block arrives as its first block, and the bridge reads the instance
    whole (RFC 7959 2.6) instead of decoding a fragment."""
    rig = await make_rig()
    loop = asyncio.get_running_loop()
    server = ("127.0.0.1", rig.bridge.settings.port)
    transport, client = await loop.create_datagram_endpoint(
        lambda: _BlockwiseClient(server), local_addr=("127.0.0.1", 0)
    )
    try:
        device = await rig.device("blocky")
        key = next(key for key, value in device.state.items() if value == 1.5)
        assert key.startswith("3300_0")
        client.notify(2.5)
        await wait_for(lambda: rig.bridge.devices["blocky"].state.get(key) == 2.5, what="value")
        assert "payload" not in rig.bridge.rejects.counts  # no fragment was decoded
    finally:
        await rig.bridge.stop()
        transport.close()


class _Device0Client(asyncio.DatagramProtocol):
    """A bare LwM2M client whose Device object names its manufacturer (TLV)."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def register(self) -> None:
        assert self.transport is not None
        self.transport.sendto(_register("late", b"</3/0>").encode(), self.server)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        request = aiocoap.Message.decode(data)
        if not request.code.is_request():
            return
        if request.code == aiocoap.GET:
            instance = LwM2MPath(3, 0)
            payload = encode(ContentFormat.TLV, {instance.child(0): "Late Inc"}, instance)
            answer = aiocoap.Message(code=aiocoap.CONTENT, payload=payload, content_format=11542)
            if request.opt.observe == 0:
                answer.opt.observe = 0
        else:
            answer = aiocoap.Message(code=aiocoap.CHANGED)  # Write-Attributes
        answer.mtype, answer.mid, answer.token = aiocoap.ACK, request.mid, request.token
        assert self.transport is not None
        self.transport.sendto(answer.encode(), addr)


async def test_client_listening_only_after_registering_is_read_again(make_rig: MakeRig) -> None:
    """Some clients (lwm2m-node-lib) register from a socket and start listening on that
    port a moment later: the server's first read finds the port closed (ICMP port
    unreachable) and is tried again shortly, so the device still gets its details."""
    rig = await make_rig()
    loop = asyncio.get_running_loop()
    server = ("127.0.0.1", rig.bridge.settings.port)
    first, client = await loop.create_datagram_endpoint(
        lambda: _Device0Client(server), local_addr=("127.0.0.1", 0)
    )
    port = first.get_extra_info("sockname")[1]
    client.register()
    first.close()  # gone before the 2.01 and the first read arrive
    await asyncio.sleep(0.25)
    listening, _ = await loop.create_datagram_endpoint(
        lambda: _Device0Client(server), local_addr=("127.0.0.1", port)
    )
    try:
        device = await rig.device("late")
        assert device.info.manufacturer == "Late Inc"
        assert "read /3/0" not in rig.bridge.rejects.counts
    finally:
        await rig.bridge.stop()
        listening.close()


async def test_lock_unlock_is_confirmed_by_the_observed_status(make_rig: MakeRig) -> None:
    rig = await make_rig()
    client = await rig.client()
    device = await rig.device()
    await wait_for(lambda: device.state.get("10359_0") == "locked")
    result = await rig.command("locker1", "10359_0", "unlock")
    assert result.status is CommandStatus.CONFIRMED, result
    assert device.state["10359_0"] == "unlocked"
    assert client.model.state["door1_lock"] == "unlocked"
    result = await rig.command("locker1", "10359_0", "open")
    assert result.status is CommandStatus.CONFIRMED, result
    await wait_for(lambda: device.state.get("10351_0_50") is True)
    assert len(client.executed) == 2


async def test_refused_execute_is_rejected_with_the_device_reason(make_rig: MakeRig) -> None:
    rig = await make_rig()
    await rig.client(behaviour=Lwm2mBehaviour(refuse="door blocked", refuse_code="4.05"))
    await rig.device()
    result = await rig.command("locker1", "10359_1", "unlock")
    assert result.status is CommandStatus.REJECTED
    assert result.reason is not None
    assert "4.05" in result.reason
    assert "door blocked" in result.reason


async def test_jammed_lock_is_rejected_before_the_deadline(make_rig: MakeRig) -> None:
    rig = await make_rig()
    await rig.client(behaviour=Lwm2mBehaviour(jam={"door2_lock"}))
    await rig.device()
    started = asyncio.get_running_loop().time()
    result = await rig.command("locker1", "10359_1", "unlock", deadline=1.0)
    assert result.status is CommandStatus.REJECTED
    assert "stayed" in (result.reason or "")
    assert asyncio.get_running_loop().time() - started < 1.0


async def test_late_status_still_confirms_within_the_deadline(make_rig: MakeRig) -> None:
    rig = await make_rig()
    await rig.client(behaviour=Lwm2mBehaviour(status_delay=0.4))
    device = await rig.device()
    result = await rig.command("locker1", "10359_2", "unlock", deadline=2.0)
    assert result.status is CommandStatus.CONFIRMED, result
    assert result.latency_ms >= 350
    assert device.state["10359_2"] == "unlocked"


async def test_silent_device_times_out_and_executes_once(make_rig: MakeRig) -> None:
    rig = await make_rig()
    client = await rig.client()
    await rig.device()
    client.behaviour.silent = True
    result = await rig.command("locker1", "10359_0", "unlock", deadline=1.0)
    assert result.status is CommandStatus.TIMEOUT
    assert result.attempts == 1  # an Execute is never sent again as a new request
    assert len({r.message_id for r in client.received if r.path == "/10359/0/100"}) == 1
    assert len([e for e in client.executed if e.path == "/10359/0/100"]) == 1


async def test_writes_confirm_for_switch_number_and_light(make_rig: MakeRig) -> None:
    rig = await make_rig()
    client = await rig.client(sensor_node())
    device = await rig.device("sensor1")
    assert (
        await rig.command("sensor1", "3312_0_5850", "turn_on")
    ).status is CommandStatus.CONFIRMED
    assert device.state["3312_0_5850"] is True
    result = await rig.command("sensor1", "3308_0_5900", "set", value=22.5)
    assert result.status is CommandStatus.CONFIRMED, result
    assert device.state["3308_0_5900"] == 22.5
    result = await rig.command("sensor1", "3311_0", "turn_on", brightness=128)
    assert result.status is CommandStatus.CONFIRMED, result
    assert device.state["3311_0"]["on"] is True
    assert client.model.state["light"]["on"] is True


async def test_unknown_object_still_appears(make_rig: MakeRig) -> None:
    """An object nobody defined: what it reads back becomes diagnostic sensors, enabled
    because the instance is observed (its values are live), and a change arrives."""
    rig = await make_rig()
    client = await rig.client(sensor_node(), vendor_object=True)
    device = await rig.device("sensor1")
    vendor = {key: cap for key, cap in device.capabilities.items() if key.startswith("31024_")}
    # 31024/0/2 is executable, but nothing on the wire says so: no button.
    assert sorted(vendor) == ["31024_0_0", "31024_0_1"]
    for cap in vendor.values():
        assert cap.kind.value == "sensor"
        assert cap.category == "diagnostic"
        assert cap.enabled_by_default is True
    assert vendor["31024_0_0"].name == "Object 31024 0 resource 0"
    assert vendor["31024_0_0"].state_class == "measurement"
    assert vendor["31024_0_1"].state_class is None
    assert "/31024/0" in rig.bridge.diagnostics()["endpoints"]["sensor1"]["observing"]
    await wait_for(lambda: rig.bridge.devices["sensor1"].state.get("31024_0_0") == 0)
    assert rig.bridge.devices["sensor1"].state["31024_0_1"] == "vendor instance 0"
    client.tree.stored[LwM2MPath(31024, 0, 0)] = 7  # the device counts on its own
    client.publish_state({})
    await wait_for(
        lambda: rig.bridge.devices["sensor1"].state.get("31024_0_0") == 7,
        what="notification of the vendor object",
    )


def _reads_resources_only(client: Lwm2mClient) -> None:
    """Answer like lwm2m-node-lib's client: a Read of a whole instance is 4.04 (it reads
    single resources only), a Discover of it lists its resources."""
    dispatch = client._dispatch

    async def resources_only(request: aiocoap.Message, path: LwM2MPath) -> aiocoap.Message:
        if request.code == aiocoap.GET and path.depth == 2 and request.opt.accept != 40:
            raise Lwm2mError("4.04", f"read the resources of {path} one at a time")
        return await dispatch(request, path)

    client._dispatch = resources_only  # type: ignore[method-assign]


async def test_client_reading_single_resources_only_is_read_and_observed_per_resource(
    make_rig: MakeRig,
) -> None:
    """An instance read refused: Discover lists its resources, each is read and the ones
    behind entities (every one of an unknown object) are observed on their own."""
    rig = await make_rig()
    client = Lwm2mClient(
        sensor_node(), Lwm2mOptions(server=rig.uri, vendor_object=True, version="1.0")
    )
    _reads_resources_only(client)
    await client.start()
    rig.clients.append(client)
    device = await rig.device("sensor1")
    await wait_for(lambda: device.state.get("3303_0_5700") == 21.0)
    assert device.info.manufacturer is not None
    assert device.capabilities["3303_0_5700"].unit == "°C"  # 5701, read on its own
    vendor = device.capabilities["31024_0_1"]
    assert vendor.enabled_by_default is True  # observed: live values
    assert device.state["31024_0_1"] == "vendor instance 0"
    observing = rig.bridge.diagnostics()["endpoints"]["sensor1"]["observing"]
    assert "/3303/0/5700" in observing
    assert {"/31024/0/0", "/31024/0/1"} <= set(observing)
    assert not [path for path in observing if path.count("/") < 3]
    observes = [r.path for r in client.received if r.method == "GET" and r.observe == 0]
    assert all(path.count("/") == 3 for path in observes), observes
    client.publish_state({"temperature": 25.25})
    await wait_for(lambda: device.state.get("3303_0_5700") == 25.25, what="notification")


async def test_client_listing_no_formats_gets_reads_without_accept(make_rig: MakeRig) -> None:
    """A 1.0 client that lists no content formats picks its own: no Accept option (some
    clients drop a request whose Accept they do not know), its answer's format is read."""
    rig = await make_rig()
    client = await rig.client(sensor_node(), version="1.0")
    device = await rig.device("sensor1")
    await wait_for(lambda: device.state.get("3303_0_5700") == 21.0)
    reads = [r for r in client.received if r.method == "GET" and r.accept != 40]
    assert reads
    assert {r.accept for r in reads} == {None}
    assert rig.bridge.diagnostics()["endpoints"]["sensor1"]["format"] is None


async def test_multiple_resource_shows_its_first_instance(make_rig: MakeRig) -> None:
    """Connectivity's IP addresses (4/0/4) is a multiple resource: its sensor shows the
    first address instead of never having a value."""
    rig = await make_rig()
    await rig.client(showcase_node())
    await rig.device("showcase1")
    await wait_for(lambda: rig.bridge.devices["showcase1"].state.get("4_0_4") == "192.0.2.10")
    assert rig.bridge.devices["showcase1"].state["4_0_2"] == -70


def _vendor_registry() -> ObjectRegistry:
    def resource(rid: int, name: str, kind: ResourceType, ops: Operations) -> ResourceDefinition:
        return ResourceDefinition(rid, name, kind, ops)

    vendor = ObjectDefinition(
        31024,
        "Vendor",
        resources={
            0: resource(0, "Counter", ResourceType.INTEGER, Operations.R),
            1: resource(1, "Label", ResourceType.STRING, Operations.RW),
            2: resource(2, "Blink", ResourceType.NONE, Operations.E),
        },
    )
    return ObjectRegistry([*default_registry(), vendor])


async def test_object_without_entities_but_with_a_definition_gets_buttons(
    make_rig: MakeRig,
) -> None:
    """With a definition (no line in entities.json) executable resources are buttons."""
    registry = _vendor_registry()
    rig = await make_rig(mapper=Mapper(registry=registry))
    client = await rig.client(sensor_node(), vendor_object=True)
    device = await rig.device("sensor1")
    blink = device.capabilities["31024_0_2"]
    assert (blink.kind.value, blink.name, blink.category) == ("button", "Vendor 0 Blink", "config")
    assert device.capabilities["31024_0_0"].name == "Vendor 0 Counter"
    await wait_for(lambda: rig.bridge.devices["sensor1"].state.get("31024_0_0") == 0)
    result = await rig.command("sensor1", "31024_0_2", "press")
    assert result.status is CommandStatus.CONFIRMED, result
    assert [e.path for e in client.executed] == ["/31024/0/2"]
    await wait_for(lambda: rig.bridge.devices["sensor1"].state.get("31024_0_0") == 1)


def test_unobserved_unknown_object_is_disabled_by_default() -> None:
    """A value read once and never again would be stale: its sensor starts disabled."""
    instance = LwM2MPath(31024, 0)
    values = {instance.child(0): 3}
    mapper = Mapper()
    (unobserved,) = mapper.bindings([instance], values)
    assert unobserved.capability.enabled_by_default is False
    (observed,) = mapper.bindings([instance], values, frozenset({instance}))
    assert observed.capability.enabled_by_default is True


async def test_pending_endpoint_gets_nothing_until_admitted(make_rig: MakeRig) -> None:
    asked: list[str] = []

    def ask(endpoint: str) -> Admission:
        asked.append(endpoint)
        return Admission.PENDING

    rig = await make_rig(admission=ask)
    client = await rig.client()
    await wait_for(lambda: asked == ["locker1"])
    await asyncio.sleep(0.3)
    assert "locker1" not in rig.bridge.devices
    assert client.received == []  # no request beyond the registration's answer
    await rig.bridge.admit("locker1")
    await rig.device()
    assert client.received


async def test_expiry_makes_unavailable_and_update_brings_back(make_rig: MakeRig) -> None:
    rig = await make_rig()
    client = await rig.client(lifetime=1)
    device = await rig.device()
    assert device.available
    client.go_offline()  # stops updating
    await wait_for(lambda: not device.available, timeout=6, what="lifetime expiry")
    client.go_online()  # its Update gets 4.04 (the server forgot it), so it registers again
    await wait_for(
        lambda: rig.bridge.devices["locker1"].available, timeout=6, what="back on Register"
    )
    assert rig.listener.removed == []  # a returning endpoint keeps its device and entities


async def test_new_address_keeps_the_device_and_its_observations(make_rig: MakeRig) -> None:
    rig = await make_rig()
    client = await rig.client()
    device = await rig.device()
    await wait_for(lambda: device.state.get("3303_0_5700") == 21.5)
    await client.rebind()  # NAT rebinding: same endpoint, new port, an Update
    await asyncio.sleep(0.3)
    client.publish_state({"temperature": 19.0})
    await wait_for(
        lambda: rig.bridge.devices["locker1"].state.get("3303_0_5700") == 19.0,
        what="notification from the new address",
    )
    assert rig.listener.removed == []
