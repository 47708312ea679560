"""A lightweight LwM2M fleet for scale tests: thousands of endpoints per process.

An aiocoap context per endpoint is too heavy for 10,000 endpoints, so each endpoint here is
one UDP socket with a small asyncio DatagramProtocol; aiocoap's Message.encode()/decode()
do the CoAP wire format and IoT Bridge's LwM2M codecs the payloads. Each endpoint offers
/1/0, /3/0 (Device) and /3303/0 (Temperature) and answers Read (any format the codecs
write), Observe (and its cancellation), Write-Attributes (pmin is honoured) and Execute;
it registers (at a set rate, or all at once for a storm), updates at 0.8 x lifetime and
de-registers when stopped. Notifications go out at a set rate across the fleet.

Run it as its own process (or several, with --processes):

    python -m iot_bridge_sim.lwm2m_fleet --server coap://127.0.0.1:5683 --count 5000

It prints one JSON line of counters every --report seconds. --hostile N adds N sockets that
send registrations with random endpoint names and malformed datagrams as fast as they can.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

import aiocoap
from aiocoap.numbers.types import Type

from .core_import import use_core_without_home_assistant

use_core_without_home_assistant()  # before anything imports the LwM2M codecs

from custom_components.iot_bridge.core.lwm2m import (  # noqa: E402
    CodecError,
    ContentFormat,
    LwM2MPath,
    encode,
)

from .lwm2m import apply_attributes, error_answer, request_path  # noqa: E402
from .lwm2m_objects import Lwm2mError  # noqa: E402

ACK_TIMEOUT: Final = 2.0
MAX_RETRANSMIT: Final = 4
SEPARATE_RESPONSE_WAIT: Final = 10.0  # after an empty ACK
DEREGISTER_TIMEOUT: Final = 5.0  # room for one retransmission
DEREGISTER_IN_FLIGHT: Final = 100
FORMATS: Final = frozenset(f for f in ContentFormat if f is not ContentFormat.LINK_FORMAT)
LINKS: Final = '</>;rt="oma.lwm2m";ct=11542,</1>;ver=1.1,</1/0>,</3/0>,</3303/0>'
# Only the temperature: the server reads and observes one instance per endpoint.
LINKS_ONE: Final = '</>;rt="oma.lwm2m";ct=11542,</1>;ver=1.1,</1/0>,</3303/0>'
DISCOVER: Final = {
    3: "</3>,</3/0>,</3/0/0>,</3/0/1>,</3/0/2>,</3/0/4>,</3/0/9>",
    3303: "</3303>,</3303/0>,</3303/0/5700>,</3303/0/5701>,</3303/0/5605>",
}
TEMPERATURE: Final = LwM2MPath(3303, 0, 5700)
EXECUTABLE: Final = frozenset({LwM2MPath(3, 0, 4), LwM2MPath(3303, 0, 5605)})
_MALFORMED: Final = (
    b"\x40",  # shorter than a CoAP header
    b"\x80\x01\x00\x01",  # CoAP version 2
    b"\x4f\x02\x00\x01" + b"\x00" * 8,  # token length 15
    b"\x40\x02\x00\x01\xff",  # payload marker without payload
    b"\x40\x02\x00\x01\xbf",  # option delta 15 that is not a payload marker
)


@dataclass
class Counters:
    """What the fleet did so far; printed as one JSON line."""

    endpoints: int = 0
    registered: int = 0  # endpoints registered right now
    registrations: int = 0  # Register requests answered 2.01 (re-registrations included)
    register_failures: int = 0
    updates: int = 0
    update_failures: int = 0
    deregistered: int = 0
    requests: int = 0  # server requests answered
    observations: int = 0  # active
    notifications: int = 0
    acks: int = 0  # ACKs of CON notifications
    resets: int = 0  # RSTs (cancelled observations)
    malformed: int = 0  # undecodable datagrams received
    hostile_sent: int = 0
    hostile_answers: int = 0
    first_registration_at: float | None = None  # seconds since start
    all_registered_at: float | None = None
    rss_kib: int = 0


@dataclass(frozen=True, slots=True)
class FleetOptions:
    server: tuple[str, int] = ("127.0.0.1", 5683)
    count: int = 100
    prefix: str = "fleet"
    first: int = 0  # number of the first endpoint (processes of one fleet use disjoint ranges)
    lifetime: int = 60
    rate: float = 0.0  # registrations per second; 0: all at once (a storm)
    notify_rate: float = 0.0  # notifications per second across the fleet's observations
    confirmable: bool = False  # notifications as CON (else NON)
    bind_host: str = "127.0.0.1"
    links: str = LINKS  # the object list sent with Register


@dataclass(slots=True)
class _Observation:
    token: bytes
    path: LwM2MPath
    content_format: int
    sequence: int = 0
    sent_at: float = 0.0


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[aiocoap.Message]
    mid: int
    acked: bool = False


class Endpoint(asyncio.DatagramProtocol):
    """One simulated LwM2M client: one connected UDP socket, no aiocoap context."""

    __slots__ = (
        "_mid",
        "_token",
        "attributes",
        "fleet",
        "last_answer",
        "location",
        "name",
        "next_update",
        "notified",
        "observations",
        "pending",
        "port",
        "temperature",
        "transport",
    )

    def __init__(self, fleet: Lwm2mFleet, name: str) -> None:
        self.fleet = fleet
        self.name = name
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.location: tuple[str, ...] | None = None
        self.next_update = 0.0
        self.temperature = round(random.uniform(18.0, 24.0), 1)
        self.observations: dict[bytes, _Observation] = {}
        self.attributes: dict[LwM2MPath, dict[str, int | float]] = {}
        self.pending: dict[bytes, _Pending] = {}
        self.notified: dict[int, bytes] = {}  # mid of a CON notification -> its token
        self.last_answer: tuple[int, bytes] | None = None  # (mid, datagram) for duplicates
        self._mid = random.randrange(0x10000)
        self._token = random.randrange(0x10000)

    # -- datagrams --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport
        self.port = int(transport.get_extra_info("sockname")[1])

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            message = aiocoap.Message.decode(data)
        except (aiocoap.error.UnparsableMessage, ValueError):  # UnicodeDecodeError too
            self.fleet.counters.malformed += 1
            return
        if message.code.is_request():
            self._serve(message)
        elif message.mtype in (Type.ACK, Type.RST) and message.code == aiocoap.EMPTY:
            self._empty(message)
        elif message.code.is_response():
            self._response(message)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP unreachable while the server is down: retransmission deals with it

    def send(self, message: aiocoap.Message) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(message.encode())

    def next_mid(self) -> int:
        self._mid = (self._mid + 1) & 0xFFFF
        return self._mid

    def next_token(self) -> bytes:
        self._token = (self._token + 1) & 0xFFFF
        return self._token.to_bytes(2, "big")

    # -- requests to the server -----------------------------------------------------------

    async def request(self, message: aiocoap.Message) -> aiocoap.Message | None:
        """A CON request with RFC 7252 retransmission; None when it goes unanswered."""
        message.mtype, message.mid, message.token = Type.CON, self.next_mid(), self.next_token()
        data = message.encode()
        pending = _Pending(asyncio.get_running_loop().create_future(), message.mid)
        self.pending[message.token] = pending
        timeout = ACK_TIMEOUT * random.uniform(1.0, 1.5)
        try:
            for _ in range(MAX_RETRANSMIT + 1):
                if self.transport is None or self.transport.is_closing():
                    return None
                self.transport.sendto(data)
                done, _ = await asyncio.wait({pending.future}, timeout=timeout)
                if done:
                    return pending.future.result()
                if pending.acked:  # an empty ACK: the answer comes separately
                    done, _ = await asyncio.wait({pending.future}, timeout=SEPARATE_RESPONSE_WAIT)
                    return pending.future.result() if done else None
                timeout *= 2
            return None
        finally:
            self.pending.pop(message.token, None)
            if not pending.future.done():
                pending.future.cancel()

    def _empty(self, message: aiocoap.Message) -> None:
        for pending in self.pending.values():
            if pending.mid == message.mid:
                pending.acked = True  # (an RST here ends in the request's timeout)
                return
        token = self.notified.pop(message.mid, None)
        if message.mtype == Type.RST:
            # The server no longer wants the notification: the observation is over.
            self.fleet.counters.resets += 1
            if token is not None:
                self._forget_observation(token)
        elif token is not None:
            self.fleet.counters.acks += 1

    def _response(self, message: aiocoap.Message) -> None:
        if message.mtype == Type.CON:  # a separate response: acknowledge it
            ack = aiocoap.Message(code=aiocoap.EMPTY)
            ack.mtype, ack.mid = Type.ACK, message.mid
            self.send(ack)
        pending = self.pending.get(message.token)
        if pending is not None and not pending.future.done():
            pending.future.set_result(message)

    # -- requests from the server -----------------------------------------------------------

    def _serve(self, request: aiocoap.Message) -> None:
        if (
            request.mtype == Type.CON
            and self.last_answer is not None
            and self.last_answer[0] == request.mid
        ):
            if self.transport is not None:
                self.transport.sendto(self.last_answer[1])  # a retransmission: same answer
            return
        try:
            answer = self._answer(request)
        except Lwm2mError as err:
            answer = error_answer(err.code, str(err))
        except CodecError as err:
            answer = error_answer("4.06", str(err))
        answer.token = request.token
        if request.mtype == Type.CON:
            answer.mtype, answer.mid = Type.ACK, request.mid
        else:
            answer.mtype, answer.mid = Type.NON, self.next_mid()
        data = answer.encode()
        if self.transport is not None:
            self.transport.sendto(data)
        self.last_answer = (request.mid, data)
        self.fleet.counters.requests += 1

    def _answer(self, request: aiocoap.Message) -> aiocoap.Message:
        path = request_path(request)
        if request.code == aiocoap.GET:
            if request.opt.accept == ContentFormat.LINK_FORMAT:
                return self._discover(path)
            if request.opt.observe == 1:
                for token in [t for t, o in self.observations.items() if o.path == path]:
                    self._forget_observation(token)
            answer = self._read(path, request.opt.accept)
            if request.opt.observe == 0:
                for token in [t for t, o in self.observations.items() if o.path == path]:
                    self._forget_observation(token)  # a new observation replaces the old
                self.observations[request.token] = _Observation(
                    request.token, path, int(answer.opt.content_format), 0, time.monotonic()
                )
                self.fleet.counters.observations += 1
                self.fleet.observed[self] = None
                answer.opt.observe = 0
            return answer
        if request.code == aiocoap.PUT and request.opt.uri_query and not request.payload:
            self._values(path)  # 4.04 for a path that does not exist
            self.attributes[path] = apply_attributes(
                self.attributes.get(path, {}), request.opt.uri_query
            )
            return aiocoap.Message(code=aiocoap.CHANGED)
        if request.code == aiocoap.POST and path in EXECUTABLE:
            return aiocoap.Message(code=aiocoap.CHANGED)
        raise Lwm2mError("4.05", f"{request.code.name} is not allowed on {path}")

    def _values(self, path: LwM2MPath) -> dict[LwM2MPath, Any]:
        everything = {
            LwM2MPath(1, 0, 0): 1,
            LwM2MPath(1, 0, 1): self.fleet.options.lifetime,
            LwM2MPath(1, 0, 7): "U",
            LwM2MPath(3, 0, 0): "IoT Bridge fleet",
            LwM2MPath(3, 0, 1): "FL-1",
            LwM2MPath(3, 0, 2): f"SIM-{self.name}",
            LwM2MPath(3, 0, 9): 100,
            TEMPERATURE: self.temperature,
            LwM2MPath(3303, 0, 5701): "Cel",
        }
        values = {p: v for p, v in everything.items() if p.startswith(path)}
        if path.depth == 0 or not values:
            raise Lwm2mError("4.04", f"{path} does not exist")
        return values

    def _read(self, path: LwM2MPath, accept: Any) -> aiocoap.Message:
        content_format = ContentFormat.TLV if accept is None else int(accept)
        if content_format not in FORMATS:
            raise Lwm2mError("4.06", f"content format {content_format} not supported")
        payload = encode(content_format, self._values(path), path)
        return aiocoap.Message(code=aiocoap.CONTENT, payload=payload, content_format=content_format)

    def _discover(self, path: LwM2MPath) -> aiocoap.Message:
        links = DISCOVER.get(path.ids[0]) if path.depth == 1 else None
        if links is None:
            raise Lwm2mError("4.04", f"no Discover for {path} here")
        return aiocoap.Message(code=aiocoap.CONTENT, payload=links.encode(), content_format=40)

    def _forget_observation(self, token: bytes) -> None:
        if self.observations.pop(token, None) is not None:
            self.fleet.counters.observations -= 1
        if not self.observations:
            self.fleet.observed.pop(self, None)

    def notify(self) -> bool:
        """A new temperature; notify observers whose pmin allows. True if one was sent."""
        self.temperature = round(self.temperature + random.choice((-0.1, 0.1)), 1)
        now, sent = time.monotonic(), False
        for observation in list(self.observations.values()):
            if not TEMPERATURE.startswith(observation.path):
                continue
            pmin = self._attribute(observation.path, "pmin")
            if now - observation.sent_at < pmin:
                continue
            observation.sequence += 1
            message = aiocoap.Message(
                code=aiocoap.CONTENT,
                payload=encode(
                    observation.content_format,
                    self._values(observation.path),
                    observation.path,
                ),
                content_format=observation.content_format,
                observe=observation.sequence,
            )
            message.mid, message.token = self.next_mid(), observation.token
            message.mtype = Type.NON
            if self.fleet.options.confirmable:  # sent once: loopback loses nothing
                message.mtype = Type.CON
                self.notified[message.mid] = observation.token
                while len(self.notified) > 8:
                    del self.notified[next(iter(self.notified))]
            observation.sent_at = now
            self.send(message)
            self.fleet.counters.notifications += 1
            sent = True
        return sent

    def _attribute(self, path: LwM2MPath, name: str) -> float:
        while path.depth > 0:
            if name in (attributes := self.attributes.get(path, {})):
                return attributes[name]
            path = path.parent
        return 0.0


class Lwm2mFleet:
    """Many Endpoints on the running loop: start(), then stop()."""

    def __init__(self, options: FleetOptions, printer: Callable[[str], None] | None = None):
        self.options = options
        self.counters = Counters(endpoints=options.count)
        self.endpoints: list[Endpoint] = []
        self.observed: dict[Endpoint, None] = {}  # endpoints with observations, in order
        self._print = printer or (lambda line: print(line, flush=True))
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started_at = 0.0

    async def start(self) -> None:
        self._started_at = time.monotonic()
        for number in range(self.options.first, self.options.first + self.options.count):
            endpoint = Endpoint(self, f"{self.options.prefix}{number}")
            await connect(endpoint, (self.options.bind_host, 0), self.options.server)
            self.endpoints.append(endpoint)
        self._background(self._register_all())
        self._background(self._update_forever())
        if self.options.notify_rate > 0:
            self._background(self._notify_forever())

    async def stop(self, *, deregister: bool = True) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if deregister:
            # Paced: a storm of De-registers would overflow the server's socket buffer.
            in_flight = asyncio.Semaphore(DEREGISTER_IN_FLIGHT)
            await asyncio.gather(
                *(self._deregister(e, in_flight) for e in self.endpoints if e.location is not None)
            )
        for endpoint in self.endpoints:
            if endpoint.transport is not None:
                endpoint.transport.close()
        self.endpoints.clear()

    async def wait_registered(self, count: int | None = None, timeout: float = 30.0) -> None:
        wanted = self.options.count if count is None else count
        async with asyncio.timeout(timeout):
            while self.counters.registered < wanted:
                await asyncio.sleep(0.05)

    def snapshot(self) -> dict[str, Any]:
        self.counters.rss_kib = _rss_kib()
        return asdict(self.counters)

    def _background(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _register_all(self) -> None:
        interval = 1.0 / self.options.rate if self.options.rate > 0 else 0.0
        for endpoint in list(self.endpoints):
            self._background(self._register(endpoint))
            if interval:
                await asyncio.sleep(interval)

    async def _register(self, endpoint: Endpoint) -> None:
        query = (
            f"ep={endpoint.name}",
            f"lt={self.options.lifetime}",
            "lwm2m=1.1",
            "b=U",
        )
        answer = await endpoint.request(
            aiocoap.Message(
                code=aiocoap.POST,
                uri_path=("rd",),
                uri_query=query,
                payload=self.options.links.encode(),
                content_format=40,
            )
        )
        if answer is None or answer.code != aiocoap.CREATED:
            self.counters.register_failures += 1
            endpoint.next_update = time.monotonic() + random.uniform(1.0, 5.0)  # retry later
            return
        if endpoint.location is None:
            self.counters.registered += 1
        endpoint.location = tuple(answer.opt.location_path)
        endpoint.next_update = time.monotonic() + self.options.lifetime * 0.8
        self.counters.registrations += 1
        elapsed = time.monotonic() - self._started_at
        if self.counters.first_registration_at is None:
            self.counters.first_registration_at = round(elapsed, 3)
        if self.counters.registered == self.options.count:
            self.counters.all_registered_at = round(elapsed, 3)

    async def _update(self, endpoint: Endpoint) -> None:
        assert endpoint.location is not None
        answer = await endpoint.request(
            aiocoap.Message(code=aiocoap.POST, uri_path=endpoint.location)
        )
        if answer is not None and answer.code == aiocoap.CHANGED:
            self.counters.updates += 1
            endpoint.next_update = time.monotonic() + self.options.lifetime * 0.8
            return
        self.counters.update_failures += 1
        endpoint.location = None  # forgotten or unreachable: register again
        self.counters.registered -= 1
        await self._register(endpoint)

    async def _update_forever(self) -> None:
        busy: set[Endpoint] = set()

        def run(endpoint: Endpoint, coroutine: Any) -> None:
            busy.add(endpoint)
            task = asyncio.get_running_loop().create_task(coroutine)
            self._tasks.add(task)

            def done(task: asyncio.Task[Any]) -> None:
                self._tasks.discard(task)
                busy.discard(endpoint)

            task.add_done_callback(done)

        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            for endpoint in self.endpoints:
                if endpoint in busy or not endpoint.next_update or endpoint.next_update > now:
                    continue
                if endpoint.location is None:
                    endpoint.next_update = 0.0
                    run(endpoint, self._register(endpoint))
                else:
                    run(endpoint, self._update(endpoint))

    async def _notify_forever(self) -> None:
        budget, cursor = 0.0, 0
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            budget += self.options.notify_rate * (now - last)  # by the clock: ticks run late
            last = now
            observed = list(self.observed)
            tries = 0
            while budget >= 1 and observed and tries < len(observed):
                cursor = (cursor + 1) % len(observed)
                tries += 1
                if observed[cursor].notify():
                    budget -= 1
            budget = min(budget, self.options.notify_rate)  # no burst after an idle spell

    async def _deregister(self, endpoint: Endpoint, in_flight: asyncio.Semaphore) -> None:
        assert endpoint.location is not None
        with contextlib.suppress(TimeoutError):
            async with in_flight, asyncio.timeout(DEREGISTER_TIMEOUT):
                answer = await endpoint.request(
                    aiocoap.Message(code=aiocoap.DELETE, uri_path=endpoint.location)
                )
                if answer is not None and answer.code == aiocoap.DELETED:
                    self.counters.deregistered += 1
        endpoint.location = None
        self.counters.registered -= 1


class Hostile(asyncio.DatagramProtocol):
    """Floods the server: Registers with random endpoint names and malformed datagrams."""

    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.counters.hostile_answers += 1

    def error_received(self, exc: Exception) -> None:
        pass

    async def flood(self, rate: float = 0.0) -> None:
        """Send as fast as the loop allows (rate 0) or `rate` datagrams per second."""
        mid = 0
        batch = 64
        while self.transport is not None and not self.transport.is_closing():
            for _ in range(batch):
                mid = (mid + 1) & 0xFFFF
                self.transport.sendto(_hostile_datagram(mid))
            self.counters.hostile_sent += batch
            await asyncio.sleep(batch / rate if rate > 0 else 0)


async def connect(
    protocol: asyncio.DatagramProtocol, local: tuple[str, int], remote: tuple[str, int]
) -> None:
    """One connected UDP socket for the protocol (the kernel filters other senders)."""
    await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: protocol, local_addr=local, remote_addr=remote
    )


def _hostile_datagram(mid: int) -> bytes:
    kind = mid % 4
    if kind == 0:  # a plausible registration from an endpoint nobody has seen
        message = aiocoap.Message(
            code=aiocoap.POST,
            uri_path=("rd",),
            uri_query=(f"ep=flood-{random.getrandbits(48):012x}", "lt=60"),
            payload=b"</3/0>",
        )
    elif kind == 1:  # a registration with a broken object list
        message = aiocoap.Message(
            code=aiocoap.POST, uri_path=("rd",), uri_query=("ep=x",), payload=b"</3/0"
        )
    elif kind == 2:  # an Update for a registration that does not exist
        message = aiocoap.Message(code=aiocoap.POST, uri_path=("rd", f"{mid:08x}"))
    else:
        return (
            random.choice(_MALFORMED) if mid % 8 == 3 else random.randbytes(random.randint(1, 60))
        )
    message.mtype, message.mid = Type.NON, mid
    message.token = mid.to_bytes(2, "big")
    return bytes(message.encode())


def _rss_kib() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except OSError:
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _raise_file_limit(wanted: int) -> None:
    """One socket per endpoint: the default limit of 1024 open files is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


# -- CLI --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m iot_bridge_sim.lwm2m_fleet",
        description="Thousands of light LwM2M endpoints (3/0 and 3303/0) for scale tests.",
    )
    parser.add_argument("--server", default="coap://127.0.0.1:5683")
    parser.add_argument("--count", type=int, default=100, help="endpoints (all processes)")
    parser.add_argument("--processes", type=int, default=1, help="worker processes")
    parser.add_argument("--prefix", default="fleet", help="endpoint names: PREFIX0, PREFIX1, ...")
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--lifetime", type=int, default=60, metavar="SECONDS")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="registrations per second (0: all at once)"
    )
    parser.add_argument(
        "--notify-rate", type=float, default=0.0, help="notifications per second, whole fleet"
    )
    parser.add_argument("--con", action="store_true", help="notifications as CON (default NON)")
    parser.add_argument("--hostile", type=int, default=0, metavar="N", help="N flooding sockets")
    parser.add_argument(
        "--hostile-rate", type=float, default=0.0, help="datagrams/s per flooding socket (0: max)"
    )
    parser.add_argument("--duration", type=float, help="stop after SECONDS (default: signal)")
    parser.add_argument("--report", type=float, default=5.0, metavar="SECONDS")
    return parser


def _server(uri: str) -> tuple[str, int]:
    host, _, port = uri.removeprefix("coap://").rstrip("/").rpartition(":")
    return (host.strip("[]"), int(port)) if host else (port, 5683)


async def run(args: argparse.Namespace) -> int:
    _raise_file_limit(args.count + args.hostile + 256)
    fleet = Lwm2mFleet(
        FleetOptions(
            server=_server(args.server),
            count=args.count,
            prefix=args.prefix,
            first=args.first,
            lifetime=args.lifetime,
            rate=args.rate,
            notify_rate=args.notify_rate,
            confirmable=args.con,
        )
    )
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, done.set)
    await fleet.start()
    floods = []
    for _ in range(args.hostile):
        hostile = Hostile(fleet.counters)
        await connect(hostile, ("127.0.0.1", 0), fleet.options.server)
        floods.append((hostile, loop.create_task(hostile.flood(args.hostile_rate))))
    until = None if args.duration is None else loop.time() + args.duration
    while not done.is_set():
        wait = args.report if until is None else min(args.report, until - loop.time())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), max(wait, 0))
        print(json.dumps(fleet.snapshot()), flush=True)
        if until is not None and loop.time() >= until:
            break
    for hostile, task in floods:
        task.cancel()
        if hostile.transport is not None:
            hostile.transport.close()
    await asyncio.gather(*(task for _, task in floods), return_exceptions=True)
    await fleet.stop()
    print(json.dumps(fleet.snapshot() | {"final": True}), flush=True)
    return 0


async def supervise(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Split the fleet over worker processes; relay their lines, then one total."""
    share, extra = divmod(args.count, args.processes)
    workers = []
    first = args.first
    for index in range(args.processes):
        count = share + (1 if index < extra else 0)
        command = [
            sys.executable,
            "-m",
            "iot_bridge_sim.lwm2m_fleet",
            *_without(argv, "--processes", "--count", "--first", "--rate", "--notify-rate"),
            "--count",
            str(count),
            "--first",
            str(first),
            "--rate",
            str(args.rate / args.processes),
            "--notify-rate",
            str(args.notify_rate / args.processes),
        ]
        first += count
        workers.append(
            await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
        )
    latest: dict[int, dict[str, Any]] = {}

    async def relay(index: int, worker: asyncio.subprocess.Process) -> None:
        assert worker.stdout is not None
        async for line in worker.stdout:
            latest[index] = json.loads(line)
            print(f"worker {index}: {line.decode().strip()}", flush=True)

    def stop_workers() -> None:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_workers)
    await asyncio.gather(*(relay(i, w) for i, w in enumerate(workers)))
    codes = [await worker.wait() for worker in workers]
    totals = {
        key: sum(line.get(key) or 0 for line in latest.values())
        for key in ("endpoints", "registrations", "requests", "notifications", "rss_kib")
    }
    print(json.dumps({"total": True, **totals}), flush=True)
    return max(codes, default=0)


def _without(argv: Sequence[str], *names: str) -> list[str]:
    """argv minus the named options and their values."""
    result, skip = [], False
    for item in argv:
        if skip:
            skip = False
            continue
        name = item.split("=", 1)[0]
        if name in names:
            skip = "=" not in item
            continue
        result.append(item)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(arguments)
    if args.processes > 1:
        return asyncio.run(supervise(args, arguments))
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
