"""LwM2M registration interface: the rules (RegistrationStore) and the real UDP server,
driven by Debian's coap-client-notls as a client nobody here wrote."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
from collections.abc import AsyncGenerator

import pytest

from custom_components.iot_bridge.core.bridge import BridgeStartError
from custom_components.iot_bridge.core.lwm2m.registration import (
    DEFAULT_LIFETIME,
    Registration,
    RegistrationError,
    RegistrationStore,
    UnknownRegistration,
)
from custom_components.iot_bridge.core.lwm2m.server import Lwm2mServer

pytestmark = pytest.mark.usefixtures("socket_enabled")

COAP_CLIENT = shutil.which("coap-client-notls") or "/usr/bin/coap-client-notls"
OBJECTS = '</>;rt="oma.lwm2m";ct=110,</1>;ver=1.1,</1/0>,</3/0>,</3303/0>,</3303/1>'


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the rules -----------------------------------------------------------------------------


def test_register_update_deregister_rules() -> None:
    clock = Clock()
    store = RegistrationStore(clock)
    registration, previous = store.register(
        ("ep=node-1", "lt=60", "lwm2m=1.1", "b=U", "Q", "sms=123"), OBJECTS.encode(), "addr1"
    )
    assert previous is None
    assert (registration.endpoint, registration.lifetime, registration.version) == (
        "node-1",
        60,
        "1.1",
    )
    assert registration.queue_mode
    assert [str(p) for p in registration.objects.instance_paths()] == [
        "/1/0",
        "/3/0",
        "/3303/0",
        "/3303/1",
    ]
    clock.now += 30
    updated, before = store.update(
        registration.registration_id, ("lt=120",), b"</3/0>,</3303/0>", "addr2"
    )
    assert before is registration
    assert (updated.lifetime, updated.remote, updated.updated_at) == (120, "addr2", 1030.0)
    assert [str(p) for p in updated.objects.instance_paths()] == ["/3/0", "/3303/0"]
    assert store.by_endpoint("node-1") is updated
    ended = store.deregister(registration.registration_id)
    assert ended is updated
    assert len(store) == 0
    with pytest.raises(UnknownRegistration):
        store.deregister(registration.registration_id)


def test_re_register_replaces_and_defaults() -> None:
    store = RegistrationStore(Clock())
    first, _ = store.register(("ep=n",), b"</3/0>", "a")
    second, previous = store.register(("ep=n", "b=UQ"), b"</3/0>", "b")
    assert previous is first
    assert second.registration_id != first.registration_id
    assert store.by_id(first.registration_id) is None
    assert (second.lifetime, second.version, second.queue_mode) == (DEFAULT_LIFETIME, "1.0", True)


@pytest.mark.parametrize(
    ("query", "payload", "message"),
    [
        ((), b"</3/0>", "endpoint name"),
        (("ep=has space",), b"</3/0>", "endpoint name"),
        (("ep=" + "x" * 129,), b"</3/0>", "endpoint name"),
        (("ep=a", "lt=-5"), b"</3/0>", "whole number"),
        (("ep=a", "lt=0"), b"</3/0>", "outside"),
        (("ep=a", "lt=99999999999"), b"</3/0>", "whole number"),
        (("ep=a", "lwm2m=9.9"), b"</3/0>", "not supported"),
        (("ep=a", "b=X"), b"</3/0>", "binding"),
        (("ep=a", "ep=b"), b"</3/0>", "twice"),
        (("ep=a",), b"</3/0", "object list"),
        (("ep=a",), b"</99999999/0>", "object list"),
    ],
)
def test_bad_registrations_are_refused_with_a_reason(
    query: tuple[str, ...], payload: bytes, message: str
) -> None:
    store = RegistrationStore(Clock())
    with pytest.raises(RegistrationError, match=message):
        store.register(query, payload, "addr")
    assert len(store) == 0


def test_lifetime_expiry_with_grace() -> None:
    clock = Clock()
    store = RegistrationStore(clock)
    short, _ = store.register(("ep=short", "lt=10"), b"</3/0>", "a")
    long, _ = store.register(("ep=long", "lt=100"), b"</3/0>", "b")
    clock.now += 10 + 1.9  # inside the 2 s grace of a 10 s lifetime
    assert store.expired() == []
    clock.now += 0.2
    assert store.expired() == [short]
    clock.now += 80
    store.update(long.registration_id, (), b"", "b")  # an Update restarts the lifetime
    clock.now += 100
    assert store.expired() == []
    clock.now += 11
    assert [r.endpoint for r in store.expired()] == ["long"]
    assert len(store) == 0


def test_touch_follows_the_address_only() -> None:
    clock = Clock()
    store = RegistrationStore(clock)
    registration, _ = store.register(("ep=n", "lt=10"), b"</3/0>", "old")
    clock.now += 5
    touched = store.touch(registration.registration_id, "new")
    assert touched is not None
    assert (touched.remote, touched.updated_at) == ("new", registration.updated_at)
    assert store.by_endpoint("n") is touched


def test_many_updates_keep_the_expiry_heap_small() -> None:
    store = RegistrationStore(Clock())
    registration, _ = store.register(("ep=n",), b"</3/0>", "a")
    for _ in range(1000):
        store.update(registration.registration_id, (), b"", "a")
    assert len(store._expiry) < 100


# -- the real server ------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, Registration]] = []

    def registered(self, registration: Registration, previous: Registration | None) -> None:
        self.events.append(("registered", registration))

    def updated(self, registration: Registration, previous: Registration) -> None:
        self.events.append(("updated", registration))

    def deregistered(self, registration: Registration, *, expired: bool) -> None:
        self.events.append(("expired" if expired else "deregistered", registration))


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def server() -> AsyncGenerator[tuple[Lwm2mServer, Recorder]]:
    recorder = Recorder()
    lwm2m = Lwm2mServer("127.0.0.1", _free_udp_port(), recorder)
    await lwm2m.start()
    yield lwm2m, recorder
    await lwm2m.stop()


async def coap_client(*args: str) -> str:
    """Run coap-client-notls; its output (payload, or the code of an error answer)."""
    process = await asyncio.create_subprocess_exec(
        COAP_CLIENT,
        "-B",
        "5",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return (out + err).decode().strip()


async def test_third_party_client_registers_updates_deregisters(
    server: tuple[Lwm2mServer, Recorder],
) -> None:
    lwm2m, recorder = server
    base = f"coap://127.0.0.1:{lwm2m.port}"
    await coap_client(
        "-m", "post", "-t", "40", "-e", OBJECTS, f"{base}/rd?ep=thirdparty&lt=60&lwm2m=1.1&b=U"
    )
    registration = lwm2m.registrations.by_endpoint("thirdparty")
    assert registration is not None
    assert [e for e, _ in recorder.events] == ["registered"]
    assert str(registration.objects.instance_paths()[-1]) == "/3303/1"

    await coap_client(
        "-m", "post", "-e", "</3/0>", f"{base}/rd/{registration.registration_id}?lt=90"
    )
    updated = lwm2m.registrations.by_endpoint("thirdparty")
    assert updated is not None
    assert updated.lifetime == 90
    assert [str(p) for p in updated.objects.instance_paths()] == ["/3/0"]
    # A new source port (NAT rebinding): every coap-client run uses a fresh one.
    assert updated.remote != registration.remote

    assert "4.04" in await coap_client("-m", "post", f"{base}/rd/doesnotexist")
    assert "4.04" in await coap_client("-m", "delete", f"{base}/rd/doesnotexist")
    assert "4.05" in await coap_client("-m", "put", f"{base}/rd/{registration.registration_id}")
    assert "4.04" in await coap_client("-m", "get", f"{base}/other")
    await coap_client("-m", "delete", f"{base}/rd/{registration.registration_id}")
    assert lwm2m.registrations.by_endpoint("thirdparty") is None
    assert [e for e, _ in recorder.events] == ["registered", "updated", "deregistered"]


async def test_malformed_registration_gets_4_00_and_one_log_line(
    server: tuple[Lwm2mServer, Recorder], caplog: pytest.LogCaptureFixture
) -> None:
    lwm2m, recorder = server
    base = f"coap://127.0.0.1:{lwm2m.port}"
    for _ in range(3):
        answer = await coap_client("-m", "post", "-e", "</3/0", f"{base}/rd?ep=broken")
        assert "4.00" in answer
    assert "4.00" in await coap_client("-m", "post", "-e", "</3/0>", f"{base}/rd?lt=5")
    assert "4.00" in await coap_client("-m", "post", "-t", "0", "-e", "</3/0>", f"{base}/rd?ep=x")
    assert recorder.events == []
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "Refused LwM2M request" in r.getMessage()
    ]
    # Once per client and cause, not per packet: 3 packets from 'broken', 2 other clients.
    assert len([w for w in warnings if "'broken'" in w]) == 1
    assert len(warnings) == 3
    # The server keeps serving: a good client registers right after.
    await coap_client("-m", "post", "-e", "</3/0>", f"{base}/rd?ep=good")
    assert lwm2m.registrations.by_endpoint("good") is not None


async def test_lifetime_expiry_reaches_the_listener(
    server: tuple[Lwm2mServer, Recorder],
) -> None:
    lwm2m, recorder = server
    await coap_client(
        "-m", "post", "-e", "</3/0>", f"coap://127.0.0.1:{lwm2m.port}/rd?ep=brief&lt=1"
    )
    async with asyncio.timeout(6):
        while not any(event == "expired" for event, _ in recorder.events):
            await asyncio.sleep(0.1)
    assert lwm2m.registrations.by_endpoint("brief") is None


async def test_port_in_use_is_a_clear_error_not_a_split() -> None:
    port = _free_udp_port()
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", port))
    try:
        with pytest.raises(
            BridgeStartError, match=f"UDP port {port} on 127.0.0.1 is already in use"
        ):
            await Lwm2mServer("127.0.0.1", port, Recorder()).start()
    finally:
        holder.close()


async def test_nobody_can_bind_our_port_after_us(
    server: tuple[Lwm2mServer, Recorder],
) -> None:
    """aiocoap binds with SO_REUSEPORT; we clear it so a later program cannot share it."""
    lwm2m, _ = server
    intruder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    intruder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        with pytest.raises(OSError, match="in use"):
            intruder.bind(("127.0.0.1", lwm2m.port))
    finally:
        intruder.close()
