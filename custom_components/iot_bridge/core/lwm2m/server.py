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
import ipaddress
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

import aiocoap
import aiocoap.error
import aiocoap.resource
from aiocoap.numbers.codes import Code

from ..bridge import BridgeStartError
from ..coap_timers import shutdown, track_timers
from ..devices import RejectLog
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


class RegistrationListener(Protocol):
    """What the owner (the LwM2M bridge) hears from the registration interface."""

    def registered(self, registration: Registration, previous: Registration | None) -> None:
        """A client registered (previous: the registration it replaced)."""

    def updated(self, registration: Registration, previous: Registration) -> None:
        """A client updated its registration (lifetime, binding, objects or address)."""

    def deregistered(self, registration: Registration, *, expired: bool) -> None:
        """A client de-registered, or its lifetime lapsed without an Update."""


class ServerRequestError(Exception):
    """A request to a client failed without a CoAP answer (timeout, socket); str() says why."""


@dataclass(frozen=True, slots=True)
class Response:
    """A client's answer to a server request."""

    code: Code
    payload: bytes
    content_format: int | None

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
    ) -> None:
        self.host = host
        self.port = port
        self.registrations = RegistrationStore(clock)
        self.rejects = rejects or RejectLog(_LOGGER)
        self._listener = listener
        self._context: aiocoap.Context | None = None
        self._expiry_task: asyncio.Task[None] | None = None
        self._cancel_timers: Callable[[], None] = lambda: None

    @property
    def running(self) -> bool:
        """Whether the socket is bound."""
        return self._context is not None

    async def start(self) -> None:
        """Bind the port (refusing one already in use) and start watching lifetimes."""
        check_port_free(self.host, self.port)
        try:
            context = await aiocoap.Context.create_server_context(
                _Root(self), bind=(_bind_address(self.host), self.port), transports=["udp6"]
            )
        except OSError as err:
            raise BridgeStartError(f"cannot listen on {self.host}:{self.port}: {err}") from err
        _exclusive(context)
        self._cancel_timers = track_timers(context)
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
            await shutdown(context, self._cancel_timers)

    # -- registration interface -----------------------------------------------------------

    def handle(self, request: aiocoap.Message) -> aiocoap.Message:
        """Answer one request to the registration interface."""
        path = request.opt.uri_path
        try:
            if path == ("rd",):
                return self._register(request)
            if len(path) == 2 and path[0] == "rd":
                return self._update_or_deregister(request, path[1])
        except UnknownRegistration as err:
            return _answer(aiocoap.NOT_FOUND, str(err))
        except RegistrationError as err:
            self.rejects.reject(
                _source(request),
                "registration",
                f"Refused LwM2M request from {_source(request)}: {err}",
            )
            return _answer(aiocoap.BAD_REQUEST, str(err))
        return _answer(aiocoap.NOT_FOUND, "this server offers /rd only")

    def _register(self, request: aiocoap.Message) -> aiocoap.Message:
        if request.code != aiocoap.POST:
            return _answer(aiocoap.METHOD_NOT_ALLOWED, "register with POST")
        _check_link_format(request)
        registration, previous = self.registrations.register(
            request.opt.uri_query, request.payload, request.remote
        )
        self.rejects.accept(_source(request), "registration")
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

        aiocoap waits for a separate response forever after an empty ACK, so the timeout is
        ours; the caller derives it from its own deadline.
        """
        context = self._require_context()
        message = self._message(
            registration,
            code,
            path,
            payload=payload,
            content_format=content_format,
            accept=accept,
            query=query,
        )
        pending = context.request(message)
        try:
            answer = await asyncio.wait_for(pending.response, timeout=max(0.0, timeout))
        except TimeoutError:
            pending.response.cancel()
            raise ServerRequestError(f"no answer within {timeout:.3g} s") from None
        except aiocoap.error.Error as err:
            raise ServerRequestError(str(err) or type(err).__name__) from err
        return Response(answer.code, answer.payload, answer.opt.content_format)

    async def observe(
        self,
        registration: Registration,
        path: str,
        *,
        timeout: float,
        accept: int | None = None,
    ) -> tuple[Response, AsyncIterator[Response]]:
        """Start observing `path`: the first answer, and the notifications that follow.

        The iterator ends when the client cancels or the observation fails; stopping it
        from our side is `cancel_observation`, which tells the client on the wire.
        """
        context = self._require_context()
        message = self._message(registration, aiocoap.GET, path, accept=accept, observe=0)
        pending = context.request(message)
        try:
            answer = await asyncio.wait_for(pending.response, timeout=max(0.0, timeout))
        except TimeoutError:
            pending.observation.cancel()
            raise ServerRequestError(f"no answer within {timeout:.3g} s") from None
        except aiocoap.error.Error as err:
            raise ServerRequestError(str(err) or type(err).__name__) from err
        first = Response(answer.code, answer.payload, answer.opt.content_format)
        return first, _notifications(pending)

    async def cancel_observation(
        self, registration: Registration, path: str, *, timeout: float
    ) -> None:
        """Tell the client to stop notifying (GET with Observe: 1); aiocoap's own cancel
        only forgets the observation locally."""
        with contextlib.suppress(ServerRequestError):
            context = self._require_context()
            message = self._message(registration, aiocoap.GET, path, observe=1)
            pending = context.request(message)
            try:
                await asyncio.wait_for(pending.response, timeout=max(0.0, timeout))
            except (TimeoutError, aiocoap.error.Error):
                pending.response.cancel()

    def _require_context(self) -> aiocoap.Context:
        if self._context is None:
            raise ServerRequestError("the LwM2M server is not running")
        return self._context


async def _notifications(pending: Any) -> AsyncIterator[Response]:
    try:
        async for notification in pending.observation:
            yield Response(notification.code, notification.payload, notification.opt.content_format)
    except aiocoap.error.Error as err:
        _LOGGER.debug("Observation ended: %s", err)
    finally:
        pending.observation.cancel()


def _answer(code: Code, reason: str) -> aiocoap.Message:
    """An error answer with its reason as diagnostic payload (RFC 7252, 5.5.2)."""
    return aiocoap.Message(code=code, payload=reason.encode("utf-8")[:200])


def _check_link_format(request: aiocoap.Message) -> None:
    content_format = request.opt.content_format
    if content_format not in (None, _LINK_FORMAT):
        raise RegistrationError(f"object list must be link-format (40), not {content_format}")


def _source(request: aiocoap.Message) -> str:
    """The client's address for log lines (host only: ports change with NAT)."""
    try:
        return str(request.remote.hostinfo).rsplit(":", 1)[0].strip("[]") or "?"
    except (AttributeError, ValueError):
        return "?"


def _exclusive(context: aiocoap.Context) -> None:
    """Clear SO_REUSEPORT on our bound socket, so nobody can bind the port after us and
    silently take half of the datagrams."""
    for interface in getattr(context, "request_interfaces", ()):
        message_interface = getattr(
            getattr(interface, "token_interface", None), "message_interface", None
        )
        transport = getattr(message_interface, "transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None and hasattr(socket, "SO_REUSEPORT"):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 0)
