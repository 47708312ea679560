"""LwM2M clients as IoT Bridge devices: admission, reads, observations and commands.

The bridge owns the server socket (server.py). Each registered endpoint is a device whose
id is its endpoint name, so a client that comes back (after a reboot, from a new address,
after its lifetime lapsed) finds its entities again. A new endpoint is admitted only when
the owner says so (automatically, or once the user accepts it); until then the server
answers its registration and sends it nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

import aiocoap
from aiocoap.numbers.codes import Code

from ..bridge import Admission, BridgeListener, OperationError, OperationFailure
from ..commands import (
    CommandEngine,
    TransportTimeout,
)
from ..devices import DeviceStore, RejectLog
from ..model import Capability, CapabilityKind, Command, CommandReply, CommandResult, Device
from .codec import ContentFormat, decode, encode
from .errors import CodecError
from .linkformat import parse_discover
from .mapping import (
    MISSING,
    Binding,
    Expectation,
    Mapper,
    Method,
    Operation,
    device_info,
    rule_state_paths,
)
from .operations import RawAction, RawOperation, parse_operation, plain_value
from .paths import ROOT, LwM2MPath
from .registration import Registration
from .senml import encode_path_list
from .server import Following, Lwm2mServer, Response, ServerRequestError
from .values import ResourceType, Value

_LOGGER = logging.getLogger(__name__)
# Formats we ask for, best first, when the client lists what it supports; TLV is the one
# every LwM2M 1.0 client must speak.
_PREFERRED_FORMATS: Final = (ContentFormat.SENML_CBOR, ContentFormat.SENML_JSON, ContentFormat.TLV)
_SETUP_TIMEOUT: Final = 10.0
# Waits before reading again a client whose port was closed (not listening yet).
_NOT_LISTENING_YET: Final = (0.1, 0.3, 1.0)
# Reads and observations at admission, across all clients: a registration storm must not
# open thousands of exchanges at once.
_SETUP_CONCURRENCY: Final = 64
_CANCEL_TIMEOUT: Final = 1.0
_SHUTDOWN_BUDGET: Final = 3.0
# After a command's request was accepted, the status is read again at these fractions of
# the time left if no notification confirmed it; the last check decides "refused".
_RECHECKS: Final = (0.5, 0.9)
# Device management entities every LwM2M device gets (diagnostic sensors).
KEY_LIFETIME: Final = "registration_lifetime"
KEY_LAST_SEEN: Final = "last_seen"
KEY_QUEUED: Final = "queued_requests"
# Updates, Sends and notifications refresh "last seen" at most this often (seconds): a
# state update per message would add Home Assistant work for every message of a fleet.
_LAST_SEEN_EVERY: Final = 60.0
_ASLEEP_MARGIN: Final = 0.05
_DEVICE_OBJECT: Final = 3


@dataclass(frozen=True, slots=True)
class Lwm2mSettings:
    """How the server listens and treats its clients."""

    host: str = "0.0.0.0"
    port: int = 5683
    pmin: int = 1
    pmax: int = 300
    # A client in queue mode listens this long after it last sent something (the
    # specification's default is MAX_TRANSMIT_WAIT, 93 s).
    queue_awake: float = 93.0


@dataclass(slots=True)
class Endpoint:
    """What the bridge knows about one client, registered or not."""

    name: str
    registration: Registration | None = None
    admission: Admission = Admission.PENDING
    bindings: dict[str, Binding] = field(default_factory=dict)
    values: dict[LwM2MPath, Value] = field(default_factory=dict)
    observations: dict[LwM2MPath, Following] = field(default_factory=dict)
    # Paths an Observe was sent for and not cancelled yet: the client may be notifying even
    # when our side gave up waiting (an unload in the middle of setting up).
    observe_sent: set[LwM2MPath] = field(default_factory=set)
    # The fields below stay None until used: at 10,000 endpoints every empty set, dict or
    # Event is memory (docs/benchmarks.md, LwM2M at fleet size).
    # Instances the client refused to read whole: read, and observed, one resource at a time.
    per_resource: set[LwM2MPath] | None = None
    # Commands waiting for a status: what it must be, and what to call when it is.
    expectations: dict[str, tuple[Expectation, Callable[[], None]]] | None = None
    setup: asyncio.Task[None] | None = None
    awake_until: float = 0.0
    # Set when a queue-mode client wakes; only requests waiting for one create it.
    wake: asyncio.Event | None = None
    accept: int | None = None
    # Requests held for a sleeping (queue-mode) client right now.
    queued: int = 0
    # When "last seen" was last published (monotonic), and when the registration lapsed
    # (Unix time; None while registered or after a de-registration).
    seen_published: float = -math.inf
    lapsed_at: float | None = None

    def awake(self, now: float) -> bool:
        """Whether a request sent now reaches the client."""
        registration = self.registration
        if registration is None:
            return False
        return not registration.queue_mode or now < self.awake_until


class Lwm2mBridge:
    """The LwM2M server as a Bridge: registered clients become devices."""

    def __init__(
        self,
        settings: Lwm2mSettings,
        engine: CommandEngine,
        listener: BridgeListener,
        *,
        admission: Callable[[str], Admission] = lambda _endpoint: Admission.ACCEPTED,
        mapper: Mapper | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.rejects = RejectLog(_LOGGER)
        self.store = DeviceStore(listener, self.rejects)
        self.server = Lwm2mServer(
            settings.host,
            settings.port,
            self,
            rejects=self.rejects,
            # Devices never count against the cap on registrations waiting (admission.py).
            known=lambda name: name in self.store.devices,
        )
        self.endpoints: dict[str, Endpoint] = {}
        self._listener = listener
        self._admission = admission
        self._mapper = mapper or Mapper()
        self._clock = clock
        self._setup_slots = asyncio.Semaphore(_SETUP_CONCURRENCY)
        # As many cancels in flight as set-ups: a fleet's thousands at once (unload) outran
        # the clients' answers and aiocoap's retries (bench_lwm2m.py at 1,000 endpoints).
        self._cancel_slots = asyncio.Semaphore(_SETUP_CONCURRENCY)
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- Bridge ---------------------------------------------------------------------------

    @property
    def devices(self) -> Mapping[str, Device]:
        """Admitted clients, registered now or before."""
        return self.store.devices

    @property
    def connected(self) -> bool:
        """Whether the server socket is bound."""
        return self.server.running

    def describe(self) -> str:
        """The server's address, for messages."""
        return f"LwM2M server on UDP {self.settings.host}:{self.settings.port}"

    async def start(self) -> None:
        """Bind the port (a taken port raises BridgeStartError with a clear reason)."""
        await self.server.start()

    async def stop(self) -> None:
        """Cancel observations on the wire (within a short budget), close the socket."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        cancels = [
            self._cancel_on_wire(endpoint, path)
            for endpoint in self.endpoints.values()
            for path in list(endpoint.observe_sent)
        ]
        for endpoint in self.endpoints.values():
            self._drop_observations(endpoint)
        if cancels:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_SHUTDOWN_BUDGET):
                    await asyncio.gather(*cancels, return_exceptions=True)
        await self.server.stop()

    async def admit(self, device_id: str) -> None:
        """The user accepted a pending client: read it and make it a device."""
        endpoint = self.endpoints.get(device_id)
        if endpoint is None or endpoint.admission is Admission.ACCEPTED:
            return
        endpoint.admission = Admission.ACCEPTED
        if endpoint.registration is not None:
            self._start_setup(endpoint)

    async def forget_device(self, device_id: str) -> None:
        """The user deleted the device: it is asked again if it registers again."""
        endpoint = self.endpoints.pop(device_id, None)
        self.store.forget(device_id)
        if endpoint is not None:
            if endpoint.setup is not None:
                endpoint.setup.cancel()
            for path in list(endpoint.observe_sent):
                self._spawn(self._cancel_on_wire(endpoint, path))
            self._drop_observations(endpoint)

    def diagnostics(self) -> dict[str, Any]:
        """Registrations, admission and what was refused."""
        now = self._clock()
        return {
            "server": {"port": self.settings.port, "registered": len(self.server.registrations)},
            "endpoints": {
                name: _endpoint_diagnostics(endpoint, now)
                for name, endpoint in list(self.endpoints.items())[:200]
            },
            "rejected": dict(self.rejects.counts),
        }

    def device_diagnostics(self, device_id: str) -> dict[str, Any]:
        """The client's registration, object list and observations."""
        endpoint = self.endpoints.get(device_id)
        if endpoint is None:
            return {}
        info = _endpoint_diagnostics(endpoint, self._clock())
        if endpoint.registration is not None:
            remote = endpoint.registration.remote
            info["address"] = str(getattr(remote, "hostinfo", remote))
        return info

    # -- registration interface -------------------------------------------------------------

    def registered(self, registration: Registration, previous: Registration | None) -> None:
        """A client registered: admit it (or ask), then read and observe it."""
        endpoint = self.endpoints.get(registration.endpoint)
        if endpoint is None:
            endpoint = Endpoint(registration.endpoint)
            self.endpoints[registration.endpoint] = endpoint
        endpoint.registration = registration
        endpoint.accept = _preferred_format(registration)
        endpoint.lapsed_at = None
        self._woke(endpoint)
        self._seen(endpoint, force=True)
        # A new registration means the client forgot its observations.
        self._drop_observations(endpoint)
        if endpoint.admission is not Admission.ACCEPTED:
            endpoint.admission = self._admission(registration.endpoint)
        if endpoint.admission is Admission.ACCEPTED:
            self._start_setup(endpoint)
            self.engine.resend_pending(registration.endpoint)

    def updated(self, registration: Registration, previous: Registration) -> None:
        """An Update: lifetime, objects or address changed, and a queue-mode client is up."""
        endpoint = self.endpoints.get(registration.endpoint)
        if endpoint is None:  # pragma: no cover - registered() always ran first
            return
        endpoint.registration = registration
        self._woke(endpoint)
        self._seen(endpoint, force=registration.lifetime != previous.lifetime)
        if endpoint.admission is not Admission.ACCEPTED:
            return
        device = self.store.get(registration.endpoint)
        objects_changed = registration.objects != previous.objects
        moved = registration.remote != previous.remote
        if device is None or objects_changed or moved or not endpoint.observations:
            # Observations follow the address: a client behind a new NAT binding gets new ones.
            self._drop_observations(endpoint)
            self._start_setup(endpoint)
        elif not device.available:
            self.store.set_available(registration.endpoint, True)
        self.engine.resend_pending(registration.endpoint)

    def deregistered(self, registration: Registration, *, expired: bool) -> None:
        """Gone (de-registered or lifetime lapsed): unavailable until it registers again."""
        endpoint = self.endpoints.get(registration.endpoint)
        if endpoint is None or endpoint.registration is not registration:
            return
        endpoint.registration = None
        endpoint.lapsed_at = time.time() if expired else None
        if endpoint.wake is not None:
            endpoint.wake.clear()
        if endpoint.setup is not None:
            endpoint.setup.cancel()
        self._drop_observations(endpoint)
        _LOGGER.info(
            "LwM2M client %s %s",
            registration.endpoint,
            "stopped updating its registration" if expired else "de-registered",
        )
        self.store.set_available(registration.endpoint, False)

    def sent(self, registration: Registration, content_format: int, payload: bytes) -> Code:
        """LwM2M 1.1 Send: the values count like a notification's (entities update)."""
        endpoint = self.endpoints.get(registration.endpoint)
        if endpoint is None or endpoint.registration is None:  # pragma: no cover - registered
            return aiocoap.NOT_FOUND
        endpoint.registration = registration  # its address may have moved (NAT)
        self._woke(endpoint)
        self._seen(endpoint)
        if endpoint.admission is not Admission.ACCEPTED:
            return aiocoap.FORBIDDEN
        try:
            values = decode(content_format, payload, ROOT, self._mapper.registry)
        except CodecError as err:
            self._reject(endpoint, "send", f"dropped a Send: {err}")
            return aiocoap.BAD_REQUEST
        self.rejects.accept(endpoint.name, "send")
        self._take(endpoint, values)
        return aiocoap.CHANGED

    def _woke(self, endpoint: Endpoint) -> None:
        endpoint.awake_until = self._clock() + self.settings.queue_awake
        if endpoint.wake is not None:
            endpoint.wake.set()

    def lapsed_since(self, device_id: str) -> float | None:
        """When the device's registration lapsed (Unix time), None while it is registered
        or after it de-registered on purpose."""
        endpoint = self.endpoints.get(device_id)
        return None if endpoint is None else endpoint.lapsed_at

    def _seen(self, endpoint: Endpoint, *, force: bool = False) -> None:
        """Publish "last seen" (and the lifetime) of an accepted device."""
        now = self._clock()
        registration = endpoint.registration
        if registration is None or self.store.get(endpoint.name) is None:
            return
        if not force and now - endpoint.seen_published < _LAST_SEEN_EVERY:
            return
        endpoint.seen_published = now
        self.store.apply_state(
            endpoint.name,
            {
                KEY_LAST_SEEN: datetime.now(UTC).isoformat(timespec="seconds"),
                KEY_LIFETIME: registration.lifetime,
            },
        )

    def _publish_queued(self, endpoint: Endpoint) -> None:
        registration = endpoint.registration
        if registration is not None and registration.queue_mode:
            self.store.apply_state(endpoint.name, {KEY_QUEUED: endpoint.queued})

    # -- admission: read, map, observe ------------------------------------------------------

    def _start_setup(self, endpoint: Endpoint) -> None:
        if endpoint.setup is not None and not endpoint.setup.done():
            endpoint.setup.cancel()
        endpoint.setup = self._spawn(self._setup(endpoint))

    async def _setup(self, endpoint: Endpoint) -> None:
        registration = endpoint.registration
        if registration is None:
            return
        endpoint.per_resource = None
        instances = [
            path
            for path in registration.objects.instance_paths()
            if self._mapper.shown(path.object_id or 0)
        ]
        async with self._setup_slots:
            for instance in instances:
                await self._read_into(endpoint, instance)
            observed = frozenset(
                [instance for instance in instances if await self._observe(endpoint, instance)]
            )
        bindings = self._mapper.bindings(instances, endpoint.values, observed)
        endpoint.bindings = {binding.capability.key: binding for binding in bindings}
        capabilities = {b.capability.key: b.capability for b in bindings}
        capabilities |= _management_capabilities(registration)
        device = Device(
            device_id=endpoint.name,
            name=endpoint.name,
            info=device_info(endpoint.values),
            capabilities=capabilities,
        )
        self.store.announce(device)
        self.store.set_available(endpoint.name, True)
        self._apply(endpoint, endpoint.values.keys())
        self._seen(endpoint, force=True)
        self._publish_queued(endpoint)
        if endpoint.setup is asyncio.current_task():
            endpoint.setup = None  # a finished task kept per endpoint is memory for nothing

    async def _read_into(self, endpoint: Endpoint, path: LwM2MPath) -> None:
        """Read an instance; store what comes back (a failed read is logged once)."""
        for delay in (*_NOT_LISTENING_YET, None):
            try:
                response = await self._request(endpoint, aiocoap.GET, path, timeout=_SETUP_TIMEOUT)
                break
            except ServerRequestError as err:
                if not err.unreachable or delay is None:
                    self._reject(endpoint, f"read {path}", f"no answer to read of {path}: {err}")
                    return
                # Some clients (lwm2m-node-lib) register first and open the socket they
                # listen on right after: a read at once finds the port closed.
                await asyncio.sleep(delay)
        if response.code == aiocoap.NOT_ACCEPTABLE and endpoint.accept is not None:
            endpoint.accept = None  # let the client pick its format
            await self._read_into(endpoint, path)
            return
        if not response.success:
            if path.depth == 2 and await self._read_resources(endpoint, path):
                return
            self._reject(endpoint, f"read {path}", f"read of {path} refused: {response.describe()}")
            return
        self._absorb(endpoint, path, response)

    async def _read_resources(self, endpoint: Endpoint, instance: LwM2MPath) -> bool:
        """An instance the client will not read whole (some clients answer resources only):
        Discover its resources and read each one. True when at least one was read."""
        registration = endpoint.registration
        if registration is None:
            return False
        try:
            answer = await self._request(
                endpoint,
                aiocoap.GET,
                instance,
                timeout=_SETUP_TIMEOUT,
                accept=ContentFormat.LINK_FORMAT,
            )
            links = parse_discover(answer.payload, registration.objects.root)
        except (ServerRequestError, CodecError):
            return False
        if not answer.success:
            return False
        # Executable resources (known to the registry) have nothing to read.
        resources = sorted(
            {
                link.path
                for link in links
                if link.path.depth == 3
                and link.path.startswith(instance)
                and self._readable(link.path)
            }
        )
        read = False
        for resource in resources:
            try:
                response = await self._request(
                    endpoint, aiocoap.GET, resource, timeout=_SETUP_TIMEOUT
                )
            except ServerRequestError:
                continue
            if response.success:
                self._absorb(endpoint, resource, response)
                read = True
        if read:
            if endpoint.per_resource is None:
                endpoint.per_resource = set()
            endpoint.per_resource.add(instance)
            _LOGGER.debug(
                "LwM2M client %s: %s read one resource at a time", endpoint.name, instance
            )
        return read

    def _readable(self, resource: LwM2MPath) -> bool:
        definition = self._mapper.registry.resource(resource)
        return definition is None or definition.type is not ResourceType.NONE

    async def _observe(self, endpoint: Endpoint, instance: LwM2MPath) -> bool:
        """Observe an instance that carries state; True when the client agreed."""
        object_id = instance.object_id or 0
        if self._mapper.mapped(object_id) and not self._has_state(instance):
            return False
        if endpoint.registration is None:
            return False
        await self._write_attributes(endpoint, instance)
        if endpoint.per_resource is None or instance not in endpoint.per_resource:
            return await self._observe_path(endpoint, instance)
        # A client that reads resources only is observed resource by resource (its answer
        # to an instance Observe need not mean anything).
        agreed = [
            resource
            for resource in self._observable_resources(endpoint, instance)
            if await self._observe_path(endpoint, resource)
        ]
        return bool(agreed)

    def _observable_resources(self, endpoint: Endpoint, instance: LwM2MPath) -> list[LwM2MPath]:
        """The resources read from an instance that make up entity state."""
        read = {
            path if path.depth == 3 else path.parent
            for path in endpoint.values
            if path.depth >= 3 and path.startswith(instance)
        }
        rules = self._mapper.table.rules.get(instance.object_id or 0)
        if rules is None:
            return sorted(read)
        wanted = {path for rule in rules for path in rule_state_paths(instance, rule)}
        return sorted(read & wanted)

    async def _observe_path(self, endpoint: Endpoint, path: LwM2MPath) -> bool:
        registration = endpoint.registration
        if registration is None:
            return False
        try:
            await self._wait_awake(endpoint, _SETUP_TIMEOUT)
            endpoint.observe_sent.add(path)
            first = await self._start_observation(endpoint, registration, path, _SETUP_TIMEOUT)
        except (ServerRequestError, TransportTimeout) as err:
            self._reject(endpoint, f"observe {path}", f"cannot observe {path}: {err}")
            return False
        if first.success:
            self._absorb(endpoint, path, first)
        return first.success

    def _has_state(self, instance: LwM2MPath) -> bool:
        rules = self._mapper.table.rules.get(instance.object_id or 0, ())
        return any(rule.kind.value not in ("button",) for rule in rules)

    async def _write_attributes(self, endpoint: Endpoint, instance: LwM2MPath) -> None:
        query = (f"pmin={self.settings.pmin}", f"pmax={self.settings.pmax}")
        with contextlib.suppress(ServerRequestError, TransportTimeout):
            await self._request(
                endpoint, aiocoap.PUT, instance, timeout=_SETUP_TIMEOUT, query=query
            )

    async def _start_observation(
        self, endpoint: Endpoint, registration: Registration, path: LwM2MPath, timeout: float
    ) -> Response:
        """Observe `path`; its notifications are absorbed as they arrive (no task waits)."""
        following: Following | None = None

        def notified(notification: Response) -> None:
            if endpoint.registration is not None:
                self._woke(endpoint)
                self._seen(endpoint)
            if notification.partial:  # larger than one block: read it whole
                self._spawn(self._read_into(endpoint, path))
            elif notification.success:
                self._absorb(endpoint, path, notification)

        def ended() -> None:
            # The client ended it (RST, error answer): read again at its next Update.
            if following is not None and endpoint.observations.get(path) is following:
                del endpoint.observations[path]

        started = self._clock()
        first, following = await self.server.observe(
            registration,
            str(path),
            timeout=timeout,
            accept=endpoint.accept,
            on_notification=notified,
            on_end=ended,
        )
        if first.partial and first.success:  # larger than one block: read it whole
            try:
                first = await self._request(
                    endpoint, aiocoap.GET, path, timeout=timeout - (self._clock() - started)
                )
            except BaseException:
                if following is not None:
                    following.stop()
                raise
        if following is not None:
            if first.success:
                old = endpoint.observations.get(path)
                if old is not None:
                    old.stop()
                endpoint.observations[path] = following
            else:
                following.stop()
        return first

    def _absorb(self, endpoint: Endpoint, path: LwM2MPath, response: Response) -> None:
        """Decode a read or notification and apply what changed."""
        content_format = response.content_format
        if content_format is None:
            content_format = (
                ContentFormat.TEXT if path.resource_id is not None else ContentFormat.TLV
            )
        try:
            values = decode(content_format, response.payload, path, self._mapper.registry)
        except CodecError as err:
            self._reject(endpoint, "payload", f"dropped a payload for {path}: {err}")
            return
        self.rejects.accept(endpoint.name, "payload")
        self._take(endpoint, values)

    def _take(self, endpoint: Endpoint, values: Mapping[LwM2MPath, Value]) -> None:
        """New values from the client: apply what changed, check pending confirmations."""
        changed = [p for p, v in values.items() if endpoint.values.get(p, MISSING) != v]
        endpoint.values.update(values)
        self._apply(endpoint, changed)
        self._check_expectations(endpoint, values)
        if any(path.object_id == _DEVICE_OBJECT for path in changed):
            self._refresh_info(endpoint)

    def _refresh_info(self, endpoint: Endpoint) -> None:
        """The Device object changed (a firmware update): the device page follows."""
        device = self.store.get(endpoint.name)
        if device is None:
            return
        info = device_info(endpoint.values, self._mapper.table)
        if info != device.info:
            self.store.announce(replace(device, info=info, state=dict(device.state)))

    def _apply(self, endpoint: Endpoint, paths: Iterable[LwM2MPath]) -> None:
        touched = set(paths)
        # A resource instance (4/0/4/0) changes the multiple resource it belongs to.
        touched |= {path.parent for path in touched if path.depth == 4}
        if not touched or self.store.get(endpoint.name) is None:
            return
        state: dict[str, Any] = {}
        for key, binding in endpoint.bindings.items():
            if touched.intersection(binding.state_paths):
                value = binding.state(endpoint.values)
                if value is not MISSING:
                    state[key] = value
        if state:
            self.store.apply_state(endpoint.name, state)

    def _reject(self, endpoint: Endpoint, cause: str, message: str) -> None:
        self.rejects.reject(endpoint.name, cause, f"LwM2M client {endpoint.name}: {message}")

    # -- requests -----------------------------------------------------------------------------

    async def _wait_awake(self, endpoint: Endpoint, timeout: float) -> None:
        """Hold a request until a queue-mode client is listening, or give up at timeout."""
        if endpoint.awake(self._clock()):
            return
        endpoint.queued += 1
        self._publish_queued(endpoint)
        # Give up a moment before the caller's own deadline, so its outcome says why.
        timeout -= min(_ASLEEP_MARGIN, timeout / 20)
        try:
            async with asyncio.timeout(max(0.0, timeout)):
                while not endpoint.awake(self._clock()):
                    if endpoint.wake is None:
                        endpoint.wake = asyncio.Event()
                    endpoint.wake.clear()
                    await endpoint.wake.wait()
                    if endpoint.registration is None:
                        raise TransportTimeout("device not registered")
        except TimeoutError:
            raise TransportTimeout("device asleep: it did not wake before the deadline") from None
        finally:
            endpoint.queued -= 1
            if not endpoint.queued:
                endpoint.wake = None
            self._publish_queued(endpoint)

    async def _request(
        self,
        endpoint: Endpoint,
        code: aiocoap.numbers.codes.Code,
        path: LwM2MPath,
        *,
        timeout: float,
        payload: bytes = b"",
        content_format: int | None = None,
        query: tuple[str, ...] = (),
        accept: int | None = None,
    ) -> Response:
        """One request; a read asks for `accept`, else for the client's format."""
        started = self._clock()
        await self._wait_awake(endpoint, timeout)
        registration = endpoint.registration
        if registration is None:
            raise ServerRequestError("device not registered")
        return await self.server.request(
            registration,
            code,
            str(path),
            timeout=timeout - (self._clock() - started),
            payload=payload,
            content_format=content_format,
            accept=accept if accept is not None or code != aiocoap.GET else endpoint.accept,
            query=query,
        )

    async def _cancel_on_wire(self, endpoint: Endpoint, path: LwM2MPath) -> None:
        registration = endpoint.registration
        if registration is not None and endpoint.awake(self._clock()):
            async with self._cancel_slots:
                await self.server.cancel_observation(
                    registration, str(path), timeout=_CANCEL_TIMEOUT
                )

    def _drop_observations(self, endpoint: Endpoint) -> None:
        """Forget our side of the observations (the client forgot them, or we cancel them)."""
        for following in endpoint.observations.values():
            following.stop()
        endpoint.observations.clear()
        endpoint.observe_sent.clear()

    def _spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- commands -----------------------------------------------------------------------------

    async def execute(self, command: Command, capability: Capability) -> CommandResult:
        """Carry out a command: the request's 2.xx is *accepted*; the observed or re-read
        status confirms it. An Execute goes out once (CoAP retransmits it with the same
        message id, which the client deduplicates); only Writes are retried."""
        endpoint = self.endpoints.get(command.device_id)
        binding = endpoint.bindings.get(capability.key) if endpoint else None
        if endpoint is None or binding is None:
            return self.engine.refuse(command, "unknown_capability", "capability unknown")
        try:
            operation = binding.operation(command.action, command.params)
        except ValueError as err:
            return self.engine.refuse(command, "not_supported", str(err))
        if not operation.repeatable:
            command = _without_retries(command)
        transport = _CommandTransport(self, endpoint, operation)
        try:
            result = await self.engine.execute(transport, command, confirmable=True)
        finally:
            transport.close()
        return result

    # -- raw operations (send_command without a capability) ----------------------------------

    async def operate(
        self, device_id: str, action: str, params: Mapping[str, Any], *, deadline: float
    ) -> dict[str, Any]:
        """One path-addressed operation, sent once; its answer as response data.

        Reads, notifications' first values and Send-like answers update entities too. An
        error answer raises OperationError(REFUSED) with the code and the client's reason;
        no answer by the deadline (a queue-mode client that did not wake) raises TIMEOUT.
        """
        operation = parse_operation(action, params, self._mapper.registry)
        endpoint = self.endpoints.get(device_id)
        if endpoint is None or endpoint.admission is not Admission.ACCEPTED:
            raise OperationError(OperationFailure.INVALID, f"{device_id} is not an accepted client")
        started = self._clock()
        try:
            async with asyncio.timeout(deadline):
                answer = await self._operate(endpoint, operation, deadline)
        except (ServerRequestError, TransportTimeout, TimeoutError) as err:
            reason = str(err) or f"no answer within {deadline:g} s"
            raise OperationError(OperationFailure.TIMEOUT, reason) from None
        answer["path"] = str(operation.path)
        answer["latency_ms"] = round((self._clock() - started) * 1000, 2)
        return answer

    async def _operate(
        self, endpoint: Endpoint, operation: RawOperation, deadline: float
    ) -> dict[str, Any]:
        action, path = operation.action, operation.path
        if action is RawAction.OBSERVE:
            return await self._operate_observe(endpoint, path, deadline)
        if action is RawAction.CANCEL_OBSERVE:
            observing = path in endpoint.observe_sent or path in endpoint.observations
            following = endpoint.observations.pop(path, None)
            if following is not None:
                following.stop()
            endpoint.observe_sent.discard(path)
            registration = endpoint.registration
            await self._wait_awake(endpoint, deadline)
            if registration is not None:
                await self.server.cancel_observation(registration, str(path), timeout=deadline)
            return {"code": None, "was_observed": observing}
        code, path, options = _raw_request(endpoint, operation, deadline)
        response = await self._request(endpoint, code, path, **options)
        if not response.success:
            raise OperationError(
                OperationFailure.REFUSED, response.describe(), code=response.code.dotted
            )
        answer: dict[str, Any] = {"code": response.code.dotted}
        if action in (RawAction.READ, RawAction.READ_COMPOSITE):
            answer["values"] = self._operation_values(endpoint, path, response)
        elif action is RawAction.DISCOVER:
            answer["links"] = self._links(endpoint, response)
        elif action is RawAction.CREATE and response.location:
            answer["instance"] = "/" + "/".join(response.location[-2:])
        return answer

    async def _operate_observe(
        self, endpoint: Endpoint, path: LwM2MPath, deadline: float
    ) -> dict[str, Any]:
        registration = endpoint.registration
        if registration is None:
            raise TransportTimeout("device not registered")
        await self._wait_awake(endpoint, deadline)
        old = endpoint.observations.pop(path, None)
        if old is not None:
            old.stop()
        endpoint.observe_sent.add(path)
        first = await self._start_observation(endpoint, registration, path, deadline)
        if not first.success:
            endpoint.observe_sent.discard(path)
            raise OperationError(OperationFailure.REFUSED, first.describe(), code=first.code.dotted)
        values = self._operation_values(endpoint, path, first)
        return {"code": first.code.dotted, "values": values}

    def _operation_values(
        self, endpoint: Endpoint, path: LwM2MPath, response: Response
    ) -> dict[str, Any]:
        """The answer's values by path, as response data; they update entities too."""
        content_format = response.content_format
        if content_format is None:
            content_format = ContentFormat.TEXT if path.depth >= 3 else ContentFormat.TLV
        try:
            values = decode(content_format, response.payload, path, self._mapper.registry)
        except CodecError as err:
            raise OperationError(
                OperationFailure.REFUSED, f"undecodable answer: {err}", code=response.code.dotted
            ) from None
        self.rejects.accept(endpoint.name, "payload")
        self._take(endpoint, values)
        return {str(p): plain_value(v) for p, v in sorted(values.items())}

    def _links(self, endpoint: Endpoint, response: Response) -> list[dict[str, Any]]:
        registration = endpoint.registration
        root = registration.objects.root if registration is not None else "/"
        try:
            links = parse_discover(response.payload, root)
        except CodecError as err:
            raise OperationError(
                OperationFailure.REFUSED, f"undecodable answer: {err}", code=response.code.dotted
            ) from None
        return [{"path": str(link.path), "attributes": dict(link.attributes)} for link in links]

    def _check_expectations(self, endpoint: Endpoint, values: Mapping[LwM2MPath, Value]) -> None:
        if not endpoint.expectations:
            return
        for expectation, met in list(endpoint.expectations.values()):
            value = values.get(expectation.path, MISSING)
            if value is not MISSING and expectation.met_by(value):
                met()


class _CommandTransport:
    """One command's attempts: send the operation, then watch for the expected status."""

    def __init__(self, bridge: Lwm2mBridge, endpoint: Endpoint, operation: Operation) -> None:
        self._bridge = bridge
        self._endpoint = endpoint
        self._operation = operation
        self._watch: asyncio.Task[None] | None = None
        self._key = ""
        self._sent = False
        # Done once the observed (or re-read) status matched, before or after the 2.xx.
        self._matched: asyncio.Future[None] | None = None
        self._accepted = False  # the client answered 2.xx
        self._ended = False  # the engine has this command's reply: nothing more goes to it

    async def send_command(self, command: Command, *, attempt: int, expires_in: float) -> None:
        bridge, endpoint, operation = self._bridge, self._endpoint, self._operation
        if self._sent and not operation.repeatable:
            # The engine sends pending commands again when the client re-registers or
            # updates (it may have missed them). An Execute carries no id a client could
            # deduplicate: it goes out once, and its confirmation watch keeps running.
            return
        self._sent = True
        if operation.expect is not None and not self._key:
            self._key = command.command_id
            self._matched = asyncio.get_running_loop().create_future()
            if endpoint.expectations is None:
                endpoint.expectations = {}
            endpoint.expectations[self._key] = (operation.expect, self._met)
        try:
            response = await bridge._request(
                endpoint,
                aiocoap.POST if operation.method is Method.EXECUTE else _write_code(operation),
                operation.path,
                timeout=expires_in,
                payload=self._payload(endpoint),
                content_format=self._content_format(endpoint),
            )
        except ServerRequestError as err:
            raise TransportTimeout(str(err)) from err
        if not response.success:
            bridge.engine.handle_reply(
                CommandReply(command.command_id, ok=False, reason=response.describe())
            )
            return
        if operation.expect is None or self._matched is None:
            bridge.engine.handle_reply(CommandReply(command.command_id, ok=True, reason="accepted"))
            return
        self._accepted = True
        known = endpoint.values.get(operation.expect.path, MISSING)
        if self._matched.done() or (known is not MISSING and operation.expect.met_by(known)):
            self._reply(ok=True)
            return
        if self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(
                self._confirm(operation.expect, self._matched, expires_in)
            )

    def _met(self) -> None:
        """The observed status matches: confirmed now if the client accepted the request,
        else as soon as it does (the notification can overtake the 2.04)."""
        if self._matched is not None and not self._matched.done():
            self._matched.set_result(None)
        if self._accepted:
            self._reply(ok=True)

    def _reply(self, *, ok: bool, reason: str = "") -> None:
        """The command's one reply to the engine."""
        if self._ended:
            return
        self._ended = True
        self._bridge.engine.handle_reply(CommandReply(self._key, ok=ok, reason=reason))

    async def _confirm(
        self, expectation: Expectation, matched: asyncio.Future[None], seconds: float
    ) -> None:
        """No notification confirmed it yet: wait, re-reading the status now and then; the
        last check decides "refused". A notification confirms it the moment it arrives."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        for fraction in _RECHECKS:
            remaining = started + seconds * fraction - loop.time()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, remaining)):
                    await asyncio.shield(matched)
            if matched.done():
                self._reply(ok=True)
                return
            await self._reread(expectation, seconds * 0.05)
        if matched.done():
            self._reply(ok=True)
            return
        current = self._endpoint.values.get(expectation.path, MISSING)
        shown = "unknown" if current is MISSING else current
        self._reply(ok=False, reason=f"accepted, but {expectation.path} stayed {shown!r}")

    async def _reread(self, expectation: Expectation, timeout: float) -> None:
        bridge, endpoint = self._bridge, self._endpoint
        with contextlib.suppress(ServerRequestError, TransportTimeout):
            response = await bridge._request(
                endpoint, aiocoap.GET, expectation.path, timeout=max(0.2, timeout)
            )
            if response.success:
                bridge._absorb(endpoint, expectation.path, response)

    def _payload(self, endpoint: Endpoint) -> bytes:
        operation = self._operation
        if operation.method is Method.EXECUTE:
            return operation.arguments.encode()
        return _encode_write(endpoint, operation, self._bridge._mapper)

    def _content_format(self, endpoint: Endpoint) -> int | None:
        if self._operation.method is Method.EXECUTE:
            return None
        return _write_format(endpoint, self._operation)

    def close(self) -> None:
        self._ended = True
        if self._watch is not None:
            self._watch.cancel()
        if self._endpoint.expectations is not None:
            self._endpoint.expectations.pop(self._key, None)
            if not self._endpoint.expectations:
                self._endpoint.expectations = None


def _raw_request(
    endpoint: Endpoint, operation: RawOperation, deadline: float
) -> tuple[aiocoap.numbers.codes.Code, LwM2MPath, dict[str, Any]]:
    """Method, path and request options of a raw operation (observe/cancel excepted)."""
    action, path = operation.action, operation.path
    options: dict[str, Any] = {"timeout": deadline}
    if action is RawAction.READ:
        return aiocoap.GET, path, options
    if action is RawAction.READ_COMPOSITE:
        # FETCH to the root with the paths as a SenML pack, answered in the same format.
        senml = endpoint.accept if endpoint.accept == ContentFormat.SENML_CBOR else None
        content_format = senml or ContentFormat.SENML_JSON
        payload = encode_path_list(operation.paths, cbor=senml is not None)
        return (
            aiocoap.FETCH,
            path,
            options
            | {
                "payload": payload,
                "content_format": content_format,
                "accept": content_format,
            },
        )
    if action is RawAction.DISCOVER:
        return aiocoap.GET, path, options | {"accept": ContentFormat.LINK_FORMAT}
    if action is RawAction.WRITE_ATTRIBUTES:
        return aiocoap.PUT, path, options | {"query": operation.query}
    if action is RawAction.EXECUTE:
        return aiocoap.POST, path, options | {"payload": operation.arguments.encode()}
    if action is RawAction.DELETE:
        return aiocoap.DELETE, path, options
    # Write (replace: PUT), partial update and Create (POST) carry values.
    base = path
    if path.depth >= 3 and action is RawAction.WRITE:
        content_format = endpoint.accept or ContentFormat.TEXT
    elif action is RawAction.CREATE and operation.values and path.depth == 1:
        base, content_format = _create_base(endpoint, operation)
    else:
        content_format = endpoint.accept or ContentFormat.TLV
    payload = encode(content_format, operation.values, base) if operation.values else b""
    code = aiocoap.PUT if action is RawAction.WRITE else aiocoap.POST
    return code, path, options | {"payload": payload, "content_format": content_format}


def _create_base(endpoint: Endpoint, operation: RawOperation) -> tuple[LwM2MPath, int]:
    """A Create naming its instance is encoded below the object; one that lets the client
    pick the id is resources only, which only TLV can say (values sit below a stand-in)."""
    if operation.unnamed:
        return next(iter(operation.values)).parent, ContentFormat.TLV
    return operation.path, endpoint.accept or ContentFormat.TLV


def _management_capabilities(registration: Registration) -> dict[str, Capability]:
    """Diagnostic sensors of the registration itself (not of any object)."""
    capabilities = [
        Capability(
            CapabilityKind.SENSOR,
            KEY_LIFETIME,
            name="Registration lifetime",
            device_class="duration",
            unit="s",
            category="diagnostic",
        ),
        Capability(
            CapabilityKind.SENSOR,
            KEY_LAST_SEEN,
            name="Last seen",
            device_class="timestamp",
            category="diagnostic",
            enabled_by_default=False,
            kept_when_offline=True,
        ),
    ]
    if registration.queue_mode:
        capabilities.append(
            Capability(
                CapabilityKind.SENSOR,
                KEY_QUEUED,
                name="Requests waiting for wake-up",
                category="diagnostic",
            )
        )
    return {capability.key: capability for capability in capabilities}


def _write_code(operation: Operation) -> aiocoap.numbers.codes.Code:
    # A single resource is replaced (PUT); several resources of an instance are a partial
    # update (POST), so the others keep their values.
    return aiocoap.PUT if operation.path.resource_id is not None else aiocoap.POST


def _write_format(endpoint: Endpoint, operation: Operation) -> int:
    if operation.path.resource_id is not None:
        return ContentFormat.TEXT if endpoint.accept is None else endpoint.accept
    return endpoint.accept or ContentFormat.TLV


def _encode_write(endpoint: Endpoint, operation: Operation, mapper: Mapper) -> bytes:
    return encode(
        _write_format(endpoint, operation), operation.values, operation.path, mapper.registry
    )


def _preferred_format(registration: Registration) -> int | None:
    offered = set(registration.objects.content_formats)
    for content_format in _PREFERRED_FORMATS:
        if content_format in offered:
            return int(content_format)
    # A client that lists none answers in its own format, which the answer's Content-Format
    # names. (A 1.0 client must speak TLV, but some only speak text/plain and silently drop
    # a request whose Accept they do not know, e.g. lwm2m-node-lib's client.)
    return None


def _without_retries(command: Command) -> Command:
    return replace(command, retries=0)


def _endpoint_diagnostics(endpoint: Endpoint, now: float) -> dict[str, Any]:
    registration = endpoint.registration
    info: dict[str, Any] = {
        "admission": endpoint.admission.value,
        "registered": registration is not None,
        "observing": sorted(str(path) for path in endpoint.observations),
        "format": endpoint.accept,
        "queued_requests": endpoint.queued,
        "lapsed_at": endpoint.lapsed_at,
    }
    if registration is not None:
        info |= {
            "lifetime": registration.lifetime,
            "binding": registration.binding,
            "queue_mode": registration.queue_mode,
            "version": registration.version,
            "objects": [str(path) for path in registration.objects.instance_paths()],
            "expires_in": round(registration.expires_at - now, 1),
        }
    return info
