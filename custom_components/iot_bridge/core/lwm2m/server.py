"""The LwM2M server socket: the registration interface in, device management out.

One aiocoap server context on one UDP port. Clients register, update and de-register
through `/rd`; the server reads, writes, executes and observes through the same context,
so every request leaves from the socket the client registered with (NAT and firewalls
only let answers through that way). What the registrations mean to Home Assistant is the
bridge's business (bridge.py); this module only keeps them and moves bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

import aiocoap
import aiocoap.error
import aiocoap.numbers
import aiocoap.resource
from aiocoap.numbers.codes import Code

from ..bridge import BridgeStartError
from ..coap_timers import shutdown, track_timers
from ..devices import RejectLog
from .admission import AdmissionLimits, FirstSight, RateLimiter
from .registration import (
    Registration,
    RegistrationError,
    RegistrationStore,
    UnknownRegistration,
)

_LOGGER = logging.getLogger(__name__)
_LINK_FORMAT: Final = 40
# How often lapsed registrations are looked for; a lifetime is whole seconds anyway.
_EXPIRY_TICK: Final = 1.0
_STANDARD_ACK_TIMEOUT: Final = 2.0
_STANDARD_RETRANSMITS: Final = 4
_MIN_ACK_TIMEOUT: Final = 0.05
_RECEIVE_BUFFER: Final = 4 * 1024 * 1024
_SEND_FORMATS: Final = (110, 112)  # SenML JSON, SenML CBOR
_MAX_SENDERS: Final = 100_000
_ONE_BLOCK: Final = 1024  # aiocoap's default block size: a payload up to this goes in one message
# Max-Age of a 5.03 for a Register while too many new endpoints wait to become devices.
_PENDING_RETRY: Final = 30
# The pending set is pruned (endpoints that became devices or went) at most this often.
_PRUNE_INTERVAL: Final = 1.0
# Code classes no CoAP message uses (1.xx, 6.xx, 7.xx is TCP signalling only).
_NO_CLASS: Final = frozenset({1, 6, 7})


class RegistrationListener(Protocol):
    """What the owner (the LwM2M bridge) hears from the registration interface."""

    def registered(self, registration: Registration, previous: Registration | None) -> None:
        """A client registered (previous: the registration it replaced)."""

    def updated(self, registration: Registration, previous: Registration) -> None:
        """A client updated its registration (lifetime, binding, objects or address)."""

    def deregistered(self, registration: Registration, *, expired: bool) -> None:
        """A client de-registered, or its lifetime lapsed without an Update."""

    def sent(self, registration: Registration, content_format: int, payload: bytes) -> Code:
        """A registered client sent values (LwM2M 1.1 Send): the code to answer with."""


class ServerRequestError(Exception):
    """A request to a client failed without a CoAP answer (timeout, socket); str() says why.

    `unreachable`: the client's host said nothing listens there (ICMP port unreachable).
    """

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


@dataclass(frozen=True, slots=True)
class Response:
    """A client's answer to a server request."""

    code: Code
    payload: bytes
    content_format: int | None
    # Location-Path of a Create's answer: the new instance.
    location: tuple[str, ...] = ()
    # Only the first block of a larger body (a notification; see Lwm2mServer.observe).
    partial: bool = False

    @property
    def success(self) -> bool:
        """A 2.xx answer."""
        return bool(self.code.is_successful())

    def describe(self) -> str:
        """The code and any diagnostic payload, for reasons shown to users."""
        text = f"{self.code.dotted} {self.code.name_printable}"
        if not self.success and self.payload:
            detail = self.payload[:120].decode("utf-8", errors="replace").strip()
            if detail.isprintable():
                text += f": {detail}"
        return text


def check_port_free(host: str, port: int) -> None:
    """Refuse a port someone else holds, before aiocoap binds it.

    aiocoap's UDP transport sets SO_REUSEPORT, so binding a taken port would *succeed* and
    the kernel would split the datagrams between both programs (Home Assistant's Shelly
    integration binds 5683 too). A plain bind without that option tells the truth.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise BridgeStartError(f"UDP port {port} on {host} is already in use") from err
            raise BridgeStartError(f"cannot listen on {host}:{port}: {err.strerror}") from err


def _bind_address(host: str) -> str:
    """aiocoap listens on an IPv6 socket: IPv4 addresses become IPv4-mapped ones."""
    address = ipaddress.ip_address(host)
    if address.version == 6:
        return host
    return "::" if address.is_unspecified else f"::ffff:{host}"


class _Root(aiocoap.resource.Resource, aiocoap.resource.PathCapable):  # type: ignore[misc]
    """Every request to the server's port; only /rd (and /rd/<id>) exist."""

    def __init__(self, server: Lwm2mServer) -> None:
        super().__init__()
        self._server = server

    async def render(self, request: aiocoap.Message) -> aiocoap.Message:
        return self._server.handle(request)


class Lwm2mServer:
    """Registration interface and server-initiated requests on one UDP port."""

    def __init__(
        self,
        host: str,
        port: int,
        listener: RegistrationListener,
        *,
        rejects: RejectLog | None = None,
        clock: Callable[[], float] = time.monotonic,
        limits: AdmissionLimits | None = None,
        known: Callable[[str], bool] = lambda _endpoint: False,
    ) -> None:
        self.host = host
        self.port = port
        self.registrations = RegistrationStore(clock)
        self.rejects = rejects or RejectLog(_LOGGER)
        self._listener = listener
        self._context: aiocoap.Context | None = None
        self._expiry_task: asyncio.Task[None] | None = None
        self._cancel_timers: Callable[[], None] = lambda: None
        # One exchange at a time per client (see _exchange).
        self._turns: dict[str, asyncio.Lock] = {}
        # Who last sent from an address (Send carries no registration id): checked on use.
        self._senders: dict[Any, str] = {}
        # Admission control (admission.py): what one sender may cost the others.
        self.limits = limits or AdmissionLimits()
        self._known = known
        self._clock = clock
        self._request_limit = RateLimiter(
            self.limits.request_rate, self.limits.request_burst, clock=clock
        )
        self._register_limit = RateLimiter(
            self.limits.register_rate, self.limits.register_burst, clock=clock
        )
        self._warned = FirstSight()
        # Endpoints registered that were not devices yet when they registered.
        self._pending: dict[str, None] = {}
        self._pruned_at = -_PRUNE_INTERVAL

    @property
    def running(self) -> bool:
        """Whether the socket is bound."""
        return self._context is not None

    async def start(self) -> None:
        """Bind the port (refusing one already in use) and start watching lifetimes."""
        check_port_free(self.host, self.port)
        root = _Root(self)
        try:
            context = await aiocoap.Context.create_server_context(
                root, bind=(_bind_address(self.host), self.port), transports=["udp6"]
            )
        except OSError as err:
            raise BridgeStartError(f"cannot listen on {self.host}:{self.port}: {err}") from err
        _tune_socket(context)
        _guard_datagrams(context, self._screen, self._bad_datagram)
        _shorten_deduplication(context)
        _UNPARSABLE.attach(self._bad_datagram)
        cancel_timers = track_timers(context)

        def cancel_all_timers() -> None:
            cancel_timers()
            _forget_blockwise(root)

        self._cancel_timers = cancel_all_timers
        self._context = context
        self._expiry_task = asyncio.create_task(self._expire_forever(), name="iot_bridge_lwm2m")

    async def stop(self) -> None:
        """Close the socket and end the lifetime watch; leaves nothing running."""
        task, self._expiry_task = self._expiry_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        context, self._context = self._context, None
        if context is not None:
            _UNPARSABLE.detach(self._bad_datagram)
            await shutdown(context, self._cancel_timers)

    def _bad_datagram(self, source: str, problem: str) -> None:
        """A datagram that is not CoAP (or that aiocoap choked on): count it, log it once."""
        self._drop(source, "malformed datagram", lambda: problem)

    def _screen(self, data: bytes, address: Any) -> bool:
        """Whether a datagram may go on to aiocoap: the cheap checks before any parsing.

        Dropped: what cannot be CoAP (short, another version, a token over 8 bytes, a code
        class nobody uses, a type and code that do not fit, which aiocoap would log once per
        datagram) and requests beyond a source's request rate.
        """
        if (
            len(data) < 4
            or data[0] & 0xC0 != 0x40
            or data[0] & 0x0F > 8
            or data[1] >> 5 in _NO_CLASS
            or (data[0] & 0x30 == 0x30 and data[1])  # a Reset carries no code
            or (data[0] & 0x30 == 0x20 and 0 < data[1] < 32)  # an ACK carries no request
        ):
            self._drop(_key(address), "malformed datagram", lambda: "not a CoAP message")
            return False
        if 0 < data[1] < 32:  # a request (answers and notifications are never limited)
            key = _key(address)
            if not self._request_limit.allow(key):
                rate = self.limits.request_rate
                self._drop(key, "requests", lambda: f"more than {rate:g} requests/s")
                return False
        return True

    def _drop(self, source: Any, cause: str, problem: Callable[[], str]) -> None:
        """Count a dropped or refused request; warn the first time per source and cause
        only (the line is built only then: a flood costs a dictionary look-up a datagram)."""
        if not self._warned.first((cause, source)):
            self.rejects.counts[cause] += 1
            return
        shown = _address(source) if isinstance(source, tuple) else str(source)
        self.rejects.reject(
            shown,
            cause,
            f"LwM2M server: dropping {cause} from {shown}: {problem()} "
            "(counted in diagnostics from now on, not logged again)",
        )

    # -- registration interface -----------------------------------------------------------

    def handle(self, request: aiocoap.Message) -> aiocoap.Message:
        """Answer one request to the registration interface."""
        path = request.opt.uri_path
        try:
            if path == ("rd",):
                return self._register(request)
            if len(path) == 2 and path[0] == "rd":
                return self._update_or_deregister(request, path[1])
            if path == ("dp",):
                return self._send(request)
        except UnknownRegistration as err:
            return _answer(aiocoap.NOT_FOUND, str(err))
        except RegistrationError as err:
            sender = _sender(request)
            self.rejects.reject(
                sender, "registration", f"Refused LwM2M request from {sender}: {err}"
            )
            return _answer(aiocoap.BAD_REQUEST, str(err))
        return _answer(aiocoap.NOT_FOUND, "this server offers /rd and /dp only")

    def _send(self, request: aiocoap.Message) -> aiocoap.Message:
        """LwM2M 1.1 Send (`POST /dp`, SenML): values from a registered client."""
        if request.code != aiocoap.POST:
            return _answer(aiocoap.METHOD_NOT_ALLOWED, "send with POST")
        source = _source(request)
        registration = self._sender_registration(request.remote)
        if registration is None:
            self.rejects.reject(
                source, "send", f"Dropped an LwM2M Send from {source}: no client registered there"
            )
            return _answer(aiocoap.NOT_FOUND, "register before sending")
        content_format = request.opt.content_format
        if content_format not in _SEND_FORMATS:
            self.rejects.reject(
                registration.endpoint,
                "send",
                f"Dropped an LwM2M Send from {registration.endpoint}: content format "
                f"{content_format} is not SenML JSON (110) or SenML CBOR (112)",
            )
            return _answer(aiocoap.UNSUPPORTED_CONTENT_FORMAT, "Send needs SenML (110 or 112)")
        registration = self.registrations.touch(registration.registration_id, request.remote)
        if registration is None:  # pragma: no cover - found just above
            return _answer(aiocoap.NOT_FOUND, "register before sending")
        return aiocoap.Message(
            code=self._listener.sent(registration, int(content_format), request.payload)
        )

    def _sender_registration(self, remote: Any) -> Registration | None:
        registration_id = self._senders.get(remote)
        registration = self.registrations.by_id(registration_id) if registration_id else None
        if registration is not None and registration.remote == remote:
            return registration
        self._senders.pop(remote, None)
        for candidate in self.registrations:
            if candidate.remote == remote:
                if len(self._senders) > _MAX_SENDERS:
                    self._senders.clear()
                self._senders[remote] = candidate.registration_id
                return candidate
        return None

    def _register(self, request: aiocoap.Message) -> aiocoap.Message:
        if request.code != aiocoap.POST:
            return _answer(aiocoap.METHOD_NOT_ALLOWED, "register with POST")
        refusal = self._admit(request)
        if refusal is not None:
            return refusal
        _check_link_format(request)
        registration, previous = self.registrations.register(
            request.opt.uri_query, request.payload, request.remote
        )
        if not self._known(registration.endpoint):
            self._pending[registration.endpoint] = None
        self.rejects.accept(_sender(request), "registration")
        _LOGGER.debug(
            "LwM2M client %s registered from %s as %s (lifetime %s s, binding %s)",
            registration.endpoint,
            _source(request),
            registration.registration_id,
            registration.lifetime,
            registration.binding,
        )
        self._listener.registered(registration, previous)
        return aiocoap.Message(code=aiocoap.CREATED, location_path=registration.location)

    def _admit(self, request: aiocoap.Message) -> aiocoap.Message | None:
        """A 5.03 (with Max-Age: when to try again) for a Register over the limits."""
        source = _source(request)
        if not self._register_limit.allow(source):
            wait = max(1, int(self._register_limit.retry_after(source) + 0.999))
            rate = self.limits.register_rate
            self._drop(source, "registrations", lambda: f"more than {rate:g} Registers/s")
            return _busy(f"too many registrations from {source}", wait)
        name = _endpoint_name(request)
        if name is None or self._admissible(name):
            return None
        limit = self.limits.max_pending
        self._drop(
            source,
            "registrations of new endpoints",
            lambda: f"{limit} new endpoints are waiting to become devices already",
        )
        return _busy("too many new endpoints waiting", _PENDING_RETRY)

    def _admissible(self, name: str) -> bool:
        """Known devices and registered endpoints always; new ones while there is room."""
        if name in self._pending or self.registrations.by_endpoint(name) or self._known(name):
            return True
        pending, limit = self._pending, self.limits.max_pending
        if len(pending) < limit:
            return True
        # Oldest first, endpoints that became devices (or went away) leave the count: a
        # fleet registering in waves frees the room its earlier waves took at once.
        by_endpoint = self.registrations.by_endpoint
        while pending:
            oldest = next(iter(pending))
            if by_endpoint(oldest) and not self._known(oldest):
                break
            del pending[oldest]
        if len(pending) < limit:
            return True
        # Someone old still waits (for the user, say): look at all of them, now and then.
        now = self._clock()
        if now - self._pruned_at >= _PRUNE_INTERVAL:
            self._pruned_at = now
            self._pending = {n: None for n in pending if by_endpoint(n) and not self._known(n)}
        return len(self._pending) < limit

    @property
    def pending(self) -> int:
        """Registered endpoints counted against the pending cap (some may be devices now)."""
        return len(self._pending)

    def _update_or_deregister(
        self, request: aiocoap.Message, registration_id: str
    ) -> aiocoap.Message:
        if request.code == aiocoap.DELETE:
            registration = self.registrations.deregister(registration_id)
            _LOGGER.debug("LwM2M client %s de-registered", registration.endpoint)
            self._listener.deregistered(registration, expired=False)
            return aiocoap.Message(code=aiocoap.DELETED)
        if request.code != aiocoap.POST:
            return _answer(aiocoap.METHOD_NOT_ALLOWED, "update with POST, de-register with DELETE")
        if request.payload:
            _check_link_format(request)
        registration, previous = self.registrations.update(
            registration_id, request.opt.uri_query, request.payload, request.remote
        )
        self._listener.updated(registration, previous)
        return aiocoap.Message(code=aiocoap.CHANGED)

    async def _expire_forever(self) -> None:
        while True:
            await asyncio.sleep(_EXPIRY_TICK)
            for registration in self.registrations.expired():
                _LOGGER.debug("LwM2M client %s: lifetime expired", registration.endpoint)
                self._listener.deregistered(registration, expired=True)

    # -- device management (server -> client) ----------------------------------------------

    def _message(
        self,
        registration: Registration,
        code: Code,
        path: str,
        *,
        payload: bytes = b"",
        content_format: int | None = None,
        accept: int | None = None,
        query: tuple[str, ...] = (),
        observe: int | None = None,
    ) -> aiocoap.Message:
        root = registration.objects.root.strip("/")
        segments = tuple(s for s in (root, *path.strip("/").split("/")) if s)
        message = aiocoap.Message(code=code, uri_path=segments, uri_query=query, payload=payload)
        message.remote = registration.remote
        if content_format is not None:
            message.opt.content_format = content_format
        if accept is not None:
            message.opt.accept = accept
        if observe is not None:
            message.opt.observe = observe
        return message

    async def request(
        self,
        registration: Registration,
        code: Code,
        path: str,
        *,
        timeout: float,
        payload: bytes = b"",
        content_format: int | None = None,
        accept: int | None = None,
        query: tuple[str, ...] = (),
    ) -> Response:
        """One confirmable request to a client, answered within `timeout` seconds or failed.

        Never sent after the timeout, and its retransmissions end within it: see _exchange.
        """
        message = self._message(
            registration,
            code,
            path,
            payload=payload,
            content_format=content_format,
            accept=accept,
            query=query,
        )
        # A POST or PUT (Execute, Write, Write-Attributes, Create) that fits one block goes
        # without aiocoap's block-wise layer: it costs a task and a repr of the message (an
        # address parsed, an interface looked up) per request, a third of an Execute's own
        # CPU time (docs/benchmarks.md); these answers carry a code, not a body to assemble.
        blockwise = code not in (aiocoap.POST, aiocoap.PUT) or len(payload) > _ONE_BLOCK
        _, answer = await self._exchange(registration, message, timeout, blockwise=blockwise)
        return _response(answer)

    async def observe(
        self,
        registration: Registration,
        path: str,
        *,
        timeout: float,
        on_notification: Callable[[Response], None],
        on_end: Callable[[], None],
        accept: int | None = None,
    ) -> tuple[Response, Following | None]:
        """Start observing `path`: the first answer, and the observation when it runs.

        Each notification is handed to `on_notification` as it arrives (no task waits for
        it: at fleet size a task per observation was ~1.5 KiB per endpoint); `on_end` runs
        once when the client ends the observation or it fails. `Following.stop` ends it on
        our side only; `cancel_observation` tells the client on the wire.

        Without aiocoap's block-wise layer (two more tasks per observation, ~2.5 KiB per
        endpoint at fleet size): an answer or notification larger than one block arrives
        as its first block, `partial`, and the caller reads the path whole (RFC 7959 2.6).
        """
        message = self._message(registration, aiocoap.GET, path, accept=accept, observe=0)
        pending, answer = await self._exchange(registration, message, timeout, blockwise=False)
        observation = pending.observation
        if observation.cancelled:  # answered without Observe: nothing follows
            return _response(answer), None
        return _response(answer), Following(observation, on_notification, on_end)

    async def cancel_observation(
        self, registration: Registration, path: str, *, timeout: float
    ) -> None:
        """Tell the client to stop notifying: GET with Observe: 1 on the same path.

        aiocoap's own cancel only forgets the observation locally. The cancel carries a new
        token (aiocoap assigns tokens), which clients that match the path honour; one that
        matches tokens gets a Reset for its next confirmable notification instead.
        """
        message = self._message(registration, aiocoap.GET, path, observe=1)
        with contextlib.suppress(ServerRequestError):
            await self._exchange(registration, message, timeout)

    async def _exchange(
        self,
        registration: Registration,
        message: aiocoap.Message,
        timeout: float,
        *,
        blockwise: bool = True,
    ) -> tuple[Any, aiocoap.Message]:
        """Send one request and wait for its answer, within `timeout` seconds.

        aiocoap keeps one exchange per client open at a time and queues the rest; a request
        it queued could go out after its caller gave up, and its retransmissions would run
        on after a timeout. So requests to a client take turns here (never queued inside
        aiocoap), each with retransmission timing that ends within its own time.
        """
        context = self._require_context()
        loop = asyncio.get_running_loop()
        until = loop.time() + max(0.0, timeout)
        lock = self._turns.get(registration.endpoint)
        if lock is None:  # not setdefault: that builds a Lock for every request
            lock = self._turns[registration.endpoint] = asyncio.Lock()
        try:
            async with asyncio.timeout_at(until):
                async with lock:
                    message.transport_tuning = _tuning_within(until - loop.time())
                    pending = context.request(message, handle_blockwise=blockwise)
                    try:
                        answer = await pending.response
                    except BaseException:
                        pending.response.cancel()
                        raise
        except (TimeoutError, aiocoap.error.ConRetransmitsExceeded):
            raise ServerRequestError(f"no answer within {timeout:.3g} s") from None
        except aiocoap.error.NetworkError as err:
            message = str(err) or type(err).__name__
            raise ServerRequestError(message, unreachable=True) from err
        except aiocoap.error.Error as err:
            raise ServerRequestError(str(err) or type(err).__name__) from err
        finally:
            if not lock.locked() and not lock._waiters:
                self._turns.pop(registration.endpoint, None)
        return pending, answer

    def _require_context(self) -> aiocoap.Context:
        if self._context is None:
            raise ServerRequestError("the LwM2M server is not running")
        return self._context


@functools.cache
def _tuning(ack_timeout: float, retransmits: int) -> aiocoap.numbers.TransportTuning:
    class WithinDeadline(aiocoap.numbers.TransportTuning):  # type: ignore[misc]
        ACK_TIMEOUT = ack_timeout
        MAX_RETRANSMIT = retransmits

    return WithinDeadline()


def _tuning_within(seconds: float) -> aiocoap.numbers.TransportTuning:
    """Retransmission timing whose last transmission and give-up fall within `seconds`.

    CoAP waits ACK_TIMEOUT x (1 to 1.5) and doubles it per retransmission: giving up takes
    up to ACK_TIMEOUT x 1.5 x (2^(n+1) - 1) for n retransmissions. The standard timing
    (2 s, 4 retransmissions: 93 s) is kept where it fits; shorter times send fewer
    retransmissions, and below 4.5 s a shorter ACK_TIMEOUT keeps one retransmission.
    """
    for retransmits in range(_STANDARD_RETRANSMITS, 0, -1):
        if _STANDARD_ACK_TIMEOUT * 1.5 * (2 ** (retransmits + 1) - 1) <= seconds:
            return _tuning(_STANDARD_ACK_TIMEOUT, retransmits)
    ack_timeout = max(_MIN_ACK_TIMEOUT, round(seconds / (1.5 * 3), 2))
    return _tuning(ack_timeout, 1)


def _response(message: aiocoap.Message) -> Response:
    block2 = message.opt.block2
    return Response(
        message.code,
        message.payload,
        message.opt.content_format,
        tuple(message.opt.location_path),
        partial=block2 is not None and bool(block2.more),
    )


class Following:
    """A running observation: aiocoap calls us for each notification and at its end.

    aiocoap 0.4.17 marks its callback interface deprecated in favour of `async for`, which
    needs a task per observation; its own iterator registers through the same callbacks
    (with `_suppress_deprecation`), as this does. test_lwm2m_bridge covers notifications
    and an ended observation.
    """

    __slots__ = ("_observation", "_on_end", "_on_notification")

    def __init__(
        self,
        observation: Any,
        on_notification: Callable[[Response], None],
        on_end: Callable[[], None],
    ) -> None:
        self._observation: Any = observation
        self._on_notification = on_notification
        self._on_end = on_end
        observation.register_callback(self._notified, _suppress_deprecation=True)
        observation.register_errback(self._ended, _suppress_deprecation=True)

    # aiocoap calls these inside its receive call and acknowledges a confirmable
    # notification only after they return, and a client sends its next confirmable
    # notification only after that ACK (one outstanding per peer). So the work waits for
    # the next loop turn, in arrival order: a lock that opens a door (two notifications)
    # is confirmed without the second one waiting for the first one's state writes.
    def _notified(self, message: aiocoap.Message) -> None:
        asyncio.get_running_loop().call_soon(self._deliver, message)

    def _ended(self, err: BaseException) -> None:
        asyncio.get_running_loop().call_soon(self._end, err)

    def _deliver(self, message: aiocoap.Message) -> None:
        if self._observation is None:
            return
        try:
            self._on_notification(_response(message))
        except Exception:  # aiocoap's receive path must not see our errors
            _LOGGER.exception("Handling a notification failed")

    def _end(self, err: BaseException) -> None:
        if self._observation is None:
            return
        self._observation = None
        if not isinstance(err, aiocoap.error.NotObservable | aiocoap.error.ObservationCancelled):
            _LOGGER.debug("Observation ended: %s", err)
        self._on_end()

    def stop(self) -> None:
        """Stop listening (our side only); nothing is called after this."""
        observation, self._observation = self._observation, None
        if observation is None:
            return
        # Cancelled on the next loop turn: aiocoap starts the task that ends its lower
        # observation when the first answer arrives, and a task cancelled before its first
        # step never runs its clean-up (the client would be ACKed for ever, never RST).
        asyncio.get_running_loop().call_soon(_cancel_observation, observation)


def _cancel_observation(observation: Any) -> None:
    if not observation.cancelled:
        observation.cancel()


def _answer(code: Code, reason: str) -> aiocoap.Message:
    """An error answer with its reason as diagnostic payload (RFC 7252, 5.5.2)."""
    return aiocoap.Message(code=code, payload=reason.encode("utf-8")[:200])


def _busy(reason: str, max_age: int) -> aiocoap.Message:
    """5.03 Service Unavailable: try again after Max-Age seconds (RFC 7252 5.9.3.4)."""
    message = _answer(aiocoap.SERVICE_UNAVAILABLE, reason)
    message.opt.max_age = max_age
    return message


def _endpoint_name(request: aiocoap.Message) -> str | None:
    for item in request.opt.uri_query:
        name, _, value = item.partition("=")
        if name == "ep":
            return str(value)
    return None


def _key(address: Any) -> Any:
    """A datagram's source as a cheap dictionary key: (host, port)."""
    return address[:2] if isinstance(address, tuple) else address


def _check_link_format(request: aiocoap.Message) -> None:
    content_format = request.opt.content_format
    if content_format not in (None, _LINK_FORMAT):
        raise RegistrationError(f"object list must be link-format (40), not {content_format}")


def _source(request: aiocoap.Message) -> str:
    """The client's address and port for log lines and per-sender limits."""
    try:
        return str(request.remote.hostinfo)
    except AttributeError:
        return "?"


def _sender(request: aiocoap.Message) -> str:
    """Who a registration request is from: its endpoint name when it gives one (the same
    client from a new port is the same client), else its address."""
    for item in request.opt.uri_query:
        name, _, value = item.partition("=")
        if name == "ep" and value:
            return f"endpoint {value[:64]!r}"
    return _source(request)


def _message_interfaces(context: aiocoap.Context) -> list[Any]:
    interfaces = []
    for interface in getattr(context, "request_interfaces", ()):
        message_interface = getattr(
            getattr(interface, "token_interface", None), "message_interface", None
        )
        if message_interface is not None:
            interfaces.append(message_interface)
    return interfaces


def _tune_socket(context: aiocoap.Context) -> None:
    """Make our bound socket exclusive and give it room for registration storms.

    SO_REUSEPORT is cleared so nobody can bind the port after us and silently take half of
    the datagrams. The receive buffer is raised because a burst of a thousand Register
    requests overflows the default ~200 KiB and the kernel drops the rest (the clients
    only retry seconds later); the kernel caps it at net.core.rmem_max.
    """
    for message_interface in _message_interfaces(context):
        transport = getattr(message_interface, "transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None:
            continue
        with contextlib.suppress(OSError):
            if hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 0)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)


def _guard_datagrams(
    context: aiocoap.Context,
    screen: Callable[[bytes, Any], bool],
    report: Callable[[str, str], None],
) -> None:
    """Screen every datagram before aiocoap parses it (cheap drops), and catch what
    aiocoap does not: only its own parse error is handled there; other garbage (bad UTF-8
    in a text option, ...) escapes to the event loop as an error with a traceback."""
    for message_interface in _message_interfaces(context):
        received = message_interface.datagram_msg_received

        def guarded(
            data: bytes, ancdata: Any, flags: int, address: Any, received: Any = received
        ) -> None:
            if not screen(data, address):
                return
            try:
                received(data, ancdata, flags, address)
            except Exception as err:
                report(_address(address), f"{type(err).__name__}: {str(err)[:80]}")

        message_interface.datagram_msg_received = guarded


class _LocalNetwork(aiocoap.numbers.TransportTuning):  # type: ignore[misc]
    """A request's duplicates arrive within MAX_TRANSMIT_SPAN (45 s) plus the network's
    latency; RFC 7252 allows 100 s of latency each way, which makes aiocoap remember every
    request it received for 247 s (a timer, its key and the answer). At 10,000 clients
    updating every 48 s that is six remembered Updates per client, and a flooder's
    accepted requests are remembered just as long. With 10 s it is 67 s."""

    MAX_LATENCY = 10.0


def _shorten_deduplication(context: aiocoap.Context) -> None:
    """Remember received requests (to answer their duplicates) for 67 s, not 247 s.

    Registration requests are safe to see twice after that: a second Register replaces
    the first, an Update only refreshes, a De-register of a gone registration gets 4.04.
    """
    tuning = _LocalNetwork()
    for interface in getattr(context, "request_interfaces", ()):
        # aiocoap's MessageManager: the layer between tokens and the UDP transport.
        manager = getattr(interface, "token_interface", None)
        deduplicate = getattr(manager, "_deduplicate_message", None)
        if deduplicate is None:
            continue

        def remembered(message: aiocoap.Message, deduplicate: Any = deduplicate) -> Any:
            message.transport_tuning = tuning
            return deduplicate(message)

        manager._deduplicate_message = remembered  # type: ignore[union-attr]


def _forget_blockwise(resource: Any) -> None:
    """Cancel the timers of aiocoap's blockwise spools on our resource: a request with a
    Block option (a large object list, or a flooder's garbage) starts one that outlives
    `Context.shutdown()`."""
    for spool, name in (
        (getattr(resource, "_block1", None), "_assemblies"),
        (getattr(resource, "_block2", None), "_completes"),
    ):
        timeouts = getattr(spool, name, None)
        handle = getattr(timeouts, "_timeout", None)
        if handle is not None:
            handle.cancel()
            timeouts._timeout = None  # type: ignore[union-attr]


def _address(address: Any) -> str:
    try:
        host, port = address[0], address[1]
    except (IndexError, TypeError):
        return "?"
    return f"[{host}]:{port}"


class _UnparsableFilter(logging.Filter):
    """Turns aiocoap's per-datagram "Ignoring unparsable message" warning into a counted,
    once-per-sender rejection (a flood of garbage must not flood the log)."""

    def __init__(self) -> None:
        super().__init__()
        self._reporters: list[Callable[[str, str], None]] = []

    def attach(self, reporter: Callable[[str, str], None]) -> None:
        if not self._reporters:
            logging.getLogger("coap-server").addFilter(self)
        self._reporters.append(reporter)

    def detach(self, reporter: Callable[[str, str], None]) -> None:
        with contextlib.suppress(ValueError):
            self._reporters.remove(reporter)
        if not self._reporters:
            logging.getLogger("coap-server").removeFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Ignoring unparsable message"):
            return True
        source = _address(record.args[0]) if isinstance(record.args, tuple) and record.args else "?"
        for reporter in self._reporters:
            reporter(source, "not a CoAP message")
        return False


_UNPARSABLE = _UnparsableFilter()
