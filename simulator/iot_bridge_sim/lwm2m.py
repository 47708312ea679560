"""LwM2M client transport for a DeviceModel: registers with an LwM2M server and serves it.

One aiocoap context per client, bound to an ephemeral port: the Register request leaves from
it, so the server's requests come back to it, as with Zephyr's, Wakaama's or Anjay's clients.
The objects come from lwm2m_objects.ObjectTree; every payload goes through IoT Bridge's own
LwM2M codecs (custom_components.iot_bridge.core.lwm2m, which imports nothing of Home
Assistant).

Served: Read (object, instance, resource; the format the Accept option names, TLV without
one), Write (PUT replace, POST partial update), Execute with arguments, Discover,
Write-Attributes (pmin, pmax, gt, lt, st), Observe with notifications on change and at pmax
(CON or NON), cancel by GET Observe:1 or RST, Create and Delete. Sent: Register, Update every
0.8 x lifetime and when the object list changes, De-register on stop.

Failure modes (Lwm2mBehaviour, changeable while running): refuse Execute/Write with a code
and diagnostic payload, jam (2.04, status unchanged and re-reported), late status, silent
(acts, never answers), drop the first N deliveries of a request, late answers; and on the
client: offline (socket kept, nothing answered), rebind (a fresh socket: NAT rebinding),
queue mode (listens only briefly after it sends).

`Lwm2mClient` runs on the caller's event loop; `Lwm2mDeviceSimulator` runs one on its own
thread with a blocking API, like MqttDeviceSimulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import socket
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

import aiocoap
import aiocoap.error
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from aiocoap.transports.udp6 import UDP6EndpointAddress

from custom_components.iot_bridge.core.coap_timers import shutdown, track_timers
from custom_components.iot_bridge.core.lwm2m import (
    CodecError,
    ContentFormat,
    LwM2MPath,
    PathError,
    Value,
    decode,
    encode,
)
from custom_components.iot_bridge.core.lwm2m.senml import decode_path_list

from .behaviour import Behaviour
from .devices import DeviceModel
from .lwm2m_objects import (
    VENDOR_OBJECT,
    Command,
    Effect,
    Lwm2mError,
    ObjectTree,
    not_found,
    parse_arguments,
)

type Printer = Callable[[str], None]
type Step = tuple[LwM2MPath, Callable[[], Effect]]  # a Write/Execute target and its effect
type LwM2MVersion = Literal["1.0", "1.1"]

DEFAULT_SERVER: Final = "coap://127.0.0.1:5683"
FORMATS: Final[dict[str, tuple[int, ...]]] = {
    "1.0": (ContentFormat.TEXT, ContentFormat.OPAQUE, ContentFormat.TLV, ContentFormat.LWM2M_JSON),
    "1.1": tuple(f for f in ContentFormat if f is not ContentFormat.LINK_FORMAT),
}
FORMAT_NAMES: Final = {
    "text": ContentFormat.TEXT,
    "cbor": ContentFormat.CBOR,
    "senml-json": ContentFormat.SENML_JSON,
    "senml-cbor": ContentFormat.SENML_CBOR,
    "tlv": ContentFormat.TLV,
    "lwm2m-json": ContentFormat.LWM2M_JSON,
}
ATTRIBUTES: Final[dict[str, type]] = {
    "pmin": int,
    "pmax": int,
    "epmin": int,
    "epmax": int,
    "gt": float,
    "lt": float,
    "st": float,
}
UPDATE_FRACTION: Final = 0.8  # Update at 80 % of the lifetime, as real clients do
MAX_BACKOFF: Final = 30.0
LOG_LIMIT: Final = 10_000  # entries kept in received, executed, notifications, registrations
_MEMORY: Final = 256  # request deliveries remembered for drop_first and retransmissions
# A response the message layer never sends: ends an observation without telling the server
# (no_response=26 suppresses 2.xx, 4.xx and 5.xx; RFC 7967).
_NO_RESPONSE_ALL: Final = 26
# Decodes in no LwM2M format: a TLV header promising 16 bytes that do not follow, CBOR with
# trailing bytes, text that is not UTF-8.
CORRUPT_PAYLOAD: Final = b"\xc8\x00\x10\xff"


def print_line(line: str) -> None:
    print(line, flush=True)


@dataclass
class Lwm2mBehaviour(Behaviour):
    """Behaviour plus what only LwM2M has (refuse/jam/silent/drop_first/answer_delay as there).

    answer_delay delays the CoAP answer to Execute/Write (an empty ACK comes first);
    drop_first ignores the first N transmissions of each request (the server retransmits);
    silent acts on requests and never answers, not even with an empty ACK; jam answers
    2.04 and re-reports the unchanged status; report_state has no meaning here (observers
    always hear of a change).
    """

    refuse_code: str = "5.00"  # the code refused Execute/Write answer with, e.g. "4.05"
    status_delay: float = 0.0  # answer 2.04 at once, change the state this much later
    notify_confirmable: bool = True  # notifications as CON (else NON)
    # The next N Read answers and notifications carry CORRUPT_PAYLOAD under their usual
    # content format (a server must drop them and keep going).
    corrupt_payloads: int = 0


@dataclass(frozen=True, slots=True)
class Lwm2mOptions:
    """How the client registers and talks."""

    server: str = DEFAULT_SERVER
    endpoint: str | None = None  # default: the model's device id
    lifetime: int = 60
    version: LwM2MVersion = "1.1"
    queue_mode: bool = False
    queue_window: float = 2.0  # seconds it listens after each message it sends (queue mode)
    wake_interval: float | None = None  # queue mode: Update this often (default 0.8 lifetime)
    read_format: int = ContentFormat.TLV  # answer format when a Read has no Accept option
    formats: tuple[int, ...] | None = None  # formats it reads and writes (default: version's)
    bind_host: str = "127.0.0.1"
    vendor_object: bool = False  # add /31024/0, an object no registry defines
    request_timeout: float = 5.0  # Register/Update without an answer after this fail
    reboot_delay: float = 0.3  # 3/0/4: answer, then reboot (new socket, new registration)


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One request datagram, as the client saw it (retransmissions included)."""

    method: str
    path: str
    query: tuple[str, ...]
    payload: bytes
    content_format: int | None
    accept: int | None
    observe: int | None
    confirmable: bool
    message_id: int
    token: bytes
    received_at: float  # time.time()
    # "served", "retransmission", "dropped" (drop_first), "silent", "asleep" or "offline"
    handling: str


@dataclass(frozen=True, slots=True)
class Executed:
    """An Execute or Write the device carried out (its state changed or its action ran)."""

    operation: str  # "execute" or "write"
    path: str
    detail: str  # the command or the stored value
    executed_at: float


@dataclass(frozen=True, slots=True)
class SentNotification:
    path: str
    sequence: int
    confirmable: bool
    values: dict[str, Value]
    sent_at: float


@dataclass(frozen=True, slots=True)
class RegistrationEvent:
    """A Register, Update or De-register the client sent, and the server's answer."""

    operation: str
    code: str | None  # None: no answer in time
    port: int
    query: tuple[str, ...]
    payload: bytes
    sent_at: float


class _Observation:
    """One observation a server holds on a path; its task sends the notifications."""

    def __init__(self, path: LwM2MPath, request: aiocoap.Message, content_format: int) -> None:
        self.path = path
        self.remote = request.remote
        self.token: bytes = request.token
        self.content_format = content_format
        self.sequence = 0
        self.values: dict[LwM2MPath, Value] = {}
        self.sent_at = 0.0  # loop time of the last notification (or the first answer)
        self.wake = asyncio.Event()
        self.force = False  # notify even without a change (a jammed lock re-reports)
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.wake.set()


class _Site:
    """aiocoap's server site for one context: every request goes to the client."""

    def __init__(self, client: Lwm2mClient) -> None:
        self.client = client
        self.context: aiocoap.Context | None = None

    async def render_to_pipe(self, pipe: Any) -> None:
        await self.client._serve(self, pipe)


class Lwm2mClient:
    """A simulated LwM2M client on the running event loop: start(), then stop()."""

    def __init__(
        self,
        model: DeviceModel,
        options: Lwm2mOptions | None = None,
        behaviour: Lwm2mBehaviour | None = None,
        printer: Printer | None = None,
    ) -> None:
        self.model = model
        self.options = options or Lwm2mOptions()
        self.behaviour = behaviour or Lwm2mBehaviour()
        self.endpoint = self.options.endpoint or model.device_id
        self.formats = self.options.formats or FORMATS[self.options.version]
        if self.options.read_format not in self.formats:
            raise ValueError(
                f"read format {self.options.read_format} is not one this client speaks "
                f"({', '.join(map(str, self.formats))})"
            )
        self.lifetime = self.options.lifetime
        self.default_pmin = 0  # resources 1/0/2 and 1/0/3, writable by the server
        self.default_pmax = 0
        self.tree = ObjectTree(model, self, vendor_object=self.options.vendor_object)
        self.attributes: dict[LwM2MPath, dict[str, int | float]] = {}
        self.registration_id: str | None = None
        self.port = 0
        self.received: list[ReceivedRequest] = []
        self.executed: list[Executed] = []
        self.notifications: list[SentNotification] = []
        self.registrations: list[RegistrationEvent] = []
        self._print = printer or print_line
        self._server = _server_address(self.options.server)
        self._context: aiocoap.Context | None = None
        self._cancel_timers: Callable[[], None] = lambda: None
        self._location: tuple[str, ...] = ()
        self._announced: tuple[str, int, str] | None = None  # links, lifetime, binding
        self._observations: set[_Observation] = set()
        self._serving: dict[asyncio.Task[Any], aiocoap.Context | None] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._session_task: asyncio.Task[None] | None = None
        self._deliveries: OrderedDict[tuple[str, int], int] = OrderedDict()
        self._silenced: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._offline = False
        self._closing = False
        self._awake_until = 0.0
        self._fresh_primitives()

    def _fresh_primitives(self) -> None:
        """Events and lock bind to the loop that first uses them: new ones per start()."""
        self._kick = asyncio.Event()  # send a Register/Update now
        self._online = asyncio.Event()
        self._online.set()
        self._registered = asyncio.Event()
        self._lock = asyncio.Lock()  # one registration request at a time, no socket swap meanwhile

    # -- public API -----------------------------------------------------------------------

    @property
    def device_id(self) -> str:
        return self.model.device_id

    @property
    def running(self) -> bool:
        return self._context is not None

    @property
    def offline(self) -> bool:
        return self._offline

    @property
    def binding(self) -> str:
        """Binding as sent in `b=`: LwM2M 1.0 says queue mode there ("UQ"), 1.1 with Q."""
        return "UQ" if self.options.queue_mode and self.options.version == "1.0" else "U"

    @property
    def observations(self) -> list[str]:
        """Paths currently observed."""
        return sorted(str(o.path) for o in self._observations if not o.cancelled)

    async def start(self, *, wait: bool = True, timeout: float = 5.0) -> None:
        """Open the socket and register; with `wait`, return once registered (or raise
        ConnectionError after `timeout`). Without it, the client keeps trying."""
        if self._context is not None:
            return
        self._fresh_primitives()
        self._offline = self._closing = False
        await self._open()
        self._session_task = asyncio.create_task(self._session(), name=f"lwm2m-{self.endpoint}")
        if not wait:
            return
        try:
            await asyncio.wait_for(self._registered.wait(), timeout)
        except TimeoutError:
            await self.stop(deregister=False)
            raise ConnectionError(
                f"{self.endpoint}: no registration with {self.options.server} in {timeout} s"
            ) from None

    async def stop(self, *, deregister: bool = True) -> None:
        """De-register (unless offline), close the socket, end every task and timer."""
        if self._context is None:
            return
        self._closing = True
        tasks = [t for t in (self._session_task, *self._tasks) if t is not None]
        self._session_task = None
        await _cancel(tasks)
        if deregister and self.registration_id is not None and not self._offline:
            await self._deregister()
        await self._close(self._context, self._cancel_timers)
        self._context = None
        self.registration_id = None
        self._print(f"{self.endpoint} stopped")

    def publish_state(self, values: dict[str, Any]) -> None:
        """A change on the device itself (a door pushed shut): observers are notified."""
        self.model.state |= values
        self._state_changed()

    async def send(
        self,
        paths: Iterable[str],
        *,
        content_format: int = ContentFormat.SENML_JSON,
        payload: bytes | None = None,
    ) -> str | None:
        """LwM2M 1.1 Send (`POST /dp`): the current values of `paths` in SenML, unasked.

        `payload` replaces the encoded values (to send something malformed). Returns the
        server's answer code ("2.04"), None without an answer.
        """
        if self.options.version == "1.0":
            raise RuntimeError("Send is an LwM2M 1.1 operation; this client speaks 1.0")
        if payload is None:
            values: dict[LwM2MPath, Value] = {}
            for path in paths:
                values |= self.tree.read(LwM2MPath.parse(path))
            payload = encode(content_format, values, LwM2MPath())
        answer = await self._send("send", aiocoap.POST, ("dp",), [], payload, content_format)
        return None if answer is None else answer.code.dotted

    def trigger_update(self) -> None:
        """Send an Update now (1/0/8 Registration Update Trigger does the same)."""
        self._kick.set()

    def reboot(self) -> None:
        """3/0/4: answer first, then come back on a new socket with a new registration."""
        self._spawn(self._reboot())

    def go_offline(self) -> None:
        """Stop answering and sending (the socket stays open, as behind a dead link)."""
        self._offline = True
        self._online.clear()
        self._print(f"{self.endpoint} offline (socket kept, nothing answered)")

    def go_online(self) -> None:
        """Back: an Update at once, then everything as before."""
        self._offline = False
        self._online.set()
        self._print(f"{self.endpoint} online again")
        self.trigger_update()

    async def rebind(self, *, register: bool = False) -> None:
        """A fresh socket on a new port (NAT rebinding): Update from it, or with `register`
        a full Register. Observations on the old socket end with it."""
        if self._context is None:
            raise RuntimeError(f"{self.endpoint} is not running")
        async with self._lock:
            old = (self._context, self._cancel_timers)
            await self._open()
            if old[0] is not None:
                await self._close(*old)
        self._print(f"{self.endpoint} rebound to port {self.port}")
        if register or self.registration_id is None:
            self.registration_id = None
            await self._register()
        elif await self._update() == "gone":
            await self._register()
        self._kick.set()  # the session's Update timer starts over

    async def wait_registered(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self._registered.wait(), timeout)

    # -- socket ---------------------------------------------------------------------------

    async def _open(self) -> None:
        site = _Site(self)
        context = await aiocoap.Context.create_server_context(
            site, bind=(_ipv6(self.options.bind_host), 0), transports=["udp6"]
        )
        site.context = context
        self._cancel_timers = track_timers(context)
        for manager in _message_managers(context):
            self._install_gate(manager)
        self._context = context
        self.port = _local_port(context)
        # Addressed directly: aiocoap's own resolution probes routes with a connect() per
        # request (and runs getaddrinfo in an executor thread).
        self._server_remote = UDP6EndpointAddress(self._server, _interfaces(context)[0])

    async def _close(
        self, context: aiocoap.Context | None, cancel_timers: Callable[[], None]
    ) -> None:
        if context is None:
            return
        for observation in list(self._observations):
            if observation.remote.interface in _interfaces(context):
                observation.cancel()
        await shutdown(context, cancel_timers)
        await _cancel([task for task, owner in self._serving.items() if owner is context])

    def _install_gate(self, manager: Any) -> None:
        deliver = manager.dispatch_message

        def gate(message: aiocoap.Message) -> None:
            if self._admit(message):
                deliver(message)

        manager.dispatch_message = gate

    def _admit(self, message: aiocoap.Message) -> bool:
        """Decide what reaches aiocoap: the failure modes act below the message layer, so
        a silent or sleeping device sends nothing at all, not even an empty ACK."""
        is_request = message.code.is_request()
        if self._offline:
            return self._record(message, "offline") if is_request else False
        if not self._awake():
            return self._record(message, "asleep") if is_request else False
        if not is_request:
            return True
        key = (str(message.remote.hostinfo), message.mid)
        deliveries = self._deliveries.pop(key, 0) + 1
        self._deliveries[key] = deliveries
        _trim(self._deliveries)
        if deliveries <= self.behaviour.drop_first:
            return self._record(message, "dropped")
        if key in self._silenced:
            return self._record(message, "retransmission")
        if self.behaviour.silent:
            self._silenced[key] = None
            _trim(self._silenced)
            self._record(message, "silent")
            self._spawn(self._answer(message))  # acts on it; the answer goes nowhere
            return False
        first = deliveries == self.behaviour.drop_first + 1
        self._record(message, "served" if first else "retransmission")
        return True  # aiocoap answers retransmissions from its cache

    def _record(self, message: aiocoap.Message, handling: str) -> bool:
        _log(
            self.received,
            ReceivedRequest(
                method=message.code.name,
                path="/" + "/".join(message.opt.uri_path),
                query=tuple(message.opt.uri_query),
                payload=bytes(message.payload),
                content_format=_int_or_none(message.opt.content_format),
                accept=_int_or_none(message.opt.accept),
                observe=message.opt.observe,
                confirmable=message.mtype == Type.CON,
                message_id=message.mid,
                token=bytes(message.token),
                received_at=time.time(),
                handling=handling,
            ),
        )
        if handling not in ("served", "retransmission"):
            self._print(f"{self.endpoint} <- {_describe(message)} ({handling}, no answer)")
        return False

    def _awake(self) -> bool:
        if not self.options.queue_mode:
            return True
        return asyncio.get_running_loop().time() < self._awake_until

    def _listen(self) -> None:
        """Queue mode: a message the client sends opens a short listening window."""
        if self.options.queue_mode:
            loop_time = asyncio.get_running_loop().time()
            self._awake_until = max(self._awake_until, loop_time + self.options.queue_window)

    # -- registration interface (client -> server) ------------------------------------------

    async def _session(self) -> None:
        """Register, then Update every 0.8 x lifetime (and when kicked); re-register when
        the server forgets us or stops answering."""
        backoff, delay = 1.0, 0.0
        while True:
            await self._pause(delay)
            if self._offline:
                delay = self._update_interval()
                continue
            if self.registration_id is None:
                ok = await self._register()
            else:
                result = await self._update()
                if result == "gone":
                    backoff, delay = 1.0, 0.0
                    continue
                ok = result == "ok"
            if ok:
                backoff, delay = 1.0, self._update_interval()
            else:
                delay, backoff = backoff, min(backoff * 2, MAX_BACKOFF)

    async def _pause(self, delay: float) -> None:
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), delay)
        self._kick.clear()

    def _update_interval(self) -> float:
        interval = self.lifetime * UPDATE_FRACTION
        if self.options.queue_mode:
            interval = min(interval, self.options.wake_interval or interval)
        return max(interval, 0.1)

    def _links(self) -> str:
        """The object list as Register and Update carry it."""
        root = '</>;rt="oma.lwm2m"'
        if self.options.version == "1.1":
            root += f";ct={self.options.read_format}"
        links = [root]
        for object_id in self.tree.object_ids():
            if object_id == 1 and self.options.version == "1.1":
                links.append("</1>;ver=1.1")
            links += [f"<{path}>" for path in self.tree.instance_paths(object_id)]
        return ",".join(links)

    async def _register(self) -> bool:
        async with self._lock:
            query = [
                f"ep={self.endpoint}",
                f"lt={self.lifetime}",
                f"lwm2m={self.options.version}",
                f"b={self.binding}",
            ]
            if self.options.queue_mode and self.options.version == "1.1":
                query.append("Q")
            links = self._links()
            answer = await self._send(
                "register", aiocoap.POST, ("rd",), query, links.encode(), _LINK_FORMAT
            )
            if answer is None or answer.code != aiocoap.CREATED:
                return False
            self._location = tuple(answer.opt.location_path) or ("rd",)
            self.registration_id = self._location[-1]
            self._announced = (links, self.lifetime, self.binding)
            self._registered.set()
            queue = ", queue mode" if self.options.queue_mode else ""
            self._print(
                f"{self.endpoint} registered as /{'/'.join(self._location)} from port "
                f"{self.port} (lifetime {self.lifetime} s{queue})"
            )
            return True

    async def _update(self) -> Literal["ok", "gone", "failed"]:
        """Update: "gone" when the server no longer knows the registration."""
        async with self._lock:
            if self.registration_id is None or self._announced is None:
                return "gone"
            links, lifetime, binding = self._announced
            query = [f"lt={self.lifetime}"] if self.lifetime != lifetime else []
            if self.binding != binding:
                query.append(f"b={self.binding}")
            new_links = self._links()
            payload = new_links.encode() if new_links != links else b""
            answer = await self._send(
                "update",
                aiocoap.POST,
                self._location,
                query,
                payload,
                _LINK_FORMAT if payload else None,
            )
            if answer is not None and answer.code == aiocoap.CHANGED:
                self._announced = (new_links, self.lifetime, self.binding)
                return "ok"
            if answer is not None and answer.code.class_ == 4:
                self._forget_registration("the server forgot the registration")
                return "gone"
            self._forget_registration("Update unanswered")
            return "failed"

    def _forget_registration(self, why: str) -> None:
        self._print(f"{self.endpoint} registration lost ({why}): registering again")
        self.registration_id = None
        self._registered.clear()

    async def _deregister(self) -> None:
        await self._send(
            "deregister",
            aiocoap.DELETE,
            self._location,
            [],
            b"",
            None,
            timeout=min(2.0, self.options.request_timeout),
        )

    async def _send(
        self,
        operation: str,
        code: Code,
        path: Iterable[str],
        query: list[str],
        payload: bytes,
        content_format: int | None,
        *,
        timeout: float | None = None,
    ) -> aiocoap.Message | None:
        context = self._context
        assert context is not None
        message = aiocoap.Message(code=code, payload=payload)
        message.remote = self._server_remote
        message.opt.uri_path = tuple(path)
        message.opt.uri_query = tuple(query)
        if content_format is not None:
            message.opt.content_format = content_format
        self._listen()
        request = context.request(message, handle_blockwise=False)
        answer: aiocoap.Message | None = None
        failure = "no answer"
        try:
            answer = await asyncio.wait_for(
                request.response, timeout or self.options.request_timeout
            )
        except TimeoutError:
            request.response.cancel()
        except aiocoap.error.Error as err:  # e.g. ICMP port unreachable: nobody listens
            failure = str(err) or type(err).__name__
        self._listen()
        dotted = None if answer is None else answer.code.dotted
        _log(
            self.registrations,
            RegistrationEvent(operation, dotted, self.port, tuple(query), payload, time.time()),
        )
        if answer is None or not answer.code.is_successful():
            self._print(f"{self.endpoint} {operation} -> {dotted or failure}")
        return answer

    async def _reboot(self) -> None:
        await asyncio.sleep(self.options.reboot_delay)
        self._print(f"{self.endpoint} rebooting")
        async with self._lock:
            old = (self._context, self._cancel_timers)
            self.registration_id = None
            self._registered.clear()
            await self._open()
            await self._close(*old)
        self.trigger_update()

    # -- device management interface (server -> client) -------------------------------------

    async def _serve(self, site: _Site, pipe: Any) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._serving[task] = site.context
        try:
            request = pipe.request
            if request.code == aiocoap.GET and request.opt.observe == 0:
                await self._observe(pipe, request)
            else:
                pipe.add_response(await self._answer(request), is_last=True)
        finally:
            self._serving.pop(task, None)

    async def _answer(self, request: aiocoap.Message) -> aiocoap.Message:
        try:
            path = request_path(request)
            answer = await self._dispatch(request, path)
        except Lwm2mError as err:
            answer = error_answer(err.code, str(err))
        except CodecError as err:
            answer = error_answer("4.00", str(err))
        self._print(f"{self.endpoint} <- {_describe(request)} -> {_describe_answer(answer)}")
        return answer

    async def _dispatch(self, request: aiocoap.Message, path: LwM2MPath) -> aiocoap.Message:
        code = request.code
        if code == aiocoap.GET:
            if request.opt.observe == 1:
                self._cancel_observations(path, request)
            if request.opt.accept == _LINK_FORMAT:
                return self._discover(path)
            return self._read(path, _int_or_none(request.opt.accept))
        if code == aiocoap.PUT:
            if request.opt.uri_query and not request.payload:
                return self._write_attributes(path, request.opt.uri_query)
            return await self._write(request, path, replace=True)
        if code == aiocoap.POST:
            if path.depth == 1:
                return self._create(request, path)
            if path.depth == 2:
                return await self._write(request, path, replace=False)
            if path.depth == 3:
                return await self._execute(request, path)
        if code == aiocoap.FETCH and path.depth == 0:
            return self._read_composite(request)
        if code == aiocoap.DELETE and path.depth == 2:
            self.tree.delete(path)
            self._objects_changed()
            return aiocoap.Message(code=aiocoap.DELETED)
        raise Lwm2mError("4.05", f"{code.name} is not allowed on {path}")

    def _answer_format(self, accept: int | None, path: LwM2MPath) -> int:
        if accept is None:
            chosen = self.options.read_format
            single = chosen in (ContentFormat.TEXT, ContentFormat.CBOR, ContentFormat.OPAQUE)
            return ContentFormat.TLV if single and path.depth < 3 else chosen
        if accept not in self.formats:
            offered = ", ".join(str(f) for f in self.formats)
            raise Lwm2mError("4.06", f"content format {accept} not supported (offers {offered})")
        return accept

    def _encode(self, path: LwM2MPath, accept: int | None) -> tuple[bytes, int]:
        values = self.tree.read(path)
        content_format = self._answer_format(accept, path)
        try:
            return encode(content_format, values, path), content_format
        except CodecError as err:
            raise Lwm2mError("4.06", str(err)) from err

    def _corrupt(self, payload: bytes) -> bytes:
        if self.behaviour.corrupt_payloads <= 0:
            return payload
        self.behaviour.corrupt_payloads -= 1
        return CORRUPT_PAYLOAD

    def _read(self, path: LwM2MPath, accept: int | None) -> aiocoap.Message:
        payload, content_format = self._encode(path, accept)
        payload = self._corrupt(payload)
        return aiocoap.Message(code=aiocoap.CONTENT, payload=payload, content_format=content_format)

    def _read_composite(self, request: aiocoap.Message) -> aiocoap.Message:
        """LwM2M 1.1 Read-Composite: FETCH / with a SenML pack of paths, answered in SenML."""
        content_format = self._payload_format(request)
        if content_format not in (ContentFormat.SENML_JSON, ContentFormat.SENML_CBOR):
            raise Lwm2mError("4.15", "Read-Composite takes SenML JSON or CBOR")
        paths = decode_path_list(request.payload, cbor=content_format == ContentFormat.SENML_CBOR)
        values: dict[LwM2MPath, Value] = {}
        for path in paths:
            values |= self.tree.read(path)
        accept = _int_or_none(request.opt.accept) or content_format
        if accept not in (ContentFormat.SENML_JSON, ContentFormat.SENML_CBOR):
            raise Lwm2mError("4.06", "Read-Composite answers in SenML JSON or CBOR")
        payload = encode(accept, values, LwM2MPath())
        return aiocoap.Message(code=aiocoap.CONTENT, payload=payload, content_format=accept)

    def _discover(self, path: LwM2MPath) -> aiocoap.Message:
        if path.depth == 0 or path.depth > 3 or not self.tree.exists(path):
            raise not_found(path)
        links = []
        for link in self.tree.links(path):
            text = f"<{link}>"
            if link.depth == 1 and link.ids[0] == 1 and self.options.version == "1.1":
                text += ";ver=1.1"
            if link.depth == 3 and (dim := self.tree.dimension(link)) is not None:
                text += f";dim={dim}"
            for name, value in self.attributes.get(link, {}).items():
                text += f";{name}={value:g}" if isinstance(value, float) else f";{name}={value}"
            links.append(text)
        payload = ",".join(links).encode()
        return aiocoap.Message(code=aiocoap.CONTENT, payload=payload, content_format=_LINK_FORMAT)

    def _write_attributes(self, path: LwM2MPath, query: Iterable[str]) -> aiocoap.Message:
        if path.depth == 0 or not self.tree.exists(path):
            raise not_found(path)
        attributes = apply_attributes(self.attributes.get(path, {}), query)
        if attributes:
            self.attributes[path] = attributes
        else:
            self.attributes.pop(path, None)
        for observation in self._observations:
            observation.wake.set()  # new periods apply from now
        return aiocoap.Message(code=aiocoap.CHANGED)

    async def _write(
        self, request: aiocoap.Message, path: LwM2MPath, *, replace: bool
    ) -> aiocoap.Message:
        if path.depth < 2:
            raise Lwm2mError("4.05", f"Write on {path}: name an instance or a resource")
        if not self.tree.exists(path):
            raise not_found(path)
        values = decode(self._payload_format(request), request.payload, path)
        if not values:
            raise Lwm2mError("4.00", f"Write on {path} carries no value")
        steps: list[Step] = []
        for value_path, value in values.items():
            if not value_path.startswith(path) or value_path.depth != 3:
                raise Lwm2mError("4.00", f"{value_path} is not a resource of {path}")
            writer = self.tree.resource(value_path).write
            if writer is None:
                raise Lwm2mError("4.05", f"{value_path} is not writable")
            steps.append((value_path, functools.partial(writer, value)))
        mode = "replace" if replace else "update"
        return await self._carry_out("write", steps, f"{mode} {_show(values)}")

    async def _execute(self, request: aiocoap.Message, path: LwM2MPath) -> aiocoap.Message:
        resource = self.tree.resource(path)
        if path.depth != 3 or resource.execute is None:
            raise Lwm2mError("4.05", f"{path} is not executable")
        if request.opt.content_format not in (None, ContentFormat.TEXT):
            raise Lwm2mError("4.15", "Execute arguments are text/plain")
        try:
            arguments = parse_arguments(request.payload)
        except UnicodeDecodeError:
            raise Lwm2mError("4.00", "Execute arguments are not UTF-8") from None
        step = (path, functools.partial(resource.execute, arguments))
        return await self._carry_out("execute", [step], request.payload.decode())

    def _create(self, request: aiocoap.Message, path: LwM2MPath) -> aiocoap.Message:
        if path.ids[0] != VENDOR_OBJECT:
            raise Lwm2mError("4.05", f"instances of {path} cannot be created")
        content_format = self._payload_format(request)
        base = path
        if content_format == ContentFormat.TLV and request.payload[:1] >= b"\xc0":
            # Resources without an instance wrapper: the client picks the instance id.
            base = path.child(self.tree.free_instance_id(path.ids[0]))
        values = decode(content_format, request.payload, base) if request.payload else {}
        instance_ids = {p.ids[1] for p in values if p.depth >= 2}
        if len(instance_ids) > 1:
            raise Lwm2mError("4.00", "Create names more than one instance")
        instance_id = (
            instance_ids.pop() if instance_ids else self.tree.free_instance_id(VENDOR_OBJECT)
        )
        instance = path.child(instance_id)
        self.tree.create(instance, values)
        self._objects_changed()
        return aiocoap.Message(
            code=aiocoap.CREATED, location_path=(str(path.ids[0]), str(instance_id))
        )

    def _payload_format(self, request: aiocoap.Message) -> int:
        content_format = _int_or_none(request.opt.content_format)
        if content_format is None or content_format not in self.formats:
            raise Lwm2mError("4.15", f"content format {content_format} not supported")
        return content_format

    async def _carry_out(self, operation: str, steps: list[Step], detail: str) -> aiocoap.Message:
        """Carry out Write/Execute steps under the failure modes; the answer to send.

        Every step is checked before the first one acts (a bad value refuses the whole
        Write); each effect is worked out right before it acts, so a dimmer written after
        on/off sees the light already on.
        """
        for _, check in steps:
            check()
        behaviour = self.behaviour
        if behaviour.refuse is not None:
            return error_answer(behaviour.refuse_code, behaviour.refuse)
        for path, step in steps:
            effect = step()
            if not isinstance(effect, Command):
                effect()
                self._done(operation, path, detail)
            elif effect.capability in behaviour.jam:
                self._print(f"{self.endpoint} -- {effect.capability} jammed, state unchanged")
                self._force_notify(effect.capability)
            elif behaviour.status_delay > 0:
                self._spawn(self._perform_later(behaviour.status_delay, operation, path, effect))
            elif (reason := self._perform(operation, path, effect)) is not None:
                return error_answer("4.00", reason)
        if behaviour.answer_delay > 0:
            await asyncio.sleep(behaviour.answer_delay)
        return aiocoap.Message(code=aiocoap.CHANGED)

    def _perform(self, operation: str, path: LwM2MPath, command: Command) -> str | None:
        answer = self.model.perform(command.capability, command.action, command.params)
        if not answer.ok:
            return answer.reason or "failed"
        self._done(operation, path, command.describe())
        return None

    async def _perform_later(
        self, delay: float, operation: str, path: LwM2MPath, command: Command
    ) -> None:
        await asyncio.sleep(delay)
        if (reason := self._perform(operation, path, command)) is not None:
            self._print(f"{self.endpoint} -- late {command.describe()} failed: {reason}")

    def _done(self, operation: str, path: LwM2MPath, detail: str) -> None:
        _log(self.executed, Executed(operation, str(path), detail, time.time()))
        self._state_changed()

    def _objects_changed(self) -> None:
        self._state_changed()
        self.trigger_update()  # the object list changed: the server hears it in an Update

    # -- observe --------------------------------------------------------------------------

    async def _observe(self, pipe: Any, request: aiocoap.Message) -> None:
        try:
            path = request_path(request)
            if path.depth == 0:
                raise not_found(path)
            payload, content_format = self._encode(path, _int_or_none(request.opt.accept))
        except Lwm2mError as err:
            answer = error_answer(err.code, str(err))
            self._print(f"{self.endpoint} <- {_describe(request)} -> {_describe_answer(answer)}")
            pipe.add_response(answer, is_last=True)
            return
        for old in self._observations:
            if old.path == path and old.remote == request.remote:
                old.cancel()  # a new observation of the same path replaces the old one
        observation = _Observation(path, request, content_format)
        observation.values = self.tree.read(path)
        observation.sent_at = asyncio.get_running_loop().time()
        self._observations.add(observation)
        self._print(f"{self.endpoint} <- {_describe(request)} -> 2.05 (observing)")
        first = aiocoap.Message(
            code=aiocoap.CONTENT, payload=payload, content_format=content_format, observe=0
        )
        pipe.add_response(first, is_last=False)
        try:
            await self._notify_until_cancelled(pipe, observation)
        except asyncio.CancelledError:
            if not self._closing and not observation.cancelled:
                self._print(f"{self.endpoint} -- observation of {path} ended by the server (RST)")
            raise
        finally:
            self._observations.discard(observation)

    async def _notify_until_cancelled(self, pipe: Any, observation: _Observation) -> None:
        while await self._next_notification(observation):
            try:
                values = self.tree.read(observation.path)
                payload = encode(observation.content_format, values, observation.path)
            except (Lwm2mError, CodecError) as err:  # the instance was deleted meanwhile
                pipe.add_response(error_answer("4.04", str(err)), is_last=True)
                return
            observation.sequence += 1
            confirmable = self.behaviour.notify_confirmable
            message = aiocoap.Message(
                code=aiocoap.CONTENT,
                payload=self._corrupt(payload),
                content_format=observation.content_format,
                observe=observation.sequence,
                transport_tuning=aiocoap.Reliable() if confirmable else aiocoap.Unreliable(),
            )
            observation.values, observation.force = values, False
            observation.sent_at = asyncio.get_running_loop().time()
            self._listen()
            pipe.add_response(message, is_last=False)
            _log(
                self.notifications,
                SentNotification(
                    str(observation.path),
                    observation.sequence,
                    confirmable,
                    {str(p): v for p, v in values.items()},
                    time.time(),
                ),
            )
        # Cancelled by GET Observe:1: end the exchange without sending anything.
        pipe.add_response(
            aiocoap.Message(code=aiocoap.CONTENT, no_response=_NO_RESPONSE_ALL), is_last=True
        )

    async def _next_notification(self, observation: _Observation) -> bool:
        """Wait until a notification is due (change past pmin, or pmax); False if cancelled."""
        loop = asyncio.get_running_loop()
        while not observation.cancelled:
            pmin, pmax = self._periods(observation.path)
            timeout = None
            if pmax > 0 and pmax >= pmin:
                timeout = max(0.0, observation.sent_at + pmax - loop.time())
            try:
                await asyncio.wait_for(observation.wake.wait(), timeout)
            except TimeoutError:
                due = True  # pmax: notify even without a change
            else:
                observation.wake.clear()
                due = observation.force or self._worth_notifying(observation)
            if observation.cancelled or not due:
                continue
            if not self._online.is_set():
                await self._online.wait()
            wait = observation.sent_at + pmin - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            return not observation.cancelled
        return False

    def _periods(self, path: LwM2MPath) -> tuple[float, float]:
        attributes = self._effective_attributes(path)
        return (
            attributes.get("pmin", self.default_pmin),
            attributes.get("pmax", self.default_pmax),
        )

    def _effective_attributes(self, path: LwM2MPath) -> dict[str, int | float]:
        """Attributes of the path, inherited from its instance and object where unset."""
        effective: dict[str, int | float] = {}
        while path.depth > 0:
            for name, value in self.attributes.get(path, {}).items():
                effective.setdefault(name, value)
            path = path.parent
        return effective

    def _worth_notifying(self, observation: _Observation) -> bool:
        try:
            values = self.tree.read(observation.path)
        except Lwm2mError:
            return True  # gone: the loop sends the error and ends
        if values == observation.values:
            return False
        attributes = self._effective_attributes(observation.path)
        old = observation.values.get(observation.path)
        new = values.get(observation.path)
        if not (_is_number(old) and _is_number(new)):
            return True
        assert isinstance(old, int | float)
        assert isinstance(new, int | float)
        conditions = [attributes[name] for name in ("gt", "lt") if name in attributes]
        step = attributes.get("st")
        if not conditions and step is None:
            return True
        crossed = any((old > limit) != (new > limit) for limit in conditions)
        return crossed or (step is not None and abs(new - old) >= step)

    def _cancel_observations(self, path: LwM2MPath, request: aiocoap.Message) -> None:
        """GET Observe:1: the observation of this path by this server ends (matched by path
        as LwM2M 1.1 clients do, whatever the token)."""
        for observation in self._observations:
            if observation.path == path and observation.remote == request.remote:
                observation.cancel()
                self._print(f"{self.endpoint} -- observation of {path} cancelled")

    def _state_changed(self) -> None:
        for observation in self._observations:
            observation.wake.set()

    def _force_notify(self, capability: str) -> None:
        for instance in self.tree.capability_instances.get(capability, []):
            for observation in self._observations:
                if observation.path.startswith(instance) or instance.startswith(observation.path):
                    observation.force = True
                    observation.wake.set()

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class Lwm2mDeviceSimulator:
    """An Lwm2mClient on its own thread and event loop, with a blocking API (as the MQTT
    simulator has): the device shares nothing with the caller's loop."""

    def __init__(
        self,
        model: DeviceModel,
        options: Lwm2mOptions | None = None,
        behaviour: Lwm2mBehaviour | None = None,
        printer: Printer | None = None,
    ) -> None:
        self.client = Lwm2mClient(model, options, behaviour, printer)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def device_id(self) -> str:
        return self.client.device_id

    @property
    def model(self) -> DeviceModel:
        return self.client.model

    @property
    def behaviour(self) -> Lwm2mBehaviour:
        return self.client.behaviour

    @property
    def received(self) -> list[ReceivedRequest]:
        return list(self.client.received)

    @property
    def executed(self) -> list[Executed]:
        return list(self.client.executed)

    @property
    def notifications(self) -> list[SentNotification]:
        return list(self.client.notifications)

    @property
    def registrations(self) -> list[RegistrationEvent]:
        return list(self.client.registrations)

    def start(self, timeout: float = 5.0, *, wait: bool = True) -> None:
        if self._thread is not None:
            return
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=loop.run_forever, name=f"iot-bridge-sim-{self.client.endpoint}", daemon=True
        )
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self._call(self.client.start(wait=wait, timeout=timeout), timeout + 5)
        except BaseException:
            self._halt()
            raise

    def stop(self, *, deregister: bool = True) -> None:
        if self._thread is None:
            return
        try:
            self._call(self.client.stop(deregister=deregister))
        finally:
            self._halt()

    def publish_state(self, values: dict[str, Any]) -> None:
        self._run(self.client.publish_state, values)

    def go_offline(self) -> None:
        self._run(self.client.go_offline)

    def go_online(self) -> None:
        self._run(self.client.go_online)

    def send(
        self, paths: Iterable[str], *, content_format: int = ContentFormat.SENML_JSON
    ) -> str | None:
        result: str | None = self._call(self.client.send(paths, content_format=content_format))
        return result

    def trigger_update(self) -> None:
        self._run(self.client.trigger_update)

    def rebind(self, *, register: bool = False) -> None:
        self._call(self.client.rebind(register=register))

    def _run(self, function: Callable[..., None], *args: Any) -> None:
        async def call() -> None:
            function(*args)

        self._call(call())

    def _call(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 15.0) -> Any:
        if self._loop is None:
            coroutine.close()
            raise RuntimeError(f"{self.client.endpoint} is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def _halt(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


# -- helpers ------------------------------------------------------------------------------

_LINK_FORMAT: Final = ContentFormat.LINK_FORMAT.value


def _server_address(uri: str) -> tuple[str, int, int, int]:
    """The IPv6 socket address (IPv4 mapped) of a coap:// server URI."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme != "coap" or not parts.hostname:
        raise ValueError(f"LwM2M server must be coap://host[:port], got {uri!r}")
    port = parts.port or 5683
    try:
        host = str(ipaddress.ip_address(parts.hostname))
    except ValueError:  # a name: resolve it once
        host = str(socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_DGRAM)[0][4][0])
    return (_ipv6(host), port, 0, 0)


def _ipv6(host: str) -> str:
    """aiocoap binds IPv6 sockets: an IPv4 address becomes IPv4-mapped."""
    address = ipaddress.ip_address(host)
    return host if address.version == 6 else f"::ffff:{host}"


def _message_managers(context: aiocoap.Context) -> list[Any]:
    return [
        manager
        for interface in getattr(context, "request_interfaces", ())
        if (manager := getattr(interface, "token_interface", None)) is not None
        and hasattr(manager, "dispatch_message")
    ]


def _interfaces(context: aiocoap.Context) -> list[Any]:
    return [getattr(m, "message_interface", None) for m in _message_managers(context)]


def _local_port(context: aiocoap.Context) -> int:
    for interface in _interfaces(context):
        transport = getattr(interface, "transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None:
            return int(sock.getsockname()[1])
    raise RuntimeError("the aiocoap context has no UDP socket")


def request_path(request: aiocoap.Message) -> LwM2MPath:
    text = "/" + "/".join(request.opt.uri_path)
    try:
        return LwM2MPath.parse(text)
    except PathError:
        raise Lwm2mError("4.04", f"{text[:40]} is not an LwM2M path") from None


def apply_attributes(
    attributes: dict[str, int | float], query: Iterable[str]
) -> dict[str, int | float]:
    """Write-Attributes: the attributes after the query ("pmin=5" sets, "pmin" clears)."""
    result = dict(attributes)
    for item in query:
        name, separator, text = item.partition("=")
        kind = ATTRIBUTES.get(name)
        if kind is None:
            raise Lwm2mError("4.00", f"unknown attribute {name[:20]!r}")
        if not separator:
            result.pop(name, None)
            continue
        try:
            result[name] = kind(text)
        except ValueError:
            raise Lwm2mError("4.00", f"{name}={text[:20]!r} is not a number") from None
    return result


def error_answer(dotted: str, reason: str) -> aiocoap.Message:
    major, _, minor = dotted.partition(".")
    code = Code((int(major) << 5) | int(minor))
    return aiocoap.Message(code=code, payload=reason.encode("utf-8")[:200])


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _log[T](entries: list[T], entry: T) -> None:
    """Append to a record list, keeping the newest LOG_LIMIT (a simulator may run for days)."""
    entries.append(entry)
    if len(entries) > LOG_LIMIT:
        del entries[: len(entries) - LOG_LIMIT]


def _trim(memory: OrderedDict[Any, Any]) -> None:
    while len(memory) > _MEMORY:
        memory.popitem(last=False)


def _show(values: dict[LwM2MPath, Value]) -> str:
    return ", ".join(f"{path}={value!r}" for path, value in values.items())


def _describe(request: aiocoap.Message) -> str:
    text = f"{request.code.name} /{'/'.join(request.opt.uri_path)}"
    if request.opt.uri_query:
        text += "?" + "&".join(request.opt.uri_query)
    if request.opt.observe is not None:
        text += f" observe={request.opt.observe}"
    if request.opt.accept is not None:
        text += f" accept={int(request.opt.accept)}"
    if request.payload:
        text += f" {bytes(request.payload[:40])!r}"
    return text


def _describe_answer(answer: aiocoap.Message) -> str:
    text = f"{answer.code.dotted} {answer.code.name_printable}"
    if not answer.code.is_successful() and answer.payload:
        text += f": {answer.payload.decode('utf-8', 'replace')}"
    return text


async def _cancel(tasks: Iterable[asyncio.Task[Any]]) -> None:
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
