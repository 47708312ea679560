"""LwM2M server at fleet size: a registration storm, the reads that follow, notifications.

    .venv/bin/python -m pytest benchmarks/bench_lwm2m.py -s -p no:cacheprovider
    BENCH_ENDPOINTS=300 .venv/bin/python -m pytest benchmarks/bench_lwm2m.py -s -p no:cacheprovider

N endpoints (BENCH_ENDPOINTS, default 1,000) of the light LwM2M fleet
(iot_bridge_sim.lwm2m_fleet: /1/0, /3/0 Device and /3303/0 Temperature each), split over
BENCH_FLEET_PROCESSES (default 2) processes of benchmarks/lwm2m_peer.py, bind their sockets
first and then all send their Register at once. Three sides, each with a fresh fleet:

- raw: a bare aiocoap server context (the socket tuned like the real server's) that answers
  every Register 2.01 and then, 64 endpoints at a time as the bridge does, sends the same
  six requests the bridge sends (Read /3/0 and /3303/0, Write-Attributes and Observe on
  each), counting answers and notifications without decoding them: aiocoap's floor;
- server: IoT Bridge's core Lwm2mBridge (Lwm2mServer inside), accept-all, pmin 0, no Home
  Assistant (a recording listener stands in for the hub);
- hass: the same through Home Assistant: an LwM2M server config entry (accept-all, pmin 0),
  devices in the device registry and entities in the state machine.

Storm: "registered" is the time from the first Register the server answered to the last of
the N (registrations/s admitted = N over that time); "read+observed" runs from the same
first Register until every endpoint's mapped instances were read and observed (the bridge
announces a device only then); for hass, "entities" until every device and every entity
exists. RSS growth is this process's resident memory after all that (gc.collect first)
minus before the fleet started, per endpoint. The sides run in one process in the order
raw, server, hass: memory an earlier side freed is reused by a later one, so `-k` one
side for its memory figure alone.

Notifications: for each rate in BENCH_NOTIFY_RATES (per second over the whole fleet; 0 is as
fast as the fleet processes can; default "1000,2000,0") the fleet sends NON notifications of a
new temperature round-robin over the observed endpoints for BENCH_NOTIFY_SECONDS (default
10); "received" is what the server decoded (the bridge's payload handler), "states" the
state_changed events of the temperature entities (a @callback listener; server side: the
listener's state changes), rates over the time from the first send to the last arrival.
"lost" is sent minus received; "final" says how many endpoints show the fleet's last value.

At fleet size (test_lwm2m_scale, server alone and Home Assistant):

    BENCH_SCALE_ENDPOINTS=10000 .venv/bin/python -m pytest benchmarks/bench_lwm2m.py -s -p no:cacheprovider -k scale

BENCH_SCALE_ENDPOINTS (default 2,000; the full run is 10,000) endpoints over
BENCH_SCALE_PROCESSES (4) fleet processes, each registering /1/0 and /3303/0 only (one
observed instance), lifetime BENCH_SCALE_LIFETIME (60 s). They register in storms of
BENCH_SCALE_STORM (1,000) at once, the next storm when the last is read and observed; each
storm is timed like the one above. Then: RSS growth per endpoint (after the storms and after
the Update window), Updates over BENCH_SCALE_UPDATE_SECONDS (2 x lifetime: the sustained
rate, and a lapse would show), notifications at BENCH_SCALE_NOTIFY_RATES, and BENCH_SCALE_EXECUTES sequential
Executes (/3303/0/5605) plus notifications at 1,000/s without and with a flooding client
(the fleet simulator's hostile mode in its own process, BENCH_FLOOD_SOCKETS sockets at each
of BENCH_FLOOD_RATES datagrams/s, 0 = as fast as it can).

Execute round trip (test_lwm2m_command_round_trip): one simulated parcel locker
(iot_bridge_sim, aiocoap, its own process) registered with Home Assistant; BENCH_COMMANDS
(300) each of raw aiocoap Execute to the client's socket, iot_bridge.send_command and
lock.open/lock.lock, side by side, and this process's CPU time per command; the locker
notifies CON unless BENCH_LOCKER_NOTIFY=non.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import os
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import aiocoap
import aiocoap.resource
import pytest
from aiocoap.transports.udp6 import UDP6EndpointAddress
from homeassistant.const import CONF_HOST, CONF_PORT, EVENT_STATE_CHANGED
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import (  # type: ignore[import-untyped]
    MockConfigEntry,
)

from custom_components.iot_bridge.const import (
    ADMISSION_ACCEPT_ALL,
    CONF_ADMISSION,
    CONF_PMAX,
    CONF_PMIN,
    CONF_PROTOCOL,
    DOMAIN,
    PROTOCOL_LWM2M,
)
from custom_components.iot_bridge.core.coap_timers import shutdown, track_timers
from custom_components.iot_bridge.core.commands import CommandEngine
from custom_components.iot_bridge.core.lwm2m import LwM2MPath
from custom_components.iot_bridge.core.lwm2m.bridge import Lwm2mBridge, Lwm2mSettings
from custom_components.iot_bridge.core.lwm2m.server import (
    ServerRequestError,
    _bind_address,
    _tune_socket,
)
from custom_components.iot_bridge.core.model import Device

from .common import ROOT, Latency, header, machine, markdown_table, profiled, require

pytestmark = pytest.mark.usefixtures("socket_enabled")

ENDPOINTS = int(os.environ.get("BENCH_ENDPOINTS", "1000"))
PROCESSES = int(os.environ.get("BENCH_FLEET_PROCESSES", "2"))
RATES = [float(r) for r in os.environ.get("BENCH_NOTIFY_RATES", "1000,2000,0").split(",")]
NOTIFY_SECONDS = float(os.environ.get("BENCH_NOTIFY_SECONDS", "10"))
TIMEOUT = float(os.environ.get("BENCH_TIMEOUT", "120"))  # per storm
TRACEMALLOC = bool(os.environ.get("BENCH_TRACEMALLOC"))  # where the storm's memory went
DRAIN = 10.0  # at most this long for notifications still queued after the last send
QUIET = 0.5  # nothing new for this long: the queue is drained
SETUP_CONCURRENCY = 64  # the bridge's _SETUP_CONCURRENCY, for the raw side
SIDES = ["raw", "server", "hass"]
SIDE_NAMES = {"raw": "raw aiocoap", "server": "Lwm2mBridge (no HA)", "hass": "Home Assistant"}
TEMPERATURE = LwM2MPath(3303, 0, 5700)
TEMPERATURE_KEY = "3303_0_5700"
KIB = 1024


def rss() -> int:
    """Resident memory of this process, in bytes (after a full collection)."""
    gc.collect()
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def udp_buffer_drops() -> int:
    """Datagrams the kernel dropped on full receive buffers, machine-wide (UDP and UDP6)."""
    drops = 0
    with open("/proc/net/snmp", encoding="ascii") as snmp:
        lines = [line.split() for line in snmp if line.startswith("Udp:")]
    if len(lines) == 2:
        drops += int(lines[1][lines[0].index("RcvbufErrors")])
    with open("/proc/net/snmp6", encoding="ascii") as snmp6:
        for line in snmp6:
            name, _, value = line.partition(" ")
            if name == "Udp6RcvbufErrors":
                drops += int(value)
    return drops


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def bounded_wait(predicate: Callable[[], bool], timeout: float, poll: float = 0.02) -> bool:
    """Poll until predicate() holds; False after `timeout` seconds."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(poll)
            return True
    return False


# -- the fleet --------------------------------------------------------------------------------


class FleetPeer:
    """`python -m benchmarks.lwm2m_peer PORT FIRST COUNT PREFIX`: stdin commands, stdout."""

    def __init__(
        self, port: int, first: int, count: int, prefix: str, extra: tuple[str, ...] = ()
    ) -> None:
        env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "simulator")])}
        arguments = [str(port), str(first), str(count), prefix, *extra]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.lwm2m_peer", *arguments],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def _read(self, expected: str) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        word, _, rest = line.partition(" ")
        require(
            word.strip() == expected,
            f"fleet said {line[:80]!r}, expected {expected!r} (exit {self.process.poll()})",
        )
        return rest.strip()

    async def expect(self, expected: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(None, self._read, expected)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


class Fleet:
    """N endpoints over PROCESSES peers, named PREFIX0 ... PREFIX{N-1}."""

    def __init__(
        self,
        port: int,
        prefix: str,
        count: int = ENDPOINTS,
        processes: int = PROCESSES,
        arguments: tuple[str, ...] = (),
    ) -> None:
        share, extra = divmod(count, processes)
        self.peers: list[FleetPeer] = []
        first = 0
        for index in range(processes):
            size = share + (1 if index < extra else 0)
            self.peers.append(FleetPeer(port, first, size, prefix, arguments))
            first += size
        self.names = [f"{prefix}{number}" for number in range(count)]

    async def all(self, command: str | None, expected: str) -> list[str]:
        if command is not None:
            for peer in self.peers:
                peer.send(command)
        return list(await asyncio.gather(*(peer.expect(expected) for peer in self.peers)))

    async def ready(self) -> None:
        await self.all(None, "ready")

    async def register(self) -> None:
        await self.all("register", "registering")

    async def notify(self, rate: float, seconds: float) -> int:
        answers = await self.all(f"notify {rate / len(self.peers)} {seconds}", "notified")
        return sum(int(answer.split()[0]) for answer in answers)

    async def values(self) -> dict[str, float]:
        merged: dict[str, float] = {}
        for answer in await self.all("values", "values"):
            merged.update(json.loads(answer))
        return merged

    async def counters(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for answer in await self.all("counters", "counters"):
            for key, value in json.loads(answer).items():
                if isinstance(value, int):
                    totals[key] = totals.get(key, 0) + value
        return totals

    def close(self) -> None:
        for peer in self.peers:
            peer.close()


# -- what is measured ---------------------------------------------------------------------


@dataclass
class Counter:
    """Events of one kind with the time of the first and the last."""

    count: int = 0
    first: float | None = None
    last: float | None = None

    def hit(self, n: int = 1) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.last = now
        self.count += n

    def reset(self) -> None:
        self.count, self.first, self.last = 0, None, None


@dataclass
class Storm:
    side: str
    endpoints: int
    registered_s: float | None = None  # first Register -> all N registered
    read_s: float | None = None  # first Register -> all read and observed
    entities_s: float | None = None  # first Register -> all devices and entities (hass)
    registered: int = 0
    devices: int = 0
    resources: int = 0  # resource values read (decoded) in all
    observations: int = 0
    requests: int = 0  # server requests the fleet answered
    failures: int = 0  # reads/observes the server gave up on, registrations refused
    register_failures: int = 0  # Registers the fleet gave up on (retried later)
    entities: int = 0
    rss_growth: int = 0
    cpu_s: float = 0.0
    stop_s: float | None = None  # unloading the side after the notifications
    loop_errors: str = "-"  # exceptions that reached the event loop's handler

    def row(self) -> list[str]:
        def seconds(value: float | None) -> str:
            return f"{value:.2f}" if value is not None else f"> {TIMEOUT:.0f}"

        rate = f"{self.endpoints / self.registered_s:.0f}" if self.registered_s else "-"
        return [
            SIDE_NAMES[self.side],
            f"{self.registered}/{self.endpoints}",
            seconds(self.registered_s),
            rate,
            seconds(self.read_s),
            f"{self.devices}",
            f"{self.resources}",
            f"{self.observations}",
            f"{self.requests}",
            f"{self.failures}/{self.register_failures}",
            seconds(self.entities_s) if self.side == "hass" else "-",
            str(self.entities) if self.side == "hass" else "-",
            f"{self.rss_growth / KIB / self.endpoints:.1f}",
            f"{self.cpu_s:.1f}",
            "-" if self.stop_s is None else f"{self.stop_s:.2f}",
            self.loop_errors,
        ]


STORM_HEADERS = [
    "side",
    "registered",
    "registered s",
    "registrations/s",
    "read+observed s",
    "devices",
    "resources read",
    "observations",
    "requests answered",
    "failed server/fleet",
    "entities s",
    "entities",
    "RSS KiB/endpoint",
    "CPU s",
    "stop s",
    "loop errors",
]


@dataclass
class Flow:
    side: str
    rate: float
    seconds: float
    sent: int = 0
    received: int = 0
    received_per_s: float = 0.0
    states: int | None = None
    states_per_s: float | None = None
    final_ok: int | None = None
    endpoints: int = 0
    kernel_drops: int = 0

    def row(self) -> list[str]:
        states = "-" if self.states is None else str(self.states)
        states_rate = "-" if self.states_per_s is None else f"{self.states_per_s:.0f}"
        final = "-" if self.final_ok is None else f"{self.final_ok}/{self.endpoints}"
        return [
            SIDE_NAMES[self.side],
            f"{self.rate:.0f}" if self.rate else "max",
            f"{self.seconds:.0f}",
            str(self.sent),
            f"{self.sent / self.seconds:.0f}",
            str(self.received),
            f"{self.received_per_s:.0f}",
            states,
            states_rate,
            str(self.sent - self.received),
            str(self.kernel_drops),
            final,
        ]


FLOW_HEADERS = [
    "side",
    "offered/s",
    "s",
    "sent",
    "sent/s",
    "received",
    "received/s",
    "states",
    "states/s",
    "lost",
    "kernel drops",
    "final values",
]


@dataclass
class Results:
    storms: list[Storm] = field(default_factory=list)
    flows: list[Flow] = field(default_factory=list)


# -- the sides ------------------------------------------------------------------------------


class Side:
    """What each side offers the benchmark."""

    registers: Counter  # Registers admitted
    notifications: Counter  # notifications received (decoded, for the bridge)
    states: Counter  # entity states (hass) / state changes (server)

    def registered(self) -> int:
        raise NotImplementedError

    def set_up(self) -> int:
        """Endpoints fully read and observed."""
        raise NotImplementedError

    def details(self, storm: Storm) -> None:
        """Fill in the resource, observation and failure counts."""

    def final_values(self) -> dict[str, float] | None:
        return None

    async def stop(self) -> None:
        raise NotImplementedError


class _RawRoot(aiocoap.resource.Resource, aiocoap.resource.PathCapable):  # type: ignore[misc]
    def __init__(self, side: RawSide) -> None:
        super().__init__()
        self._side = side

    async def render(self, request: aiocoap.Message) -> aiocoap.Message:
        return self._side.handle(request)


class RawSide(Side):
    """A bare aiocoap server: answers Registers, then reads and observes like the bridge."""

    INSTANCES = (("3", "0"), ("3303", "0"))

    def __init__(self) -> None:
        self.registers, self.notifications, self.states = Counter(), Counter(), Counter()
        self.context: aiocoap.Context | None = None
        self.locations: dict[str, str] = {}
        self.done = 0
        self.answers = 0
        self.failures = 0
        self.pending: list[Any] = []  # observations stay alive while referenced
        self._slots = asyncio.Semaphore(SETUP_CONCURRENCY)
        self._tasks: set[asyncio.Task[None]] = set()
        self._cancel_timers: Callable[[], None] = lambda: None

    async def start(self, port: int) -> None:
        self.context = await aiocoap.Context.create_server_context(
            _RawRoot(self), bind=(_bind_address("127.0.0.1"), port), transports=["udp6"]
        )
        _tune_socket(self.context)
        self._cancel_timers = track_timers(self.context)

    def handle(self, request: aiocoap.Message) -> aiocoap.Message:
        if request.opt.uri_path != ("rd",) or request.code != aiocoap.POST:
            return aiocoap.Message(code=aiocoap.NOT_FOUND)
        name = next(q[3:] for q in request.opt.uri_query if q.startswith("ep="))
        location = self.locations.setdefault(name, f"{len(self.locations):x}")
        self.registers.hit()
        self._spawn(self._setup(request.remote))
        return aiocoap.Message(code=aiocoap.CREATED, location_path=("rd", location))

    async def _request(self, message: aiocoap.Message, remote: Any) -> Any:
        assert self.context is not None
        message.remote = remote
        pending = self.context.request(message)
        answer = await asyncio.wait_for(pending.response, 10)
        self.answers += 1
        return pending, answer

    async def _setup(self, remote: Any) -> None:
        try:
            async with self._slots:
                for path in self.INSTANCES:
                    await self._request(aiocoap.Message(code=aiocoap.GET, uri_path=path), remote)
                for path in self.INSTANCES:
                    await self._request(
                        aiocoap.Message(
                            code=aiocoap.PUT, uri_path=path, uri_query=("pmin=0", "pmax=300")
                        ),
                        remote,
                    )
                    pending, _ = await self._request(
                        aiocoap.Message(code=aiocoap.GET, uri_path=path, observe=0), remote
                    )
                    self.pending.append(pending)
                    self._spawn(self._follow(pending))
            self.done += 1
        except (TimeoutError, aiocoap.error.Error):
            self.failures += 1

    async def _follow(self, pending: Any) -> None:
        with contextlib.suppress(aiocoap.error.Error):
            async for _notification in pending.observation:
                self.notifications.hit()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def registered(self) -> int:
        return len(self.locations)

    def set_up(self) -> int:
        return self.done

    def details(self, storm: Storm) -> None:
        storm.devices = self.done
        storm.observations = len(self.pending)
        storm.failures = self.failures

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for pending in self.pending:
            with contextlib.suppress(Exception):
                pending.observation.cancel()
        if self.context is not None:
            await shutdown(self.context, self._cancel_timers)


class _Listener:
    """The hub's part, recording: state changes of the temperature capability."""

    def __init__(self, states: Counter) -> None:
        self.states = states

    def device_discovered(self, device: Device, previous: Device | None) -> None:
        """Nothing to create."""

    def device_removed(self, device_id: str) -> None:
        """Nothing to remove."""

    def device_state_changed(self, device: Device, changed: frozenset[str] | None) -> None:
        if changed and TEMPERATURE_KEY in changed:
            self.states.hit()

    def connection_changed(self, connected: bool) -> None:
        """Not used by a server."""


class BridgeSide(Side):
    """Lwm2mBridge, with or without Home Assistant around it: instruments the instance."""

    def __init__(self, bridge: Lwm2mBridge | None = None) -> None:
        self.registers, self.notifications, self.states = Counter(), Counter(), Counter()
        self.updates, self.lapses = Counter(), Counter()
        self.bridge: Lwm2mBridge = bridge  # type: ignore[assignment]
        if bridge is not None:
            self.instrument()

    def instrument(self) -> None:
        bridge = self.bridge
        registered, absorb = bridge.registered, bridge._absorb
        updated, deregistered = bridge.updated, bridge.deregistered

        def counting_updated(registration: Any, previous: Any) -> None:
            self.updates.hit()
            updated(registration, previous)

        def counting_deregistered(registration: Any, *, expired: bool) -> None:
            if expired:
                self.lapses.hit()
            deregistered(registration, expired=expired)

        def counting_registered(registration: Any, previous: Any) -> None:
            self.registers.hit()
            registered(registration, previous)

        def counting_absorb(endpoint: Any, path: LwM2MPath, response: Any) -> None:
            self.notifications.hit()
            absorb(endpoint, path, response)

        # The server and _follow look these up on the instance at every call.
        bridge.registered = counting_registered  # type: ignore[method-assign]
        bridge._absorb = counting_absorb  # type: ignore[method-assign]
        bridge.updated = counting_updated  # type: ignore[method-assign]
        bridge.deregistered = counting_deregistered  # type: ignore[method-assign]

    async def start(self, port: int) -> None:
        self.bridge = Lwm2mBridge(
            Lwm2mSettings(host="127.0.0.1", port=port, pmin=0, pmax=300),
            CommandEngine(),
            _Listener(self.states),
        )
        self.instrument()
        await self.bridge.start()

    def registered(self) -> int:
        return len(self.bridge.server.registrations)

    def set_up(self) -> int:
        return len(self.bridge.devices)

    def details(self, storm: Storm) -> None:
        endpoints = self.bridge.endpoints.values()
        storm.devices = len(self.bridge.devices)
        storm.resources = sum(len(endpoint.values) for endpoint in endpoints)
        storm.observations = sum(len(endpoint.observations) for endpoint in endpoints)
        storm.failures = sum(self.bridge.rejects.counts.values())

    def final_values(self) -> dict[str, float] | None:
        return {
            name: float(endpoint.values.get(TEMPERATURE, "nan"))  # type: ignore[arg-type]
            for name, endpoint in self.bridge.endpoints.items()
        }

    async def stop(self) -> None:
        await self.bridge.stop()


class HassSide(BridgeSide):
    """An LwM2M server config entry; entity states counted with a @callback listener."""

    def __init__(self, hass: HomeAssistant) -> None:
        super().__init__()
        self.hass = hass
        self.entry: MockConfigEntry | None = None
        self.temperature_entities: set[str] = set()
        self._unsubscribe = hass.bus.async_listen(EVENT_STATE_CHANGED, self._on_state)

    @callback
    def _on_state(self, event: Event[Any]) -> None:
        if event.data["entity_id"] in self.temperature_entities:
            self.states.hit()

    async def start(self, port: int) -> None:
        self.entry = MockConfigEntry(
            domain=DOMAIN,
            title=f"LwM2M server (UDP {port})",
            data={CONF_PROTOCOL: PROTOCOL_LWM2M, CONF_HOST: "127.0.0.1", CONF_PORT: port},
            options={CONF_ADMISSION: ADMISSION_ACCEPT_ALL, CONF_PMIN: 0, CONF_PMAX: 300},
            unique_id=f"lwm2m:{port}",
        )
        self.entry.add_to_hass(self.hass)
        require(
            await self.hass.config_entries.async_setup(self.entry.entry_id),
            "the LwM2M entry did not load",
        )
        await self.hass.async_block_till_done()
        self.bridge = self.entry.runtime_data.bridge
        self.instrument()

    def expected_entities(self) -> int:
        # One per capability, and the connectivity sensor every device gets.
        return sum(len(device.capabilities) + 1 for device in self.bridge.devices.values())

    def entity_ids(self) -> list[str]:
        assert self.entry is not None
        registry = er.async_get(self.hass)
        return [
            entry.entity_id
            for entry in er.async_entries_for_config_entry(registry, self.entry.entry_id)
        ]

    def present(self) -> tuple[int, int]:
        """Devices in the device registry, entities with a state."""
        assert self.entry is not None
        devices = len(
            dr.async_entries_for_config_entry(dr.async_get(self.hass), self.entry.entry_id)
        )
        states = sum(1 for e in self.entity_ids() if self.hass.states.get(e) is not None)
        return devices, states

    def follow_temperatures(self) -> None:
        self.temperature_entities = {
            e for e in self.entity_ids() if e.startswith("sensor.") and e.endswith("_temperature")
        }

    def final_values(self) -> dict[str, float] | None:
        values: dict[str, float] = {}
        for entity_id in self.temperature_entities:
            state = self.hass.states.get(entity_id)
            if state is None:
                continue
            # sensor.<endpoint>_temperature: the device is named after its endpoint.
            name = entity_id.removeprefix("sensor.").removesuffix("_temperature")
            with contextlib.suppress(ValueError):
                values[name] = float(state.state)
        return values

    async def stop(self) -> None:
        self._unsubscribe()
        if self.entry is not None:
            await self.hass.config_entries.async_unload(self.entry.entry_id)


# -- the benchmark --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def results(request: pytest.FixtureRequest) -> Generator[Results]:
    machine_line = machine()
    collected = Results()
    yield collected
    title = (
        f"LwM2M: {ENDPOINTS:,} endpoints registering at once ({PROCESSES} fleet processes), "
        f"then notifications for {NOTIFY_SECONDS:.0f} s"
    )
    print(header(request.config, title, machine_line))
    print(f"load after: {', '.join(f'{v:.2f}' for v in os.getloadavg())}\n")
    print(markdown_table(STORM_HEADERS, [storm.row() for storm in collected.storms]))
    print()
    print(markdown_table(FLOW_HEADERS, [flow.row() for flow in collected.flows]))


def print_memory_breakdown(
    name: str, snapshot: tracemalloc.Snapshot, endpoints: int = ENDPOINTS
) -> None:
    """Memory allocated during the storm and still held, per package, per endpoint."""
    by_package: dict[str, int] = {}
    for stat in snapshot.statistics("filename"):
        path = stat.traceback[0].filename
        if "site-packages/" in path:
            package = path.split("site-packages/", 1)[1].split("/", 1)[0]
        elif "custom_components/iot_bridge/" in path:
            package = "iot_bridge/" + path.split("custom_components/iot_bridge/", 1)[1]
        elif "/lib/python3" in path:
            package = "stdlib/" + path.rsplit("/", 1)[1]
        else:
            package = path.rsplit("/", 1)[-1]
        by_package[package] = by_package.get(package, 0) + stat.size
    rows = [
        [package, f"{size / KIB / endpoints:.2f}"]
        for package, size in sorted(by_package.items(), key=lambda item: -item[1])[:15]
    ]
    total = sum(by_package.values())
    rows.append(["total (traced)", f"{total / KIB / endpoints:.2f}"])
    print(f"\n### memory held after the storm, {SIDE_NAMES[name]} (tracemalloc)\n")
    print(markdown_table(["allocated in", "KiB/endpoint"], rows))
    lines = [
        [
            f"{stat.traceback[0].filename.rsplit('/', 2)[-2]}/"
            f"{stat.traceback[0].filename.rsplit('/', 1)[-1]}:{stat.traceback[0].lineno}",
            f"{stat.size / KIB / endpoints:.2f}",
        ]
        for stat in snapshot.statistics("lineno")[:12]
    ]
    print()
    print(markdown_table(["line", "KiB/endpoint"], lines))


async def storm(side: Side, name: str, fleet: Fleet, hass_side: HassSide | None) -> Storm:
    result = Storm(name, ENDPOINTS)
    if TRACEMALLOC:
        tracemalloc.start()
    before = rss()
    cpu = time.process_time()
    start = time.perf_counter()
    with profiled(f"{name} storm"):
        await fleet.register()
        ok = await bounded_wait(lambda: side.registered() >= ENDPOINTS, TIMEOUT)
        registered_at = time.perf_counter()
        first = side.registers.first or start
        if ok:
            result.registered_s = registered_at - first
        remaining = TIMEOUT - (time.perf_counter() - start)
        if await bounded_wait(lambda: side.set_up() >= ENDPOINTS, remaining):
            result.read_s = time.perf_counter() - first
        if hass_side is not None:
            remaining = TIMEOUT - (time.perf_counter() - start)

            def everything() -> bool:
                devices, states = hass_side.present()
                return devices >= ENDPOINTS and states >= hass_side.expected_entities()

            if await bounded_wait(everything, max(remaining, 0), poll=0.1):
                result.entities_s = time.perf_counter() - first
            result.entities = hass_side.present()[1]
    result.cpu_s = time.process_time() - cpu
    result.rss_growth = rss() - before
    if TRACEMALLOC:
        print_memory_breakdown(name, tracemalloc.take_snapshot())
        tracemalloc.stop()
    result.registered = side.registered()
    side.details(result)
    counters = await fleet.counters()
    result.requests = counters.get("requests", 0)
    result.register_failures = counters.get("register_failures", 0)
    return result


async def notifications(
    side: Side,
    name: str,
    fleet: Fleet,
    rate: float,
    endpoints: int = ENDPOINTS,
    seconds: float = NOTIFY_SECONDS,
) -> Flow:
    flow = Flow(name, rate, seconds, endpoints=endpoints)
    await asyncio.sleep(QUIET)  # what the storm left behind settles
    side.notifications.reset()
    side.states.reset()
    drops = udp_buffer_drops()
    start = time.perf_counter()
    with profiled(f"{name} notifications at {rate or 'max'}/s"):
        flow.sent = await fleet.notify(rate, seconds)
        drain_until = time.perf_counter() + DRAIN
        seen = -1
        while time.perf_counter() < drain_until and (
            side.notifications.count + side.states.count != seen
        ):
            seen = side.notifications.count + side.states.count
            await asyncio.sleep(QUIET)
    flow.received = side.notifications.count
    flow.kernel_drops = udp_buffer_drops() - drops
    if side.notifications.last is not None:
        flow.received_per_s = flow.received / (side.notifications.last - start)
    if not isinstance(side, RawSide):
        flow.states = side.states.count
        if side.states.last is not None:
            flow.states_per_s = flow.states / (side.states.last - start)
    shown = side.final_values()
    if shown is not None:
        truth = await fleet.values()
        flow.final_ok = sum(1 for n, v in truth.items() if shown.get(n) == v)
    return flow


class LoopErrors:
    """Counts what reaches the event loop's exception handler (instead of failing the test
    at teardown, as the test plugin's handler does): a finding, reported in the table."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.previous = self.loop.get_exception_handler()
        self.counts: dict[str, int] = {}
        self.loop.set_exception_handler(self._handle)

    def _handle(self, _loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        kind = type(error).__name__ if error is not None else "no exception"
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def close(self) -> str:
        self.loop.set_exception_handler(self.previous)
        return ", ".join(f"{count} {kind}" for kind, count in self.counts.items()) or "0"


@pytest.mark.parametrize("name", SIDES)
async def test_lwm2m(hass: HomeAssistant, results: Results, name: str) -> None:
    errors = LoopErrors()
    port = free_udp_port()
    side: Side
    if name == "raw":
        side = RawSide()
    elif name == "server":
        side = BridgeSide()
    else:
        side = HassSide(hass)
    await side.start(port)  # type: ignore[attr-defined]
    fleet = Fleet(port, f"bench{name}")
    try:
        await fleet.ready()
        hass_side = side if isinstance(side, HassSide) else None
        result = await storm(side, name, fleet, hass_side)
        results.storms.append(result)
        require(result.read_s is not None, f"{name}: the storm did not settle: {result}")
        if hass_side is not None:
            hass_side.follow_temperatures()
        for rate in RATES:
            results.flows.append(await notifications(side, name, fleet, rate))
    finally:
        # The side first: it cancels its observations while the fleet still answers.
        stopping = time.perf_counter()
        await side.stop()
        stopped = time.perf_counter() - stopping
        fleet.close()
        await asyncio.sleep(1.0)  # retransmission timers of the stop fire within this
        loop_errors = errors.close()
        if results.storms and results.storms[-1].side == name:
            results.storms[-1].stop_s = stopped
            results.storms[-1].loop_errors = loop_errors


# -- at fleet size: storms of 1,000 up to 10,000, Updates, memory, a flood ------------------

SCALE_ENDPOINTS = int(os.environ.get("BENCH_SCALE_ENDPOINTS", "2000"))
SCALE_PROCESSES = int(os.environ.get("BENCH_SCALE_PROCESSES", "4"))
SCALE_STORM = int(os.environ.get("BENCH_SCALE_STORM", "1000"))
SCALE_LIFETIME = int(os.environ.get("BENCH_SCALE_LIFETIME", "60"))
# Two lifetimes: every endpoint updates at least twice (the fleet updates at 0.8 x
# lifetime), so the rate is the sustained one, and a registration that lapsed would show.
SCALE_UPDATE_SECONDS = float(os.environ.get("BENCH_SCALE_UPDATE_SECONDS", str(SCALE_LIFETIME * 2)))
SCALE_NOTIFY_RATES = [
    float(r) for r in os.environ.get("BENCH_SCALE_NOTIFY_RATES", "1000,0").split(",")
]
SCALE_NOTIFY_SECONDS = float(os.environ.get("BENCH_SCALE_NOTIFY_SECONDS", "5"))
SCALE_EXECUTES = int(os.environ.get("BENCH_SCALE_EXECUTES", "200"))
FLOOD_SOCKETS = int(os.environ.get("BENCH_FLOOD_SOCKETS", "1"))
# Datagrams/s of each flooding socket; 0: as fast as its process can send.
FLOOD_RATES = [float(r) for r in os.environ.get("BENCH_FLOOD_RATES", "20000,0").split(",")]
FLOOD_NOTIFY_RATE = 1000.0
STORM_TARGET_S = 5.0
EXECUTE_PATH = "/3303/0/5605"  # Reset Min and Max Measured Values: an Execute every endpoint has


@dataclass
class ScaleResults:
    waves: list[list[str]] = field(default_factory=list)
    memory: list[list[str]] = field(default_factory=list)
    updates: list[list[str]] = field(default_factory=list)
    flows: list[Flow] = field(default_factory=list)
    flood: list[list[str]] = field(default_factory=list)


@pytest.fixture(scope="module")
def scale_results(request: pytest.FixtureRequest) -> Generator[ScaleResults]:
    machine_line = machine()
    collected = ScaleResults()
    yield collected
    if not collected.waves:
        return
    title = (
        f"LwM2M at fleet size: {SCALE_ENDPOINTS:,} endpoints ({SCALE_PROCESSES} fleet processes) "
        f"in storms of {SCALE_STORM:,}, lifetime {SCALE_LIFETIME} s, one observation each"
    )
    print(header(request.config, title, machine_line))
    print(f"load after: {', '.join(f'{v:.2f}' for v in os.getloadavg())}\n")
    print("### storms (each wave: first Register answered -> all of the wave read and observed)\n")
    print(markdown_table(WAVE_HEADERS, collected.waves))
    print("\n### memory of the server process\n")
    print(markdown_table(MEMORY_HEADERS, collected.memory))
    print("\n### Updates at the fleet's lifetime\n")
    print(markdown_table(UPDATE_HEADERS, collected.updates))
    print("\n### notifications at fleet size\n")
    print(markdown_table(FLOW_HEADERS, [flow.row() for flow in collected.flows]))
    print("\n### a flooding client: legitimate Execute and notifications without and with it\n")
    print(markdown_table(FLOOD_HEADERS, collected.flood))


WAVE_HEADERS = [
    "side",
    "wave",
    "registered before",
    "registered s",
    "registrations/s",
    "read+observed s",
    f"< {STORM_TARGET_S:.0f} s",
    "fleet Register failures",
]
MEMORY_HEADERS = [
    "side",
    "endpoints",
    "when",
    "RSS growth MiB",
    "KiB/endpoint",
    "entities",
]
UPDATE_HEADERS = [
    "side",
    "registered",
    "window s",
    "Updates",
    "Updates/s over the window",
    "Updates/s while updating",
    "needed/s (N/lifetime)",
    "lapsed",
    "registered at end",
    "fleet Update failures",
]
FLOOD_HEADERS = [
    "side",
    "flood datagrams/s",
    "Executes",
    "failed",
    "p50 ms",
    "p90 ms",
    "max ms",
    "notifications sent",
    "received",
    "flood datagrams",
    "dropped early",
    "Registers refused",
]


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def executes(side: BridgeSide, names: list[str], count: int) -> tuple[list[float], int]:
    """Sequential Executes to the fleet's endpoints in turn: latencies (s) and failures."""
    server = side.bridge.server
    latencies: list[float] = []
    failed = 0
    for number in range(count):
        registration = server.registrations.by_endpoint(names[number % len(names)])
        if registration is None:
            failed += 1
            continue
        start = time.perf_counter()
        try:
            answer = await server.request(registration, aiocoap.POST, EXECUTE_PATH, timeout=5.0)
        except ServerRequestError:
            failed += 1
            continue
        if answer.success:
            latencies.append(time.perf_counter() - start)
        else:
            failed += 1
    return latencies, failed


def start_flood(port: int, rate: float) -> subprocess.Popen[str]:
    """The fleet simulator's hostile mode in its own process: Registers with random names,
    broken Registers, Updates of nothing and garbage, as fast as it can."""
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "simulator")])}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "iot_bridge_sim.lwm2m_fleet",
            "--server",
            f"coap://127.0.0.1:{port}",
            "--count",
            "0",
            "--hostile",
            str(FLOOD_SOCKETS),
            "--hostile-rate",
            str(rate),
            "--report",
            "3600",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def stop_flood(process: subprocess.Popen[str]) -> int:
    """Stop the flood; how many datagrams it sent."""
    process.terminate()
    output, _ = process.communicate(timeout=15)
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return int(lines[-1].get("hostile_sent", 0)) if lines else 0


async def flood_rows(
    side: BridgeSide, name: str, fleet: Fleet, port: int, names: list[str]
) -> list[list[str]]:
    rows = []
    counts = side.bridge.rejects.counts
    for rate in (None, *FLOOD_RATES):
        process = start_flood(port, rate) if rate is not None else None
        dropped = counts["requests"] + counts["malformed datagram"]
        refused = counts["registrations"] + counts["registrations of new endpoints"]
        try:
            if process is not None:
                await asyncio.sleep(1.0)  # the flood is on
            latencies, failed = await executes(side, names, SCALE_EXECUTES)
            flow = await notifications(
                side, name, fleet, FLOOD_NOTIFY_RATE, len(names), SCALE_NOTIFY_SECONDS
            )
        finally:
            sent = stop_flood(process) if process is not None else 0
        milliseconds = [1000 * latency for latency in latencies] or [float("nan")]
        rows.append(
            [
                SIDE_NAMES[name],
                "none" if rate is None else f"{FLOOD_SOCKETS} x {rate:.0f}/s" if rate else "max",
                str(len(latencies)),
                str(failed),
                f"{percentile(milliseconds, 0.5):.2f}",
                f"{percentile(milliseconds, 0.9):.2f}",
                f"{max(milliseconds):.2f}",
                str(flow.sent),
                str(flow.received),
                str(sent),
                str(counts["requests"] + counts["malformed datagram"] - dropped),
                str(counts["registrations"] + counts["registrations of new endpoints"] - refused),
            ]
        )
    return rows


def memory_row(name: str, when: str, growth: int, entities: int | None) -> list[str]:
    return [
        SIDE_NAMES[name],
        f"{SCALE_ENDPOINTS}",
        when,
        f"{growth / KIB / KIB:.1f}",
        f"{growth / KIB / SCALE_ENDPOINTS:.1f}",
        "-" if entities is None else str(entities),
    ]


@pytest.mark.parametrize("name", ["server", "hass"])
async def test_lwm2m_scale(hass: HomeAssistant, scale_results: ScaleResults, name: str) -> None:
    """SCALE_ENDPOINTS endpoints registered in storms of SCALE_STORM, then Updates over a
    lifetime, notifications, and Executes with and without a flooding client."""
    errors = LoopErrors()
    port = free_udp_port()
    side: BridgeSide = HassSide(hass) if name == "hass" else BridgeSide()
    hass_side = side if isinstance(side, HassSide) else None
    await side.start(port)  # type: ignore[attr-defined]
    fleet = Fleet(
        port,
        f"scale{name}",
        SCALE_ENDPOINTS,
        SCALE_PROCESSES,
        (str(SCALE_LIFETIME), "one"),
    )
    names = fleet.names
    try:
        await fleet.ready()
        if TRACEMALLOC:
            tracemalloc.start()
        before = rss()
        waves = (SCALE_ENDPOINTS + SCALE_STORM - 1) // SCALE_STORM
        for wave in range(waves):
            wanted = min(SCALE_ENDPOINTS, (wave + 1) * SCALE_STORM)
            already = side.registered()
            failures_before = (await fleet.counters()).get("register_failures", 0)
            side.registers.reset()
            start = time.perf_counter()
            await fleet.all(f"storm {SCALE_STORM / SCALE_PROCESSES:.0f}", "storming")
            registered = await bounded_wait(lambda n=wanted: side.registered() >= n, TIMEOUT)
            first = side.registers.first or start
            registered_s = time.perf_counter() - first if registered else None
            remaining = max(0.0, TIMEOUT - (time.perf_counter() - start))
            ready = await bounded_wait(lambda n=wanted: side.set_up() >= n, remaining)
            read_s = time.perf_counter() - first if ready else None
            failures = (await fleet.counters()).get("register_failures", 0) - failures_before
            size = wanted - already
            scale_results.waves.append(
                [
                    SIDE_NAMES[name],
                    f"{wave + 1}/{waves}",
                    str(already),
                    _seconds(registered_s),
                    f"{size / registered_s:.0f}" if registered_s else "-",
                    _seconds(read_s),
                    "yes" if read_s is not None and read_s < STORM_TARGET_S else "NO",
                    str(failures),
                ]
            )
            require(read_s is not None, f"{name}: wave {wave + 1} did not settle")
        entities = None
        if hass_side is not None:

            def everything() -> bool:
                devices, states = hass_side.present()
                return devices >= SCALE_ENDPOINTS and states >= hass_side.expected_entities()

            await bounded_wait(everything, TIMEOUT, poll=0.5)
            entities = hass_side.present()[1]
            hass_side.follow_temperatures()
        grown = rss() - before
        scale_results.memory.append(memory_row(name, "after the storms", grown, entities))
        snapshot = None
        if TRACEMALLOC:
            snapshot = tracemalloc.take_snapshot()
            print_memory_breakdown(name, snapshot, SCALE_ENDPOINTS)

        # Updates: the fleet updates at 0.8 x lifetime; nothing may lapse.
        side.updates.reset()
        side.lapses.reset()
        update_failures = (await fleet.counters()).get("update_failures", 0)
        start = time.perf_counter()
        await asyncio.sleep(SCALE_UPDATE_SECONDS)
        window = time.perf_counter() - start
        update_failures = (await fleet.counters()).get("update_failures", 0) - update_failures
        scale_results.updates.append(
            [
                SIDE_NAMES[name],
                str(SCALE_ENDPOINTS),
                f"{window:.0f}",
                str(side.updates.count),
                f"{side.updates.count / window:.0f}",
                f"{side.updates.count / (side.updates.last - side.updates.first):.0f}"
                if side.updates.first is not None and side.updates.last != side.updates.first
                else "-",
                f"{SCALE_ENDPOINTS / SCALE_LIFETIME:.0f}",
                str(side.lapses.count),
                str(side.registered()),
                str(update_failures),
            ]
        )
        grown = rss() - before
        scale_results.memory.append(
            memory_row(name, f"+{SCALE_UPDATE_SECONDS:.0f} s (after Updates)", grown, entities)
        )
        if snapshot is not None:
            print(f"\n### memory added during the Update window, {SIDE_NAMES[name]}\n")
            growth = tracemalloc.take_snapshot().compare_to(snapshot, "lineno")[:15]
            rows = [
                [
                    f"{stat.traceback[0].filename.rsplit('/', 2)[-2]}/"
                    f"{stat.traceback[0].filename.rsplit('/', 1)[-1]}:{stat.traceback[0].lineno}",
                    f"{stat.size_diff / KIB / SCALE_ENDPOINTS:.2f}",
                ]
                for stat in growth
            ]
            print(markdown_table(["line", "KiB/endpoint"], rows))
            tracemalloc.stop()
        for rate in SCALE_NOTIFY_RATES:
            scale_results.flows.append(
                await notifications(side, name, fleet, rate, SCALE_ENDPOINTS, SCALE_NOTIFY_SECONDS)
            )
        scale_results.flood.extend(await flood_rows(side, name, fleet, port, names))
    finally:
        await side.stop()
        fleet.close()
        await asyncio.sleep(1.0)  # retransmission timers of the stop fire within this
        errors.close()


# -- Execute round trip: Home Assistant against raw aiocoap, the same simulated client ------

ROUND_TRIPS = int(os.environ.get("BENCH_COMMANDS", "300"))
# How the locker sends notifications: "con" (the simulator's default; each costs an ACK) or
# "non" (what Anjay, Wakaama and Leshan's client send unless told otherwise).
LOCKER_NOTIFY = os.environ.get("BENCH_LOCKER_NOTIFY", "con")
ROUND_TRIP_WARMUP = 10
# The LwM2M lock shows "unlocked" once its door reports open (the door is its own sensor).
ROUND_TRIP_TARGET = {"open": ("open", "unlocked"), "lock": ("locked",)}


def _entity_id(hass: HomeAssistant, entry: MockConfigEntry, key: str) -> str | None:
    return er.async_get(hass).async_get_entity_id("lock", DOMAIN, f"{entry.entry_id}_locker1_{key}")


async def _raw_executes(side: BridgeSide, count: int) -> list[float]:
    """A bare aiocoap client context: CON POST (Execute) to the client's own socket,
    the third door's lock, lock and unlock in turn; until its 2.04."""
    registration = side.bridge.server.registrations.by_endpoint("locker1")
    assert registration is not None
    host, port = registration.remote.sockaddr[:2]
    context = await aiocoap.Context.create_client_context(transports=["udp6"])
    interface = context.request_interfaces[0].token_interface.message_interface
    # Addressed directly: the test harness refuses aiocoap's route check (a UDP connect).
    remote = UDP6EndpointAddress((host, port, 0, 0), interface)
    times: list[float] = []
    try:
        for index in range(ROUND_TRIP_WARMUP + count):
            message = aiocoap.Message(
                code=aiocoap.POST,
                uri_path=("10359", "2", "100"),
                payload=b"1" if index % 2 else b"0",
                transport_tuning=aiocoap.Reliable(),
            )
            message.remote = remote
            start = time.perf_counter()
            answer = await context.request(message, handle_blockwise=False).response
            seconds = time.perf_counter() - start
            require(answer.code == aiocoap.CHANGED, f"raw Execute: {answer.code}")
            if index >= ROUND_TRIP_WARMUP:
                times.append(seconds)
    finally:
        await context.shutdown()
    return times


async def _lock_services(hass: HomeAssistant, entity_id: str, count: int) -> list[float]:
    """lock.open and lock.lock in turn until the entity shows the confirmed state."""
    times: list[float] = []
    for index in range(ROUND_TRIP_WARMUP + count):
        action = "open" if index % 2 == 0 else "lock"
        start = time.perf_counter()
        await hass.services.async_call("lock", action, {"entity_id": entity_id}, blocking=True)
        seconds = time.perf_counter() - start
        state = hass.states.get(entity_id)
        require(state is not None and state.state in ROUND_TRIP_TARGET[action], f"{state}")
        if index >= ROUND_TRIP_WARMUP:
            times.append(seconds)
    return times


async def _send_commands(hass: HomeAssistant, device_id: str, count: int) -> list[float]:
    """iot_bridge.send_command (unlock and lock in turn on the first door) until confirmed."""
    times: list[float] = []
    for index in range(ROUND_TRIP_WARMUP + count):
        action = "unlock" if index % 2 == 0 else "lock"
        data = {"device_id": device_id, "capability": "10359_0", "action": action}
        start = time.perf_counter()
        reply = await hass.services.async_call(
            DOMAIN, "send_command", data, blocking=True, return_response=True
        )
        seconds = time.perf_counter() - start
        require(dict(reply or {}).get("status") == "confirmed", f"send_command: {reply}")
        if index >= ROUND_TRIP_WARMUP:
            times.append(seconds)
    return times


def start_locker(port: int) -> subprocess.Popen[bytes]:
    """The simulator's LwM2M parcel locker (aiocoap client), in its own process."""
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "simulator")])}
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "iot_bridge_sim", "--protocol", "lwm2m"),
            *("--lifetime", "600", "--server", f"coap://127.0.0.1:{port}"),
            *("--notify", LOCKER_NOTIFY),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )


async def test_lwm2m_command_round_trip(
    hass: HomeAssistant, request: pytest.FixtureRequest
) -> None:
    """One simulated LwM2M parcel locker (iot_bridge_sim, its own process): raw aiocoap
    Execute, iot_bridge.send_command and lock.open/lock.lock, one after the other."""
    machine_line = await hass.async_add_executor_job(machine)
    port = free_udp_port()
    side = HassSide(hass)
    await side.start(port)
    assert side.entry is not None
    client = start_locker(port)
    try:
        entry = side.entry

        def locked() -> bool:
            entity_id = _entity_id(hass, entry, "10359_1")
            state = hass.states.get(entity_id) if entity_id else None
            return state is not None and state.state == "locked"

        require(await bounded_wait(locked, 30), "the locker's door 2 lock never showed up")
        lock = str(_entity_id(hass, entry, "10359_1"))
        device_id = entry.runtime_data.device_registry_id("locker1")
        cpu = [time.process_time()]
        raw = await _raw_executes(side, ROUND_TRIPS)
        cpu.append(time.process_time())
        with profiled("iot_bridge.send_command (LwM2M)"):
            service = await _send_commands(hass, device_id, ROUND_TRIPS)
        cpu.append(time.process_time())
        with profiled("lock services (LwM2M)"):
            locks = await _lock_services(hass, lock, ROUND_TRIPS)
        cpu.append(time.process_time())
    finally:
        await side.stop()
        client.terminate()
        await hass.async_add_executor_job(client.wait, 15)
    print(header(request.config, "LwM2M Execute round trip", machine_line))
    print(f"locker notifications: {LOCKER_NOTIFY.upper()}\n")
    base = Latency.of("raw aiocoap CON POST (Execute) → 2.04", raw)
    rows = [
        base,
        Latency.of("iot_bridge.send_command (lock/unlock) → confirmed", service),
        Latency.of("lock.open/lock.lock → confirmed state", locks),
    ]
    print(
        markdown_table(
            ["path", "N", "p50 ms", "p90 ms", "p99 ms", "mean ms"], [row.row() for row in rows]
        )
    )
    for row in rows[1:]:
        print(f"\n{row.label.split(' →')[0]} / raw: p50 {row.p50 / base.p50:.2f}x")
    # CPU time of this process (Home Assistant and the server; the client has its own) per
    # command, warm-up included: less noisy than wall-clock latency on a shared machine.
    per_command = [
        (b - a) * 1000 / (ROUND_TRIPS + ROUND_TRIP_WARMUP) for a, b in itertools.pairwise(cpu)
    ]
    print(
        "\nCPU ms/command in this process: raw {:.3f}, send_command {:.3f}, lock {:.3f}".format(
            *per_command
        )
    )
