"""One CoAP device: its resources observed or polled, its reachability, confirmed commands.

The bridge is a CoAP client of a single device (one config entry per device, the way Home
Assistant handles local IP devices). State arrives through Observe (RFC 7641) for
resources the device marks `obs`, and through polling for the rest. A command is one
confirmable PUT/POST per attempt: the ACK means *delivered*, the response *is* the outcome.
See docs/protocols/coap.md for the device's side.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiocoap import Message
from aiocoap.numbers.codes import Code

from ..bridge import BridgeListener, BridgeStartError
from ..commands import CommandEngine, TransportUnavailable
from ..devices import DeviceStore, RejectLog
from ..model import Capability, Command, CommandReply, CommandResult, CommandStatus, Device
from ..values import InvalidValue, normalize
from .endpoint import CoapEndpoint, EndpointError, retransmission_plan
from .probe import (
    NETWORK_ERRORS,
    NothingUsable,
    ProbeError,
    describe_error,
    device_from,
    read_device,
)
from .profile import (
    NO_VALUE,
    CommandRequest,
    Description,
    Identity,
    ProfileError,
    Resource,
    code_text,
    command_reply,
    decode_value,
    encode_command,
    is_success,
)

_LOGGER = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL: Final = 30.0
MIN_POLL_INTERVAL: Final = 1.0
MAX_POLL_INTERVAL: Final = 3600.0
# A read (poll, registration) that gets no answer in this time counts as "device unreachable".
REQUEST_TIMEOUT: Final = 5.0
# RFC 7252's default Max-Age, for notifications that carry none.
DEFAULT_MAX_AGE: Final = 60
# Retries after a failed registration back off from here up to the poll interval (30 s max).
RETRY_MIN: Final = 0.5
RETRY_MAX: Final = 30.0
# How long unload waits for the device to confirm its observations are cancelled.
DEREGISTRATION_WAIT: Final = 1.0
# Share of a command's remaining time its retransmissions may use (the rest is transit).
RETRANSMISSION_SHARE: Final = 0.9
REFUSED_UNSUPPORTED: Final = "unsupported"
# After a confirmed command, how long a notification with another value may be an older
# one still on its way (see _settle).
SETTLE_TIME: Final = 0.5
_OBSERVE_WRAP: Final = 1 << 23
_UNREADABLE: Final = object()


@dataclass(frozen=True, slots=True)
class CoapSettings:
    """Where the device is and who it must be."""

    host: str
    port: int
    # The id the config entry was created for; a different device at the address is refused.
    device_id: str
    name: str
    # Read at every cycle, so a changed option applies without a reload.
    poll_interval: Callable[[], float] = lambda: DEFAULT_POLL_INTERVAL
    request_timeout: float = REQUEST_TIMEOUT


@dataclass(slots=True)
class _Observation:
    """One observed resource and its current registration."""

    resource: Resource
    task: asyncio.Task[None] | None = None
    registration: Message | None = None
    registrations: int = 0
    notifications: int = 0
    stale: int = 0  # notifications stopped (max-age passed) and it registered again
    # False once unload (or a new description) ends it: it must not register again.
    active: bool = True


@dataclass(slots=True)
class _Settling:
    """A resource whose confirmed value must not be undone by an older notification."""

    value: Any
    handle: asyncio.TimerHandle
    newest: Message | None = None  # the newest notification held back meanwhile
    held: int = 0


@dataclass(slots=True)
class _Stats:
    polls: int = 0
    poll_failures: int = 0
    description_changes: int = 0
    held_notifications: int = 0


class CoapBridge:
    """The `core.bridge.Bridge` of one CoAP device (a CommandTransport for the engine)."""

    def __init__(
        self, settings: CoapSettings, engine: CommandEngine, listener: BridgeListener
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.rejects = RejectLog(_LOGGER)
        self.store = DeviceStore(listener, self.rejects)
        self.endpoint = CoapEndpoint(f"iot_bridge.{settings.device_id}")
        self.description = Description()
        self.last_error: str | None = None
        self._remote: Any = None
        self._reachable = False
        self._stopping = False
        self._wake = asyncio.Event()
        self._observations: dict[str, _Observation] = {}
        self._polled: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # Per command in flight: its encoded request, and the responses still awaited.
        self._encoded: dict[str, CommandRequest] = {}
        self._answers: dict[str, set[Any]] = {}
        self._settling: dict[str, _Settling] = {}
        # Set while another device answers at the address (why, for diagnostics).
        self._wrong_device: str | None = None
        self._refresh_task: asyncio.Task[None] | None = None
        self._stats = _Stats()

    # Bridge -----------------------------------------------------------------------------

    @property
    def devices(self) -> Mapping[str, Device]:
        """The one device (once described)."""
        return self.store.devices

    @property
    def connected(self) -> bool:
        """Our socket is open; whether the device answers is its availability."""
        return self.endpoint.started and not self._stopping

    @property
    def reachable(self) -> bool:
        """Whether the device answered its last request."""
        return self._reachable

    def describe(self) -> str:
        """The device's address, for messages."""
        return f"CoAP device {self.settings.host}:{self.settings.port}"

    async def start(self) -> None:
        """Read the device's description, then observe and poll it in the background."""
        try:
            await self.endpoint.start()
            self._remote = await self.endpoint.resolve(self.settings.host, self.settings.port)
            description, identity = await read_device(
                self.endpoint, self._remote, self.settings.request_timeout
            )
            self._check_identity(identity)
        except (EndpointError, ProbeError) as err:
            await self.endpoint.shutdown()
            raise BridgeStartError(str(err)) from err
        self._reachable = True
        self._adopt(description, identity)

    async def stop(self) -> None:
        """Cancel observations on the wire, end every task, close the socket."""
        self._stopping = True
        self._wake.set()
        for settling in self._settling.values():
            settling.handle.cancel()
        self._settling.clear()
        await self._end_observations()
        for responses in self._answers.values():
            for response in responses:
                response.cancel()
        self._answers.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        await self.endpoint.shutdown()

    async def execute(self, command: Command, capability: Capability) -> CommandResult:
        """Run a command through the engine; apply the state its response reports."""
        resource = self.description.resources.get(command.capability)
        try:
            if resource is None:
                raise ProfileError(f"no resource for '{command.capability}'")
            self._encoded[command.command_id] = encode_command(
                resource, command.action, command.params
            )
        except ProfileError as err:
            return self.engine.refuse(command, REFUSED_UNSUPPORTED, str(err))
        try:
            result = await self.engine.execute(self, command, confirmable=True)
        finally:
            # The outcome is known: answers to other attempts no longer matter.
            del self._encoded[command.command_id]
            for response in self._answers.pop(command.command_id, set()):
                response.cancel()
        self.store.apply_result(command, result)
        device = self.store.get(self.device_id)
        if result.status is CommandStatus.CONFIRMED and device is not None:
            self._settle(command.capability, device.state.get(command.capability))
        return result

    async def admit(self, device_id: str) -> None:
        """Nothing to do: a CoAP device is admitted by adding its entry."""

    async def forget_device(self, device_id: str) -> None:
        """The user deleted the device: stop following it until the entry is reloaded
        (the entry is the device; deleting the entry removes it for good)."""
        await self._end_observations()
        self._polled.clear()
        self.store.forget(device_id)

    def diagnostics(self) -> dict[str, Any]:
        """Address, reachability, how each resource is followed, what was dropped."""
        return {
            "device": {
                "host": self.settings.host,
                "port": self.settings.port,
                "device_id": self.settings.device_id,
                "reachable": self._reachable,
                "wrong_device": self._wrong_device,
                "last_error": self.last_error,
                "local_port": self.endpoint.local_port if self.endpoint.started else None,
            },
            "resources": [
                self._resource_diagnostics(r) for r in self.description.resources.values()
            ],
            "polls": {"count": self._stats.polls, "failures": self._stats.poll_failures},
            "description_changes": self._stats.description_changes,
            "notifications_held_after_commands": self._stats.held_notifications,
            "dropped_messages": dict(self.rejects.counts),
        }

    def device_diagnostics(self, device_id: str) -> dict[str, Any]:
        """A CoAP hub has one device: its resources, observations and address."""
        del device_id
        return self.diagnostics()

    def _resource_diagnostics(self, resource: Resource) -> dict[str, Any]:
        observation = self._observations.get(resource.key)
        data: dict[str, Any] = {
            "key": resource.key,
            "path": resource.href,
            "rt": resource.resource_type,
            "if": list(resource.interfaces),
            "ct": resource.content_format,
            "follow": "observe" if observation is not None else "poll",
        }
        if observation is not None:
            data |= {
                "registrations": observation.registrations,
                "notifications": observation.notifications,
                "stale": observation.stale,
            }
        return data

    # Description --------------------------------------------------------------------------

    @property
    def device_id(self) -> str:
        """The protocol device id (from the config entry)."""
        return self.settings.device_id

    def _check_identity(self, identity: Identity) -> None:
        stated = identity.device_id
        if stated is not None and stated != self.settings.device_id:
            raise BridgeStartError(
                f"{self.settings.host}:{self.settings.port} is device '{stated}', "
                f"not '{self.settings.device_id}'"
            )

    def _adopt(self, description: Description, identity: Identity) -> None:
        """Announce the device and follow each of its resources."""
        self.description = description
        device = device_from(self.device_id, description, identity, self.settings.name)
        self.store.announce(device)
        self._polled = set()
        for key, resource in description.resources.items():
            if resource.observable:
                observation = _Observation(resource)
                self._observations[key] = observation
                observation.task = self._spawn(self._observe(observation), f"observe {key}")
            else:
                self._polled.add(key)
        self._spawn(self._poll_loop(), "poll")

    async def _refresh_description(self) -> None:
        """The device is back: it may have restarted with other resources, or be another
        device that now has its address."""
        try:
            description, identity = await read_device(
                self.endpoint, self._remote, self.settings.request_timeout
            )
        except NothingUsable as err:
            # Keep following what it described before; say once what is wrong now.
            self.rejects.reject(
                self.device_id, "description", f"{self.describe()} describes itself badly: {err}"
            )
            return
        except ProbeError as err:
            _LOGGER.debug("Could not re-read %s: %s", self.describe(), err)
            return
        self.rejects.accept(self.device_id, "description")
        try:
            self._check_identity(identity)
        except BridgeStartError as err:
            self._impostor(str(err))
            return
        if self._wrong_device is not None:
            self._wrong_device = None
            _LOGGER.info("%s is device '%s' again", self.describe(), self.device_id)
            self._heard()
        if description.resources == self.description.resources:
            return
        _LOGGER.info("%s describes itself differently now; updating its entities", self.describe())
        self._stats.description_changes += 1
        await self._end_observations()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        self._adopt(description, identity)

    def _refresh_soon(self) -> asyncio.Task[None]:
        """Re-read the description in the background (once at a time)."""
        if self._refresh_task is None or self._refresh_task.done():
            self._refresh_task = self._spawn(self._refresh_description(), "refresh")
        return self._refresh_task

    async def _recheck(self) -> None:
        """Re-read the description and wait for it (shared by everyone who asks)."""
        await asyncio.wait([self._refresh_soon()])

    def _spawn(self, coroutine: Any, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            coroutine, name=f"iot_bridge coap {self.device_id} {name}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # Reachability -------------------------------------------------------------------------

    def _impostor(self, reason: str) -> None:
        """Another device answers at the address: show ours offline, apply nothing of it."""
        if self._wrong_device is None:
            _LOGGER.warning("%s; its entities stay offline until it is back", reason)
        self._wrong_device = reason
        self._lost(reason)

    def _heard(self) -> None:
        """The device answered: it is reachable (one log line when it was not)."""
        if self._reachable or self._stopping or self._wrong_device is not None:
            return
        self._reachable = True
        _LOGGER.info("%s answers again", self.describe())
        self.store.set_all_available(True)
        # Commands waiting for a retry slot go out now (same id: no double action).
        self.engine.resend_pending(self.device_id)
        self._wake.set()
        self._wake = asyncio.Event()
        self._refresh_soon()

    def _lost(self, error: str) -> None:
        """A request got no answer: the device is unreachable (one log line)."""
        self.last_error = error
        if not self._reachable or self._stopping:
            return
        self._reachable = False
        if self._wrong_device is None:
            _LOGGER.warning("Lost %s: %s", self.describe(), self.last_error)
        self.store.set_all_available(False)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the device is heard again or the bridge stops."""
        wake = self._wake
        try:
            async with asyncio.timeout(seconds):
                await wake.wait()
        except TimeoutError:
            pass

    def _poll_interval(self) -> float:
        return min(max(self.settings.poll_interval(), MIN_POLL_INTERVAL), MAX_POLL_INTERVAL)

    # State --------------------------------------------------------------------------------

    def _apply(self, resource: Resource, response: Message) -> None:
        """Put a representation into the device's state (bad ones logged once, dropped)."""
        cause = f"payload of {resource.href}"
        if self._wrong_device is not None:
            return  # values of another device
        if not is_success(response.code):
            _LOGGER.debug(
                "%s answered %s for %s", self.describe(), code_text(response.code), resource.href
            )
            return
        try:
            value = decode_value(resource, response.payload, response.opt.content_format)
        except ProfileError as err:
            self.rejects.reject(
                self.device_id, cause, f"Dropped {cause} from {self.describe()}: {err}"
            )
            return
        self.rejects.accept(self.device_id, cause)
        if value is not NO_VALUE:
            self.store.apply_state(self.device_id, {resource.key: value})

    async def _poll_loop(self) -> None:
        while not self._stopping:
            if self._wrong_device is not None:
                await self._refresh_description()  # is it our device again?
            await self._poll_once()
            interval = self._poll_interval()
            await self._pause(interval if self._reachable else min(interval, RETRY_MAX))

    async def _poll_once(self) -> None:
        for key in list(self._polled):
            resource = self.description.resources.get(key)
            if resource is None or self._stopping:
                continue
            self._stats.polls += 1
            if not await self._read(resource):
                self._stats.poll_failures += 1
                return  # one failure is enough: the next cycle tries again

    async def _read(self, resource: Resource) -> bool:
        """GET one resource and apply it; False (and the device lost) without an answer."""
        message = Message(
            code=Code.GET,
            uri_path=resource.path,
            transport_tuning=retransmission_plan(self.settings.request_timeout * 0.9).tuning(),
        )
        message.remote = self._remote
        request = self.endpoint.request(message)
        try:
            async with asyncio.timeout(self.settings.request_timeout):
                response = await request.response
        except (TimeoutError, *NETWORK_ERRORS) as err:
            self._lost(describe_error(err, f"no answer to GET {resource.href}"))
            return False
        self._heard()
        self._apply(resource, response)
        return True

    async def _observe(self, observation: _Observation) -> None:
        """Keep one resource observed: register, follow, register again when needed."""
        retry = RETRY_MIN
        while observation.active and not self._stopping:
            request = self._register(observation)
            try:
                async with asyncio.timeout(self.settings.request_timeout):
                    first = await request.response
            except (TimeoutError, *NETWORK_ERRORS) as err:
                observation.registration = None
                self._lost(describe_error(err, "no answer to an Observe registration"))
                await self._pause(retry)
                retry = min(retry * 2, RETRY_MAX, max(self._poll_interval(), RETRY_MIN))
                continue
            retry = RETRY_MIN
            self._heard()
            self._apply(observation.resource, first)
            if first.opt.observe is None or not is_success(first.code):
                # The device does not let us observe it (any more): poll it instead.
                observation.registration = None
                self._observations.pop(observation.resource.key, None)
                self._polled.add(observation.resource.key)
                return
            observation.registrations += 1
            if await self._follow(observation, request, first):
                # Silent past its max-age: restarted, moved, or another device took the
                # address. Ask who is there before registering again.
                await self._recheck()

    def _register(self, observation: _Observation) -> Any:
        message = Message(
            code=Code.GET,
            uri_path=observation.resource.path,
            observe=0,
            transport_tuning=retransmission_plan(self.settings.request_timeout * 0.9).tuning(),
        )
        message.remote = self._remote
        observation.registration = message
        return self.endpoint.request(message)

    async def _follow(self, observation: _Observation, request: Any, first: Message) -> bool:
        """Apply notifications until the observation ends; True if it fell silent past its
        max-age."""
        max_age = first.opt.max_age if first.opt.max_age is not None else DEFAULT_MAX_AGE
        notifications = request.observation.__aiter__()
        while observation.active and not self._stopping:
            try:
                async with asyncio.timeout(_silence_limit(max_age)):
                    notification = await notifications.__anext__()
            except TimeoutError:
                # Notifications stopped (device restarted, address moved, registration lost):
                # tidy up on the device if it still knows us, then register again.
                observation.stale += 1
                _LOGGER.debug(
                    "%s sent nothing on %s for %ss: registering again",
                    self.describe(),
                    observation.resource.href,
                    max_age,
                )
                self._forget_registration(observation, request)
                return True
            except StopAsyncIteration:
                return False  # the device ended it (or we cancelled it): register again
            except NETWORK_ERRORS as err:
                self._lost(describe_error(err))
                await self._pause(RETRY_MIN)
                return False
            observation.notifications += 1
            self._heard()
            self._notified(observation.resource, notification)
            if notification.opt.max_age is not None:
                max_age = notification.opt.max_age
        return False

    # Confirmed values and notifications in flight --------------------------------------

    def _settle(self, key: str, value: Any) -> None:
        """A command on an observed resource was confirmed with `value`.

        Notifications the device sent *before* the command may still be on their way
        (confirmable ones wait for the previous one's ACK; the response does not wait), and
        would show an old state after the confirmed one. So for SETTLE_TIME after the last
        confirmation, notifications are held back; then the newest one (by its Observe
        number) applies if it says the confirmed value, and otherwise the resource is read
        again, since only a fresh GET can tell an old value from a new change.
        """
        if value is None or key not in self._observations:
            return
        newest, held = None, 0
        if (previous := self._settling.pop(key, None)) is not None:
            previous.handle.cancel()
            newest, held = previous.newest, previous.held
        handle = asyncio.get_running_loop().call_later(SETTLE_TIME, self._settled, key)
        self._settling[key] = _Settling(value, handle, newest, held)

    def _settled(self, key: str) -> None:
        settling = self._settling.pop(key, None)
        resource = self.description.resources.get(key)
        if settling is None or settling.newest is None or resource is None or self._stopping:
            return
        self._stats.held_notifications += settling.held
        if self._value_of(resource, settling.newest) == settling.value:
            self._apply(resource, settling.newest)
        else:
            self._spawn(self._read(resource), f"read {key}")

    def _notified(self, resource: Resource, notification: Message) -> None:
        """Apply a notification, or hold it back after a confirmation (_settle)."""
        settling = self._settling.get(resource.key)
        if settling is None:
            self._apply(resource, notification)
            return
        settling.held += 1
        if settling.newest is None or _newer(notification, settling.newest):
            settling.newest = notification

    def _value_of(self, resource: Resource, message: Message) -> Any:
        try:
            return normalize(
                resource.capability,
                decode_value(resource, message.payload, message.opt.content_format),
            )
        except (ProfileError, InvalidValue):
            return _UNREADABLE

    def _forget_registration(self, observation: _Observation, request: Any) -> None:
        if observation.registration is not None:
            self.endpoint.send_deregistration(observation.registration)
        observation.registration = None
        if not request.observation.cancelled:
            request.observation.cancel()

    async def _end_observations(self) -> None:
        """GET with Observe=1 for every registration, then wait briefly for the device."""
        observations = list(self._observations.values())
        self._observations = {}
        for observation in observations:
            observation.active = False
            if observation.registration is not None:
                self.endpoint.send_deregistration(observation.registration)
        tasks = [o.task for o in observations if o.task is not None and not o.task.done()]
        if tasks:
            # Each task ends when the device answers its deregistration (last notification).
            await asyncio.wait(tasks, timeout=DEREGISTRATION_WAIT)
        for task in tasks:
            task.cancel()

    # Commands -----------------------------------------------------------------------------

    async def send_command(self, command: Command, *, attempt: int, expires_in: float) -> None:
        """CommandTransport: one confirmable request; returns when the device ACKs it.

        Each attempt is a new request (new message id and token) with the same command id;
        its CoAP retransmissions end before the deadline (retransmission_plan), so no copy
        of a command reaches the device late. The response is handed to the engine as the
        command's answer.
        """
        resource = self.description.resources.get(command.capability)
        if resource is None or self._remote is None or not self.endpoint.started:
            raise TransportUnavailable(f"{self.describe()} is not ready")
        encoded = self._encoded.get(command.command_id) or encode_command(
            resource, command.action, command.params
        )
        message = Message(
            code=Code.PUT if encoded.method == "PUT" else Code.POST,
            uri_path=resource.path,
            uri_query=(f"id={command.command_id}", f"dl={command.deadline_unix:.3f}"),
            payload=encoded.payload,
            transport_tuning=retransmission_plan(expires_in * RETRANSMISSION_SHARE).tuning(),
        )
        if encoded.content_format is not None:
            message.opt.content_format = encoded.content_format
        message.remote = self._remote
        acknowledged = self.endpoint.watch_ack(message)
        try:
            response = self.endpoint.request(message, blockwise=False).response
            self._await_answer(command, resource, response, expires_in)
            await asyncio.wait((acknowledged, response), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.endpoint.forget_ack(message)
        if acknowledged.done() and not acknowledged.cancelled():
            if acknowledged.result():
                return
            raise TransportUnavailable(f"{self.describe()} reset the request (RST)")
        if response.done() and not response.cancelled() and response.exception() is not None:
            failure = describe_error(response.exception())
            raise TransportUnavailable(f"{self.describe()} unreachable: {failure}")

    def _await_answer(
        self, command: Command, resource: Resource, response: Any, expires_in: float
    ) -> None:
        """Hand the response to the engine when it comes; stop waiting at the deadline
        (aiocoap would wait for a separate response forever)."""
        timer = asyncio.get_running_loop().call_later(expires_in, response.cancel)
        pending = self._answers.setdefault(command.command_id, set())
        pending.add(response)

        def answered(future: Any) -> None:
            timer.cancel()
            pending.discard(future)
            if future.cancelled():
                return
            if (error := future.exception()) is not None:
                if isinstance(error, NETWORK_ERRORS):
                    self._lost(describe_error(error))
                return
            self._heard()
            reply = command_reply(
                resource,
                command.command_id,
                future.result().code,
                future.result().payload,
                future.result().opt.content_format,
            )
            self.engine.handle_reply(self._checked(resource, reply))

        response.add_done_callback(answered)

    def _checked(self, resource: Resource, reply: CommandReply) -> CommandReply:
        """Keep a confirmed value only if it is valid, so what the action implies applies."""
        if not reply.state:
            return reply
        try:
            normalize(resource.capability, reply.state[resource.key])
        except InvalidValue as err:
            _LOGGER.debug("Ignoring the state in %s's answer: %s", self.describe(), err)
            return CommandReply(reply.command_id, reply.ok, reply.reason, None)
        return reply


def _newer(first: Message, second: Message) -> bool:
    """Whether notification `first` is newer than `second` (RFC 7641 3.4 sequence rule)."""
    one: int | None = first.opt.observe
    two: int | None = second.opt.observe
    if one is None or two is None:
        return True
    return (two < one and one - two < _OBSERVE_WRAP) or (two > one and two - one > _OBSERVE_WRAP)


def _silence_limit(max_age: int) -> float:
    """How long to wait for a notification before the observation counts as lost."""
    return max_age * 1.5 + 2.0
