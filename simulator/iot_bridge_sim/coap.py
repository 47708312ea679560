"""CoAP transport for a DeviceModel: an aiocoap server following docs/protocols/coap.md.

Each simulated device is a CoAP server on its own UDP port, in a thread with its own event
loop (like a real device, it shares nothing with Home Assistant's loop). It describes itself
in /.well-known/core with OCF resource types, answers multicast discovery, lets every
stateful resource be observed, and carries out commands through the protocol-neutral
CommandProcessor (once per command id, never after the deadline) with the same failure
modes as the MQTT transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

import aiocoap
import aiocoap.resource as coap_resource
import cbor2
from aiocoap import Message, Reliable, Unreliable
from aiocoap import error as coap_error
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import NON

from .behaviour import Behaviour
from .commands import CommandProcessor, Outcome
from .devices import LOCK_ACTIONS, DeviceModel

type Printer = Callable[[str], None]
type Format = Literal["text", "json", "cbor"]

ALL_COAP_NODES: Final = "224.0.1.187"
COAP_PORT: Final = 5683
FORMATS: Final[dict[str, int]] = {"text": 0, "json": 50, "cbor": 60}
LINK_FORMAT: Final = 40
# Longer than aiocoap's EMPTY_ACK_DELAY (0.1 s): the answer comes as a separate response.
SEPARATE_DELAY: Final = 0.3
START_TIMEOUT: Final = 5.0
ACTION_OF_LOCK_STATE: Final = {state: action for action, state in LOCK_ACTIONS.items()}
# Device classes of the model -> OCF resource types (docs/protocols/coap.md, section 3).
SENSOR_TYPES: Final = {
    "temperature": "oic.r.temperature",
    "humidity": "oic.r.humidity",
    "illuminance": "oic.r.sensor.illuminance",
    "atmospheric_pressure": "oic.r.sensor.atmosphericpressure",
    "carbon_dioxide": "oic.r.sensor.carbondioxide",
    "battery": "oic.r.energy.battery",
    "power": "urn:oma:lwm2m:ext:3328",
    "energy": "urn:oma:lwm2m:ext:3331",
    "voltage": "urn:oma:lwm2m:ext:3316",
    "current": "urn:oma:lwm2m:ext:3317",
}
BINARY_TYPES: Final = {
    "door": "oic.r.door",
    "opening": "oic.r.sensor.contact",
    "window": "oic.r.sensor.contact",
    "motion": "oic.r.sensor.motion",
    "presence": "oic.r.sensor.presence",
    "moisture": "oic.r.sensor.water",
    "smoke": "oic.r.sensor.smoke",
}
ACTUATOR_TYPES: Final = {
    "switch": ("oic.r.switch.binary", "core.a"),
    "lock": ("oic.r.lock.status", "core.a"),
    "light": ("urn:oma:lwm2m:ext:3311", "core.a"),
    "button": ("iot-bridge.button", "core.a"),
}


def print_line(line: str) -> None:
    print(line, flush=True)


@dataclass(frozen=True, slots=True)
class MulticastSettings:
    """Where the device listens for discovery: the all-CoAP-nodes group on one interface."""

    group: str = ALL_COAP_NODES
    port: int = COAP_PORT
    interface: str = "127.0.0.1"  # the IPv4 address of the interface to join on


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One request datagram as it reached the device (retransmissions and drops included)."""

    method: str
    path: str
    query: dict[str, str]
    payload: bytes
    mid: int
    observe: int | None
    dropped: bool
    received_at: float


class _WithoutDrops:
    """Behaviour for the CommandProcessor: drops happen at the message layer here, where a
    dropped datagram is really lost (no ACK), so the processor must not drop again."""

    def __init__(self, real: Behaviour) -> None:
        self.real = real

    def drops(self, _attempt: int) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class CoapDeviceSimulator:
    """One simulated device as a CoAP server on 127.0.0.1 (thread + event loop of its own)."""

    def __init__(
        self,
        model: DeviceModel,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        behaviour: Behaviour | None = None,
        printer: Printer | None = None,
        content_format: Format = "text",
        max_age: int = 60,
        separate_response: bool = False,
        multicast: MulticastSettings | None = None,
        name: str | None = None,
        confirmable_notifications: bool = True,
        notification_delay: float = 0.0,
    ) -> None:
        self.model = model
        self.host = host
        self.port = port
        self.content_format = FORMATS[content_format]
        self.max_age = max_age
        self.separate_response = separate_response
        self.multicast = multicast
        self.name = name or model.name
        # True: every notification is confirmable (reliable, paced by the client's ACKs);
        # False: changes go out as NON (faster, lost when a client's buffer overflows).
        self.confirmable_notifications = confirmable_notifications
        # A device whose notifications lag behind its responses (the value as it was).
        self.notification_delay = notification_delay
        # True: /.well-known/core answers with something that is not link format.
        self.describe_badly = False
        self._behaviour = behaviour or Behaviour()
        self._processor = CommandProcessor(model, _WithoutDrops(self._behaviour))  # type: ignore[arg-type]
        self._print = printer or print_line
        self._lock = threading.Lock()
        self._received: list[ReceivedRequest] = []
        self._answers: list[tuple[str, str]] = []  # (command id, code)
        self._deliveries: Counter[str] = Counter()
        self._observers: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._context: Any = None
        self._resources: dict[str, _StateResource] = {}
        self._mcast: socket.socket | None = None
        self._refresher: asyncio.Task[None] | None = None

    # -- public API ---------------------------------------------------------------------

    @property
    def behaviour(self) -> Behaviour:
        return self._behaviour

    @behaviour.setter
    def behaviour(self, value: Behaviour) -> None:
        self._behaviour = value
        self._processor.behaviour = _WithoutDrops(value)  # type: ignore[assignment]

    @property
    def device_id(self) -> str:
        return self.model.device_id

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def received(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._received)

    @property
    def executed(self) -> list[str]:
        return self._processor.executed

    @property
    def answers(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._answers)

    def observers(self, key: str | None = None) -> int:
        """Registered observers of one resource (of all resources without a key)."""
        with self._lock:
            if key is not None:
                return self._observers.get(key, 0)
            return sum(self._observers.values())

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Bind and serve; returns once the socket is bound (raises OSError if it cannot)."""
        if self._thread is not None:
            return
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=self._run, args=(loop,), name=f"iot-bridge-sim-coap-{self.device_id}"
        )
        thread.daemon = True
        self._loop, self._thread = loop, thread
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._serve(), loop).result(timeout)
        except BaseException:
            self._halt()
            raise
        where = f"{self.host}:{self.port}"
        group = (
            f", discovery on {self.multicast.group}:{self.multicast.port}" if self.multicast else ""
        )
        self._print(f"{self.device_id} online (CoAP, {where}{group})")

    def stop(self, clear: bool = False) -> None:
        """Go offline: close the socket (observers are not told, like a device losing power).

        `clear` exists for the fleet helpers; a CoAP device has nothing stored elsewhere.
        """
        if self._thread is None or self._loop is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(START_TIMEOUT)
        self._halt()
        self._print(f"{self.device_id} offline (CoAP)")

    def crash(self) -> None:
        """Vanish: for a CoAP device the same as going offline."""
        self.stop()

    def publish_state(self, values: dict[str, Any]) -> None:
        """Change values on the device; observers get notified."""
        with self._processor.lock:
            self.model.state |= values
        self._call(self._notify, set(values))

    def notify_sequence(self, updates: list[dict[str, Any]], timeout: float = 120.0) -> float:
        """Apply each update in turn, notifying observers of each one (the device's own
        loop yields between them); returns the seconds it took. For benchmarks."""
        if self._loop is None:
            raise RuntimeError("the device is not running")
        future = asyncio.run_coroutine_threadsafe(self._notify_each(updates), self._loop)
        return future.result(timeout)

    async def _notify_each(self, updates: list[dict[str, Any]]) -> float:
        started = time.perf_counter()
        for values in updates:
            with self._processor.lock:
                self.model.state |= values
            self._notify(set(values))
            await asyncio.sleep(0)
        return time.perf_counter() - started

    def set_multicast(self, multicast: MulticastSettings | None) -> None:
        """Where to listen for discovery from the next start on."""
        self.multicast = multicast

    # -- server ---------------------------------------------------------------------------

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            # aiocoap resolves the bind address in the loop's executor: join its thread.
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    def _halt(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join()

    def _call(self, function: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(function, *args)

    async def _serve(self) -> None:
        site = coap_resource.Site()
        site.add_resource([".well-known", "core"], _WellKnownCore(self, site))
        site.add_resource(["oic", "d"], _DeviceInfo(self))
        self._resources = {}
        for capability in self.model.capabilities:
            resource = _StateResource(self, capability)
            self._resources[capability["key"]] = resource
            site.add_resource([capability["key"]], resource)
        # aiocoap's udp6 socket is IPv6: an IPv4 address is bound v4-mapped.
        bind_host = f"::ffff:{self.host}" if "." in self.host else self.host
        self._context = await aiocoap.Context.create_server_context(
            site, bind=(bind_host, self.port), transports=["udp6"]
        )
        manager = self._context.request_interfaces[0].token_interface
        self._socket_transport = manager.message_interface.transport
        self.port = self._socket_transport.get_extra_info("socket").getsockname()[1]
        self._wrap_dispatch(manager)
        if self.multicast is not None:
            self._join_multicast(self.multicast)
        self._refresher = asyncio.get_running_loop().create_task(self._refresh())

    async def _shutdown(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        if self._mcast is not None:
            asyncio.get_running_loop().remove_reader(self._mcast.fileno())
            self._mcast.close()
            self._mcast = None
        if self._context is not None:
            await self._context.shutdown()
            self._context = None
        with self._lock:
            self._observers.clear()

    async def _refresh(self) -> None:
        """Notify observers before their Max-Age runs out, changed or not (RFC 7641 4.3.1)."""
        while True:
            await asyncio.sleep(max(0.2, self.max_age * 0.8))
            for resource in self._resources.values():
                # Confirmable now and then, as RFC 7641 asks: a client that went away
                # answers with RST and is dropped.
                resource.confirmable_notifications = True
                resource.updated_state()

    def _notify(self, keys: set[str]) -> None:
        for key in keys:
            if (resource := self._resources.get(key)) is not None:
                resource.confirmable_notifications = self.confirmable_notifications
                if self.notification_delay > 0 and self._loop is not None:
                    message = resource.notification()
                    self._loop.call_later(self.notification_delay, resource.updated_state, message)
                else:
                    resource.updated_state()

    # -- message layer ----------------------------------------------------------------------

    def _wrap_dispatch(self, manager: Any) -> None:
        """See every request datagram before aiocoap does; lose the first N of a command."""
        dispatch = manager.dispatch_message

        def watching(message: Message) -> None:
            if message.code.is_request() and self._record(message):
                return  # lost: no ACK, the client retransmits
            dispatch(message)

        manager.dispatch_message = watching

    def _record(self, message: Message) -> bool:
        query = _query(message)
        command_id = query.get("id")
        dropped = False
        if command_id is not None and message.code in (Code.PUT, Code.POST):
            with self._lock:
                self._deliveries[command_id] += 1
                dropped = self._behaviour.drops(self._deliveries[command_id])
        received = ReceivedRequest(
            method=str(message.code),
            path="/" + "/".join(message.opt.uri_path),
            query=query,
            payload=bytes(message.payload),
            mid=message.mid,
            observe=message.opt.observe,
            dropped=dropped,
            received_at=time.time(),
        )
        with self._lock:
            self._received.append(received)
        if dropped:
            self._print(f"{self.device_id} <- {received.method} {received.path} dropped (lost)")
        return dropped

    def _observation_count(self, key: str, count: int) -> None:
        with self._lock:
            self._observers[key] = count

    # -- discovery ------------------------------------------------------------------------------

    def _join_multicast(self, settings: MulticastSettings) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((settings.group, settings.port))
        membership = socket.inet_aton(settings.group) + socket.inet_aton(settings.interface)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        sock.setblocking(False)
        self._mcast = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._on_multicast)

    def _on_multicast(self) -> None:
        if self._mcast is None:
            return
        try:
            data, sender = self._mcast.recvfrom(2048)
            request = Message.decode(data)
        except (OSError, coap_error.UnparsableMessage):
            return
        if request.code != Code.GET or tuple(request.opt.uri_path) != (".well-known", "core"):
            return
        links = str(self._context.serversite.get_resources_as_linkheader()).encode()
        response = Message(code=Code.CONTENT, payload=links, content_format=LINK_FORMAT)
        response.mtype, response.token, response.mid = NON, request.token, secrets.randbits(16)
        # Answered from the device's own CoAP socket: the answer's source is its address.
        self._socket_transport.sendmsg(
            response.encode(), [], 0, (f"::ffff:{sender[0]}", sender[1], 0, 0)
        )
        self._print(f"{self.device_id} -> discovery answer to {sender[0]}:{sender[1]}")

    # -- commands -------------------------------------------------------------------------------

    async def command(self, resource: _StateResource, request: Message) -> Message:
        """Carry out a PUT/POST through the CommandProcessor and answer with its outcome."""
        query = _query(request)
        capability = resource.capability
        try:
            action, params = resource.action_of(request)
        except ValueError as err:
            return self._refusal(Code.BAD_REQUEST, str(err), query.get("id"))
        command: dict[str, Any] = {
            "id": query.get("id") or f"anonymous-{secrets.token_hex(6)}",
            "capability": capability["key"],
            "action": action,
            "params": params,
        }
        if (deadline := _number(query.get("dl"))) is not None:
            command["deadline"] = deadline
        outcome = self._processor.handle(command)
        self._print(self._describe(request, command, outcome))
        if outcome.changed:
            self._notify(set(outcome.changed))
        delay = self._behaviour.answer_delay
        if self.separate_response:
            delay = max(delay, SEPARATE_DELAY)
        if self._behaviour.silent:
            self._print(f"{self.device_id} -- silent, no answer to id={_short(command['id'])}")
            await asyncio.Event().wait()  # never answers; ends when the device goes offline
        if delay > 0:
            await asyncio.sleep(delay)
        return self._answer(resource, outcome)

    def _answer(self, resource: _StateResource, outcome: Outcome) -> Message:
        answer = outcome.answer or {}
        command_id = outcome.command_id or ""
        if answer.get("status") != "ok":
            reason = str(answer.get("reason") or "failed")
            return self._refusal(self._code_for(reason), reason, command_id)
        response = resource.representation(code=Code.CHANGED)
        self._log_answer(command_id, response.code, repeat=outcome.repeat)
        return response

    def _code_for(self, reason: str) -> Code:
        if reason == "expired":
            return Code.PRECONDITION_FAILED
        if reason == "jammed":
            return Code.INTERNAL_SERVER_ERROR
        if self._behaviour.refuse is not None and reason == self._behaviour.refuse:
            return Code.FORBIDDEN
        return Code.BAD_REQUEST

    def _refusal(self, code: Code, reason: str, command_id: str | None) -> Message:
        self._log_answer(command_id or "", code, reason=reason)
        return Message(code=code, payload=reason.encode())

    def _log_answer(
        self, command_id: str, code: Code, *, reason: str = "", repeat: bool = False
    ) -> None:
        with self._lock:
            self._answers.append((command_id, code.dotted))
        text = f"{self.device_id} -> {code.dotted} {code.name_printable}"
        if reason:
            text += f" {reason!r}"
        if repeat:
            text += " (repeat, not performed again)"
        self._print(text)

    def _describe(self, request: Message, command: dict[str, Any], outcome: Outcome) -> str:
        query = _query(request)
        details = f"attempt {outcome.attempt}"
        if (deadline := _number(query.get("dl"))) is not None:
            details += f", deadline in {deadline - time.time():.1f}s"
        what = f"{command['action']} {command['capability']}"
        return f"{self.device_id} <- {request.code} {what} id={_short(command['id'])} ({details})"


def _query(message: Message) -> dict[str, str]:
    query: dict[str, str] = {}
    for item in message.opt.uri_query:
        key, _, value = item.partition("=")
        query.setdefault(key, value)
    return query


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _short(command_id: str) -> str:
    return command_id if len(command_id) <= 8 else f"{command_id[:8]}…"


def _encode(value: Any, content_format: int) -> bytes:
    if content_format == FORMATS["json"]:
        return json.dumps(value, ensure_ascii=False).encode()
    if content_format == FORMATS["cbor"]:
        return cbor2.dumps(value)
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, dict):  # a light in text: on/off only
        return b"1" if value.get("on") else b"0"
    return str(value).encode()


def _decode(payload: bytes, content_format: int | None) -> Any:
    if content_format == FORMATS["json"]:
        return json.loads(payload)
    if content_format == FORMATS["cbor"]:
        return cbor2.loads(payload)
    return payload.decode("utf-8").strip()


_TRUE: Final = {"1", "true", "on", True}
_FALSE: Final = {"0", "false", "off", False}


def _as_bool(value: Any) -> bool:
    word = value.lower() if isinstance(value, str) else value
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"expected on/off, got {value!r}")


class _StateResource(coap_resource.ObservableResource):  # type: ignore[misc]
    """One capability of the model as an observable CoAP resource."""

    def __init__(self, device: CoapDeviceSimulator, capability: dict[str, Any]) -> None:
        super().__init__()
        self.device = device
        self.capability = capability
        self.kind = str(capability["kind"])
        self.key = str(capability["key"])
        self.ct = device.content_format
        self.confirmable_notifications = True
        if self.kind == "light" and self.ct == FORMATS["text"]:
            self.ct = FORMATS["json"]  # brightness needs a structured format

    def get_link_description(self) -> dict[str, Any]:
        link: dict[str, Any] = {"ct": str(self.ct)}
        if self.kind in ACTUATOR_TYPES:
            link["rt"], link["if"] = ACTUATOR_TYPES[self.kind]
        elif self.kind == "number":
            # A settable measurement (core.p) is a number; without a class, an IPSO set point.
            if self.capability.get("unit") == "°C":
                link["rt"], link["if"] = "oic.r.temperature", "core.p"
            else:
                link["rt"], link["if"] = "urn:oma:lwm2m:ext:3308", "core.p"
        else:
            types = SENSOR_TYPES if self.kind == "sensor" else BINARY_TYPES
            rt = types.get(str(self.capability.get("device_class")))
            if rt is not None:
                link["rt"] = rt
            link["if"] = "core.s"
        title = self.capability.get("name")
        if title is None and self.kind == "number":
            # Home Assistant would name it after its class ("Temperature"): say what it sets.
            title = self.key.replace("_", " ").capitalize()
        if title:
            link["title"] = title
        if self.kind != "button":
            link["obs"] = None
        return link

    def update_observation_count(self, newcount: int) -> None:
        self.device._observation_count(self.key, newcount)

    def representation(self, code: Code = Code.CONTENT) -> Message:
        with self.device._processor.lock:
            value = self.device.model.state.get(self.key)
        payload = b"" if value is None else _encode(value, self.ct)
        message = Message(code=code, payload=payload, content_format=self.ct)
        message.opt.max_age = self.device.max_age
        return message

    async def render_get(self, _request: Message) -> Message:
        if self.kind == "button":
            return Message(code=Code.METHOD_NOT_ALLOWED, payload=b"press it with POST")
        return self.notification()

    def notification(self) -> Message:
        """The representation now, as a notification would carry it."""
        message = self.representation()
        # Only notifications are affected: a response to a request rides on its ACK.
        message.transport_tuning = Reliable() if self.confirmable_notifications else Unreliable()
        return message

    async def render_put(self, request: Message) -> Message:
        if self.kind == "button":
            return Message(code=Code.METHOD_NOT_ALLOWED, payload=b"press it with POST")
        return await self.device.command(self, request)

    async def render_post(self, request: Message) -> Message:
        if self.kind != "button":
            return Message(code=Code.METHOD_NOT_ALLOWED, payload=b"set it with PUT")
        return await self.device.command(self, request)

    def action_of(self, request: Message) -> tuple[str, dict[str, Any]]:
        """The model's action for a request (the new representation it asks for)."""
        if self.kind == "button":
            return "press", {}
        try:
            value = _decode(request.payload, request.opt.content_format)
        except ValueError as err:  # UnicodeDecodeError, JSON and CBOR errors included
            raise ValueError(f"cannot read the payload: {err}") from err
        if isinstance(value, dict) and self.kind != "light":
            value = next(iter(value.values()), None) if len(value) == 1 else value.get("value")
        if self.kind == "lock":
            state = value.lower() if isinstance(value, str) else value
            if state not in ACTION_OF_LOCK_STATE:
                raise ValueError(f"{value!r} is not locked, unlocked or open")
            return ACTION_OF_LOCK_STATE[state], {}
        if self.kind == "switch":
            return ("turn_on" if _as_bool(value) else "turn_off"), {}
        if self.kind == "number":
            number = _number(str(value)) if not isinstance(value, bool) else None
            if number is None:
                raise ValueError(f"{value!r} is not a number")
            return "set", {"value": int(number) if number.is_integer() else number}
        if self.kind == "light":
            light = value if isinstance(value, dict) else {"on": _as_bool(value)}
            on = _as_bool(light.get("on"))
            params = {"brightness": light["brightness"]} if on and "brightness" in light else {}
            return ("turn_on" if on else "turn_off"), params
        raise ValueError(f"a {self.kind} takes no commands")


class _WellKnownCore(coap_resource.WKCResource):  # type: ignore[misc]
    """The resource list, or (describe_badly) something that is not link format."""

    def __init__(self, device: CoapDeviceSimulator, site: Any) -> None:
        super().__init__(site.get_resources_as_linkheader, impl_info=None)
        self.device = device

    async def render_get(self, request: Message) -> Message:
        if self.device.describe_badly:
            return Message(payload=b"<broken", content_format=LINK_FORMAT)
        return await super().render_get(request)


class _DeviceInfo(coap_resource.Resource):  # type: ignore[misc]
    """/oic/d: the OCF device resource, with the platform's properties in it."""

    rt = "oic.wk.d"
    ct = FORMATS["json"]

    def __init__(self, device: CoapDeviceSimulator) -> None:
        super().__init__()
        self.device = device

    def get_link_description(self) -> dict[str, Any]:
        return {"rt": self.rt, "ct": str(self.ct)}

    async def render_get(self, _request: Message) -> Message:
        model = self.device.model
        info = {
            "di": model.device_id,
            "n": self.device.name,
            "mnmn": model.manufacturer,
            "mnmo": model.model,
            "mnfv": model.sw_version,
            "mnhw": model.hw_version,
        }
        payload = {key: value for key, value in info.items() if value is not None}
        return Message(payload=json.dumps(payload).encode(), content_format=self.ct)
