"""Admission control of the LwM2M server: a flooding client is limited and logged once,
and a well-behaved device still registers and has its command confirmed meanwhile."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import aiocoap
import pytest

from custom_components.iot_bridge.core.lwm2m.admission import (
    AdmissionLimits,
    FirstSight,
    RateLimiter,
)
from custom_components.iot_bridge.core.lwm2m.server import Lwm2mServer
from custom_components.iot_bridge.core.model import CommandStatus
from iot_bridge_sim.lwm2m_fleet import Counters, Hostile, connect

from .common import wait_for
from .test_lwm2m_bridge import MakeRig, make_rig  # noqa: F401
from .test_lwm2m_registration import Clock

pytestmark = pytest.mark.usefixtures("socket_enabled")


# -- the rate limiter --------------------------------------------------------------------------


def test_rate_limiter_allows_the_burst_then_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, 3, clock=clock)
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.retry_after("a") == pytest.approx(0.5)
    assert limiter.allow("b")  # another source has its own bucket
    clock.now += 0.25
    assert not limiter.allow("a")  # half a token is not a token
    clock.now += 0.25
    assert limiter.allow("a")
    assert not limiter.allow("a")
    clock.now += 60
    assert limiter.retry_after("a") == 0.0
    # Refilled to the burst, never beyond it.
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]


def test_rate_limiter_refusals_do_not_earn_tokens() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 1, clock=clock)
    assert limiter.allow("a")
    for _ in range(10):  # hammering it while empty
        clock.now += 0.05
        assert not limiter.allow("a")
    clock.now += 0.51  # just over 1 s since the token was taken
    assert limiter.allow("a")


def test_rate_limiter_and_first_sight_are_bounded() -> None:
    limiter = RateLimiter(1.0, 1, max_keys=3, clock=Clock())
    for key in "abcd":
        assert limiter.allow(key)
    assert len(limiter) == 3
    assert limiter.allow("a")  # forgotten: a full bucket again
    seen = FirstSight(max_sources=2)
    assert seen.first("x")
    assert not seen.first("x")
    assert seen.first("y")
    assert seen.first("z")  # x is forgotten now
    assert seen.first("x")


def test_rate_limiter_refuses_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="positive rate"):
        RateLimiter(0, 5)
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(1, 0.5)


# -- the server's registration interface (no socket) ------------------------------------------


class _Remote:
    def __init__(self, port: int) -> None:
        self.hostinfo = f"127.0.0.1:{port}"


class _Listener:
    def registered(self, registration: Any, previous: Any) -> None:
        """Accepted."""

    def updated(self, registration: Any, previous: Any) -> None:
        """Accepted."""

    def deregistered(self, registration: Any, *, expired: bool) -> None:
        """Accepted."""


def _register(server: Lwm2mServer, endpoint: str, port: int) -> aiocoap.Message:
    request = aiocoap.Message(
        code=aiocoap.POST, uri_path=("rd",), uri_query=(f"ep={endpoint}", "lt=60")
    )
    request.payload = b"</3/0>"
    request.remote = _Remote(port)
    return server.handle(request)


def test_registers_from_one_source_beyond_its_rate_get_5_03_with_max_age() -> None:
    clock = Clock()
    server = Lwm2mServer(
        "127.0.0.1",
        0,
        _Listener(),
        clock=clock,
        limits=AdmissionLimits(register_rate=0.5, register_burst=2),
    )
    answers = [_register(server, f"ep{n}", 4000) for n in range(3)]
    assert [a.code for a in answers] == [
        aiocoap.CREATED,
        aiocoap.CREATED,
        aiocoap.SERVICE_UNAVAILABLE,
    ]
    assert answers[2].opt.max_age == 2  # one token at 0.5/s
    assert _register(server, "other", 4001).code == aiocoap.CREATED  # another source
    clock.now += 2
    assert _register(server, "ep2", 4000).code == aiocoap.CREATED
    assert server.rejects.counts["registrations"] == 1


def test_new_endpoints_beyond_the_pending_cap_wait_and_devices_never_do() -> None:
    clock = Clock()
    devices: set[str] = set()
    server = Lwm2mServer(
        "127.0.0.1",
        0,
        _Listener(),
        clock=clock,
        limits=AdmissionLimits(max_pending=2),
        known=devices.__contains__,
    )
    devices.add("known")
    assert _register(server, "new1", 5001).code == aiocoap.CREATED
    assert _register(server, "new2", 5002).code == aiocoap.CREATED
    refused = _register(server, "new3", 5003)
    assert refused.code == aiocoap.SERVICE_UNAVAILABLE
    assert refused.opt.max_age == 30
    assert b"waiting" in refused.payload
    # A device, and an endpoint registered already (re-registering), still get in.
    assert _register(server, "known", 5004).code == aiocoap.CREATED
    assert _register(server, "new1", 5001).code == aiocoap.CREATED
    assert server.pending == 2
    # new1 (the oldest) became a device: its room is free at once.
    devices.add("new1")
    assert _register(server, "new3", 5003).code == aiocoap.CREATED
    # new3 became a device, but new2 (older, still waiting) hides it until the pending
    # endpoints are all looked at again (at most once a second).
    devices.add("new3")
    assert _register(server, "new4", 5005).code == aiocoap.SERVICE_UNAVAILABLE
    clock.now += 1
    assert _register(server, "new4", 5005).code == aiocoap.CREATED
    assert server.rejects.counts["registrations of new endpoints"] == 2


# -- a flood on real UDP ----------------------------------------------------------------------


async def test_flooding_source_is_limited_and_logged_once_while_a_device_is_served(
    make_rig: MakeRig,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    # aiocoap logs every datagram at debug level; the server's own lines are what counts.
    for name in ("coap", "coap-server"):
        caplog.set_level(logging.INFO, logger=name)
    rig = await make_rig()
    server = rig.bridge.server
    counters = Counters()
    hostile = Hostile(counters)
    await connect(hostile, ("127.0.0.1", 0), ("127.0.0.1", rig.bridge.settings.port))
    assert hostile.transport is not None
    flood_port = hostile.transport.get_extra_info("sockname")[1]
    # 3,000 datagrams/s: Registers with random names, broken Registers, Updates of
    # nothing, garbage (iot_bridge_sim.lwm2m_fleet's hostile mode).
    flooding = asyncio.create_task(hostile.flood(3000))
    try:
        await wait_for(lambda: server.rejects.counts["requests"] > 100, what="the flood")
        started = asyncio.get_running_loop().time()
        client = await rig.client()
        device = await rig.device()
        await wait_for(lambda: device.state.get("10359_0") == "locked")
        result = await rig.command("locker1", "10359_0", "unlock", deadline=3.0)
        assert result.status is CommandStatus.CONFIRMED, result
        assert client.model.state["door1_lock"] == "unlocked"
        flooded_for = asyncio.get_running_loop().time() - started
        assert counters.hostile_sent > 1000
    finally:
        flooding.cancel()
        await asyncio.gather(flooding, return_exceptions=True)
        hostile.transport.close()
    limits = server.limits
    # Requests beyond the source's rate were dropped before parsing, garbage too.
    assert server.rejects.counts["requests"] > 100
    assert server.rejects.counts["malformed datagram"] > 0
    # Of the random endpoint names, only the register budget of that one source got in.
    flood_names = [r.endpoint for r in server.registrations if r.endpoint.startswith("flood-")]
    allowed = limits.register_burst + limits.register_rate * (flooded_for + 10)
    assert 0 < len(flood_names) <= allowed
    # One warning per cause for the flooding source, not one per datagram.
    about_flood = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and f":{flood_port}" in r.getMessage()
    ]
    assert about_flood, "the flooding source was not named in a warning"
    assert len(about_flood) <= 5, about_flood
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_malformed_datagrams_are_dropped_before_parsing(make_rig: MakeRig) -> None:  # noqa: F811
    rig = await make_rig()
    server = rig.bridge.server
    parsed: list[bytes] = []
    original = aiocoap.Message.decode

    def counting(data: bytes, remote: Any = None) -> aiocoap.Message:
        parsed.append(bytes(data))
        return original(data, remote)

    garbage = [
        b"\x40",  # shorter than a header
        b"\x80\x01\x00\x01",  # CoAP version 2
        b"\x4f\x02\x00\x01" + b"\x00" * 8,  # token length 15
        b"\x40\xe0\x00\x01",  # code class 7
        b"\x70\xb7\x00\x01",  # a Reset with a code
        b"\x60\x02\x00\x01",  # an ACK carrying a request
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        aiocoap.Message.decode = counting
        try:
            for datagram in garbage:
                sock.sendto(datagram, ("127.0.0.1", rig.bridge.settings.port))
            await wait_for(
                lambda: server.rejects.counts["malformed datagram"] >= len(garbage),
                what=lambda: dict(server.rejects.counts),
            )
        finally:
            aiocoap.Message.decode = original
    assert parsed == []


async def test_duplicate_register_gets_the_same_answer_remembered_for_67_s(
    make_rig: MakeRig,  # noqa: F811
) -> None:
    """aiocoap answers a retransmitted request from memory; the server keeps that memory
    for 67 s (not RFC 7252's 247 s): 10,000 clients' Updates would otherwise pile up."""
    rig = await make_rig()
    loop = asyncio.get_running_loop()
    request = aiocoap.Message(
        code=aiocoap.POST, uri_path=("rd",), uri_query=("ep=twice", "lt=60"), payload=b"</3/0>"
    )
    request.mtype, request.mid, request.token = aiocoap.CON, 4242, b"\x01\x02"
    answers: asyncio.Queue[aiocoap.Message] = asyncio.Queue()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            message = aiocoap.Message.decode(data)
            if message.mid == 4242:  # not the server's own requests (it reads the client)
                answers.put_nowait(message)

    transport, _ = await loop.create_datagram_endpoint(
        Client, remote_addr=("127.0.0.1", rig.bridge.settings.port)
    )
    got = []
    try:
        for _ in range(2):  # the same message id twice: a retransmission
            transport.sendto(request.encode())
            got.append(await asyncio.wait_for(answers.get(), 5))
    finally:
        transport.close()
    assert [a.code for a in got] == [aiocoap.CREATED, aiocoap.CREATED]
    assert got[0].opt.location_path == got[1].opt.location_path
    assert len(rig.bridge.server.registrations) == 1
    # aiocoap's MessageManager forgets each remembered request with a timer.
    context = rig.bridge.server._require_context()
    managers = [interface.token_interface for interface in context.request_interfaces]
    forget = [manager._recent_messages.pop for manager in managers]
    remembered = [
        handle.when() - loop.time()
        for handle in loop._scheduled  # type: ignore[attr-defined]
        if getattr(handle._callback, "func", None) in forget
    ]
    assert remembered
    assert all(60 < delay <= 67 for delay in remembered), remembered


async def test_blockwise_register_leaves_no_timer_after_stop(make_rig: MakeRig) -> None:  # noqa: F811
    """A Register in blocks (here only its first block: a flooder's garbage can look like
    that) starts aiocoap's reassembly timer; stopping the server cancels it (the test
    plugin fails a test that leaves a timer behind)."""
    rig = await make_rig()
    loop = asyncio.get_running_loop()
    request = aiocoap.Message(
        code=aiocoap.POST, uri_path=("rd",), uri_query=("ep=blocks",), payload=b"</3/0>," * 2
    )
    request.opt.block1 = aiocoap.optiontypes.BlockOption.BlockwiseTuple(0, True, 0)
    request.mtype, request.mid, request.token = aiocoap.CON, 77, b"\x07"
    answers: asyncio.Queue[aiocoap.Message] = asyncio.Queue()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            answers.put_nowait(aiocoap.Message.decode(data))

    transport, _ = await loop.create_datagram_endpoint(
        Client, remote_addr=("127.0.0.1", rig.bridge.settings.port)
    )
    try:
        transport.sendto(request.encode())
        answer = await asyncio.wait_for(answers.get(), 5)
    finally:
        transport.close()
    assert answer.code == aiocoap.CONTINUE
    await rig.bridge.stop()
    block_timers = [
        handle
        for handle in loop._scheduled  # type: ignore[attr-defined]
        if "TimeoutDict" in repr(handle) and not handle.cancelled()
    ]
    assert block_timers == []
