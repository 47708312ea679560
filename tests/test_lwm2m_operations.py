"""Path-addressed LwM2M operations through `iot_bridge.send_command` (no capability), against
the project's simulated client over real UDP: the answer comes back to the automation."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncGenerator
from typing import Any

import aiocoap
import pytest
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError

from custom_components.iot_bridge.const import DOMAIN
from custom_components.iot_bridge.core.bridge import OperationError, OperationFailure
from custom_components.iot_bridge.core.lwm2m import (
    CodecError,
    ContentFormat,
    LwM2MPath,
    default_registry,
)
from custom_components.iot_bridge.core.lwm2m.operations import parse_operation
from custom_components.iot_bridge.core.lwm2m.senml import decode_path_list, encode_path_list
from custom_components.iot_bridge.logbook import describe_outcome
from iot_bridge_sim.devices import sensor_node
from iot_bridge_sim.lwm2m import Lwm2mClient, Lwm2mOptions

from .common import record_command_events, registry_device, setup_entry, wait_for
from .test_lwm2m_hub import ENTRY_ID, _state, lwm2m_entry

pytestmark = pytest.mark.usefixtures("socket_enabled")

TEMPERATURE = "sensor.sensor1_temperature"
LIGHT = "light.sensor1_light_control"


async def _operate(hass: HomeAssistant, device: str, action: str, **params: Any) -> dict[str, Any]:
    entry = registry_device(hass, ENTRY_ID, device)
    assert entry is not None
    deadline = params.pop("deadline", None)
    data: dict[str, Any] = {"device_id": entry.id, "action": action, "params": params}
    if deadline is not None:
        data["deadline"] = deadline
    response = await hass.services.async_call(
        DOMAIN, "send_command", data, blocking=True, return_response=True
    )
    assert response is not None
    return dict(response)


@pytest.fixture
async def client(hass: HomeAssistant, unused_udp_port: int) -> AsyncGenerator[Lwm2mClient]:
    """A sensor node with the vendor object, registered and accepted."""
    await setup_entry(hass, lwm2m_entry(unused_udp_port))
    node = Lwm2mClient(
        sensor_node(),
        Lwm2mOptions(server=f"coap://127.0.0.1:{unused_udp_port}", vendor_object=True),
    )
    await node.start()
    try:
        await wait_for(lambda: _state(hass, LIGHT) not in (None, "unavailable"), what="light")
        yield node
    finally:
        await node.stop()


def _served(client: Lwm2mClient, method: str, path: str) -> list[bytes]:
    return [
        r.payload
        for r in client.received
        if r.method == method and r.path == path and r.handling == "served"
    ]


async def test_read_discover_and_write_return_the_answer(
    hass: HomeAssistant, client: Lwm2mClient
) -> None:
    events = record_command_events(hass)
    client.publish_state({"temperature": 23.5})
    read = await _operate(hass, "sensor1", "read", path="/3303/0/5700")
    assert read["code"] == "2.05"
    assert read["values"] == {"/3303/0/5700": 23.5}
    assert read["path"] == "/3303/0/5700"
    assert read["latency_ms"] > 0
    whole = await _operate(hass, "sensor1", "read", path="/3303/0")
    assert whole["values"]["/3303/0/5701"] == "Cel"
    assert events[0]["outcome"] == "confirmed"
    assert events[0]["path"] == "/3303/0/5700"
    assert events[0]["device_name"]
    assert events[0]["deadline_s"] > 0
    assert describe_outcome(events[0]).startswith("/3303/0/5700 read: confirmed in ")

    composite = await _operate(
        hass, "sensor1", "read_composite", paths=["/3303/0/5700", "/3311/0/5851"]
    )
    assert composite["code"] == "2.05"
    assert composite["values"] == {"/3303/0/5700": 23.5, "/3311/0/5851": 50}
    fetches = [r for r in client.received if r.method == "FETCH"]
    assert fetches[-1].content_format == ContentFormat.SENML_JSON  # what this client lists

    links = await _operate(hass, "sensor1", "discover", path="/3311/0")
    assert {link["path"] for link in links["links"]} >= {"/3311/0/5850", "/3311/0/5851"}

    # Partial update: on/off and dimmer in one POST; the light entity follows.
    partial = await _operate(
        hass, "sensor1", "write_partial", path="/3311/0", values={"5850": True, "5851": 40}
    )
    assert partial["code"] == "2.04"
    assert _served(client, "POST", "/3311/0")
    await wait_for(lambda: _state(hass, LIGHT) == "on", what="light on")
    # Replace of one resource: PUT.
    await _operate(hass, "sensor1", "write", path="/31024/0/1", value="renamed")
    assert _served(client, "PUT", "/31024/0/1")
    read = await _operate(hass, "sensor1", "read", path="/31024/0/1")
    assert read["values"] == {"/31024/0/1": "renamed"}


async def test_execute_with_arguments_create_and_delete(
    hass: HomeAssistant, client: Lwm2mClient
) -> None:
    created = await _operate(
        hass, "sensor1", "create", path="/31024", instance=7, values={"1": "made here"}
    )
    assert created["code"] == "2.01"
    assert created["instance"] == "/31024/7"
    read = await _operate(hass, "sensor1", "read", path="/31024/7/1")
    assert read["values"] == {"/31024/7/1": "made here"}
    # The client picks the id when none is named (TLV resources only).
    picked = await _operate(hass, "sensor1", "create", path="/31024", values={"0": 5})
    assert picked["instance"] not in ("/31024/7", "/31024/0")
    executed = await _operate(hass, "sensor1", "execute", path="/31024/7/2", arguments="0='x'")
    assert executed["code"] == "2.04"
    assert _served(client, "POST", "/31024/7/2") == [b"0='x'"]
    assert [e.path for e in client.executed if e.operation == "execute"] == ["/31024/7/2"]
    deleted = await _operate(hass, "sensor1", "delete", path="/31024/7")
    assert deleted["code"] == "2.02"
    with pytest.raises(HomeAssistantError, match=r"refused read of /31024/7/1: 4\.04"):
        await _operate(hass, "sensor1", "read", path="/31024/7/1")


async def test_write_attributes_observe_and_cancel(
    hass: HomeAssistant, client: Lwm2mClient
) -> None:
    answer = await _operate(
        hass, "sensor1", "write_attributes", path="/31024/0/0", attributes={"pmin": 0, "pmax": 30}
    )
    assert answer["code"] == "2.04"
    assert [r.query for r in client.received if r.path == "/31024/0/0" and r.method == "PUT"] == [
        ("pmin=0", "pmax=30")
    ]
    observed = await _operate(hass, "sensor1", "observe", path="/31024/0/0")
    assert observed["code"] == "2.05"
    assert observed["values"] == {"/31024/0/0": 0}
    assert "/31024/0/0" in client.observations
    cancelled = await _operate(hass, "sensor1", "cancel_observe", path="/31024/0/0")
    assert cancelled["was_observed"] is True
    await wait_for(lambda: "/31024/0/0" not in client.observations, what="cancelled on the wire")


async def test_bad_requests_and_refusals_are_clear_errors(
    hass: HomeAssistant, client: Lwm2mClient
) -> None:
    sent = len(client.received)
    with pytest.raises(ServiceValidationError, match="unknown action 'reboot'"):
        await _operate(hass, "sensor1", "reboot", path="/3/0/4")
    with pytest.raises(ServiceValidationError, match="path of an resource"):
        await _operate(hass, "sensor1", "execute", path="/3/0")
    with pytest.raises(ServiceValidationError, match="argument list"):
        await _operate(hass, "sensor1", "execute", path="/31024/0/2", arguments="x=1")
    with pytest.raises(ServiceValidationError, match='"path" is required'):
        await _operate(hass, "sensor1", "read")
    with pytest.raises(ServiceValidationError, match="boolean"):
        await _operate(hass, "sensor1", "write", path="/3311/0/5850", value="maybe")
    assert len(client.received) == sent  # nothing went on the wire
    events = record_command_events(hass)
    with pytest.raises(HomeAssistantError, match=r"sensor1 refused create of /3303: 4\.05"):
        await _operate(hass, "sensor1", "create", path="/3303", values={"5700": 1.0})
    assert events[-1]["outcome"] == "rejected"
    client.behaviour.silent = True
    with pytest.raises(HomeAssistantError, match="did not answer read of /3303/0/5700 in time"):
        await _operate(hass, "sensor1", "read", path="/3303/0/5700", deadline=0.5)
    assert events[-1]["outcome"] == "timeout"


# -- LwM2M 1.1 Send ------------------------------------------------------------------------


async def test_send_updates_entities_and_bad_sends_are_refused(
    hass: HomeAssistant, client: Lwm2mClient, caplog: pytest.LogCaptureFixture
) -> None:
    # Changed on the device without a notification: only the Send can tell Home Assistant.
    client.model.state["temperature"] = 31.5
    assert await client.send(["/3303/0/5700"]) == "2.04"
    await wait_for(lambda: _state(hass, TEMPERATURE) == "31.5", what="sent temperature")
    client.model.state["temperature"] = 12.25
    assert await client.send(["/3303/0"], content_format=ContentFormat.SENML_CBOR) == "2.04"
    await wait_for(lambda: _state(hass, TEMPERATURE) == "12.25", what="SenML CBOR Send")

    for _ in range(2):
        answer = await client.send([], payload=b'[{"n":"/3303/0/5700","v":', content_format=110)
        assert answer == "4.00"
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("dropped a Send" in r.getMessage() for r in warnings) == 1  # logged once
    assert await client.send([], payload=b"21", content_format=0) == "4.15"
    assert _state(hass, TEMPERATURE) == "12.25"


async def test_send_from_an_unregistered_address_is_not_found(
    hass: HomeAssistant, client: Lwm2mClient, unused_udp_port: int
) -> None:
    request = aiocoap.Message(
        code=aiocoap.POST,
        uri_path=("dp",),
        payload=b'[{"n":"/3303/0/5700","v":99}]',
        content_format=ContentFormat.SENML_JSON,
    )
    request.mtype, request.mid, request.token = aiocoap.CON, 4711, b"st"
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.setblocking(False)
        stranger.bind(("127.0.0.1", 0))
        await loop.sock_sendto(stranger, request.encode(), ("127.0.0.1", unused_udp_port))
        data, _ = await asyncio.wait_for(loop.sock_recvfrom(stranger, 1500), 5)
    answer = aiocoap.Message.decode(data)
    assert answer.code == aiocoap.NOT_FOUND
    assert _state(hass, TEMPERATURE) != "99"


async def test_a_new_firmware_version_reaches_the_device_page(
    hass: HomeAssistant, client: Lwm2mClient
) -> None:
    device = registry_device(hass, ENTRY_ID, "sensor1")
    assert device is not None
    assert device.sw_version != "2.0.0"
    payload = b'[{"bn":"/3/0/","n":"3","vs":"2.0.0"}]'
    assert await client.send([], payload=payload, content_format=110) == "2.04"
    await wait_for(
        lambda: getattr(registry_device(hass, ENTRY_ID, "sensor1"), "sw_version", None) == "2.0.0",
        what="the device page's firmware version",
    )


@pytest.mark.parametrize("cbor", [False, True], ids=["json", "cbor"])
def test_composite_path_lists_round_trip_and_refuse_values(cbor: bool) -> None:
    paths = [LwM2MPath(3, 0, 9), LwM2MPath(3303, 0), LwM2MPath(31024)]
    assert decode_path_list(encode_path_list(paths, cbor=cbor), cbor=cbor) == paths
    assert decode_path_list(b'[{"bn":"/3/0/","n":"1"},{"n":"2"}]', cbor=False) == [
        LwM2MPath(3, 0, 1),
        LwM2MPath(3, 0, 2),
    ]
    with pytest.raises(CodecError, match="only bn and n"):
        decode_path_list(b'[{"n":"/3/0/1","v":1}]', cbor=False)


@pytest.mark.parametrize(
    ("action", "params", "message"),
    [
        ("write_attributes", {"path": "/3303/0/5700", "attributes": {"often": 1}}, "unknown"),
        ("write_attributes", {"path": "/3303/0/5700", "attributes": {"pmin": "x"}}, "number"),
        ("write_attributes", {"path": "/3303/0/5700"}, '"attributes"'),
        ("write", {"path": "/3303/0/5700"}, '"value"'),
        ("write_partial", {"path": "/3311/0", "values": {}}, '"values"'),
        ("write_partial", {"path": "/3311/0", "values": {"x": 1}}, "not a resource id"),
        ("create", {"path": "/31024", "values": {}, "instance": "7"}, "whole number"),
        ("create", {"path": "/31024/0", "values": {}}, "object"),
        ("delete", {"path": "/31024"}, "instance"),
        ("read", {"path": "3303/0"}, "not an LwM2M path"),
        ("read_composite", {"paths": []}, '"paths"'),
        ("read_composite", {"paths": ["/3/0/9", "/x"]}, "not an LwM2M path"),
    ],
)
def test_operation_parameters_are_checked_before_sending(
    action: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(OperationError, match=message) as err:
        parse_operation(action, params, default_registry())
    assert err.value.failure is OperationFailure.INVALID


def test_operation_parameters_become_requests() -> None:
    registry = default_registry()
    attributes = parse_operation(
        "write_attributes",
        {"path": "/3303/0/5700", "attributes": {"pmin": 5, "gt": 20.5, "st": None}},
        registry,
    )
    assert attributes.query == ("pmin=5", "gt=20.5", "st")
    partial = parse_operation(
        "write_partial", {"path": "/3311/0", "values": {"5850": 1, "5851": 40}}, registry
    )
    assert partial.values == {LwM2MPath(3311, 0, 5850): True, LwM2MPath(3311, 0, 5851): 40}
    created = parse_operation(
        "create", {"path": "/31024", "values": {"1": "x"}, "instance": 3}, registry
    )
    assert (created.values, created.unnamed) == ({LwM2MPath(31024, 3, 1): "x"}, False)
