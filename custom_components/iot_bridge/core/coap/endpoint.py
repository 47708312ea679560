"""IoT Bridge's CoAP client socket: aiocoap, plus what aiocoap 0.4.17 does not offer in public.

aiocoap does the message layer (message ids, retransmission, deduplication, block-wise,
Observe). Three things the confirmed-command contract needs are not in its public API, and
live here, in one place, against the pinned version (tests/test_coap_devices.py fails if
an upgrade breaks them: test_separate_response_confirms for the ACK,
test_unload_cancels_observations_on_the_wire for the deregistration):

- knowing when a request was *acknowledged* (an empty ACK means delivered; the response
  that follows is the outcome): we watch the ACK/RST messages the context receives;
- cancelling an observation *on the wire* (`observation.cancel()` tells nobody): a GET with
  Observe=1 must carry the registration's token, which aiocoap's request API always
  replaces, so it goes to the message layer directly;
- addressing a device without aiocoap's route check (a connect() on a UDP socket, which
  Home Assistant's test harness refuses): we resolve the host ourselves.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from aiocoap import Context, Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.constants import TransportTuning
from aiocoap.numbers.types import ACK, RST
from aiocoap.transports.udp6 import UDP6EndpointAddress

_LOGGER = logging.getLogger(__name__)

# RFC 7252 defaults; commands shrink them to fit their deadline (retransmission_plan).
DEFAULT_ACK_TIMEOUT: Final = 2.0
ACK_RANDOM_FACTOR: Final = 1.5
MAX_RETRANSMIT: Final = 4
# Every command may be retransmitted at least this often, however short its deadline.
MIN_RETRANSMIT: Final = 2
MIN_ACK_TIMEOUT: Final = 0.05


class EndpointError(Exception):
    """The device cannot be addressed (unknown host, no socket)."""


class CoapTuning(TransportTuning):  # type: ignore[misc]  # aiocoap has no type hints
    """Per-message retransmission timing (aiocoap reads it from message.transport_tuning)."""

    def __init__(self, ack_timeout: float, max_retransmit: int, reliable: bool = True) -> None:
        self.ACK_TIMEOUT = ack_timeout
        self.MAX_RETRANSMIT = max_retransmit
        self.reliability = reliable


@dataclass(frozen=True, slots=True)
class RetransmissionPlan:
    """When a confirmable message is sent again if no ACK comes."""

    ack_timeout: float
    max_retransmit: int

    @property
    def last_send(self) -> float:
        """Latest time (seconds after the first send) of the last retransmission."""
        return float(self.ack_timeout * ACK_RANDOM_FACTOR * (2**self.max_retransmit - 1))

    def tuning(self) -> CoapTuning:
        """The aiocoap tuning that follows this plan."""
        return CoapTuning(self.ack_timeout, self.max_retransmit)


def retransmission_plan(budget: float) -> RetransmissionPlan:
    """Retransmission timing whose last copy leaves within `budget` seconds.

    A command must never reach a device after its deadline, and aiocoap keeps
    retransmitting a request even after nobody waits for it any more. So a command's
    retransmissions are planned to end in time: RFC timing where it fits, else shorter
    timeouts (at least MIN_RETRANSMIT retransmissions, spread over the budget).
    """
    budget = max(0.0, budget)
    for count in range(MAX_RETRANSMIT, MIN_RETRANSMIT - 1, -1):
        plan = RetransmissionPlan(DEFAULT_ACK_TIMEOUT, count)
        if plan.last_send <= budget:
            return plan
    spread = ACK_RANDOM_FACTOR * (2**MIN_RETRANSMIT - 1)
    ack_timeout = budget / spread
    if ack_timeout < MIN_ACK_TIMEOUT:
        return RetransmissionPlan(MIN_ACK_TIMEOUT, 0)
    return RetransmissionPlan(ack_timeout, MIN_RETRANSMIT)


class _DeviceAddress(UDP6EndpointAddress):  # type: ignore[misc]  # aiocoap has no type hints
    """A device's unicast address. aiocoap asks every outgoing message whether its remote is
    multicast and parses the address each time to find out; a device's never is."""

    is_multicast = False


def _sockaddr(info: tuple[Any, ...]) -> tuple[str, int, int, int]:
    """aiocoap's udp6 socket is IPv6: IPv4 addresses are written v4-mapped."""
    family, *_, address = info
    if family == socket.AF_INET:
        return (f"::ffff:{address[0]}", address[1], 0, 0)
    return (address[0], address[1], address[2], address[3])


class CoapEndpoint:
    """One client context (an ephemeral UDP port) and the helpers around it."""

    def __init__(self, name: str = "iot_bridge") -> None:
        self._name = name
        self._context: Any = None
        self._message_manager: Any = None
        # Confirmable messages we wait to see acknowledged: message -> future(True ACK / False RST)
        self._awaiting_ack: dict[int, tuple[Message, asyncio.Future[bool]]] = {}

    @property
    def started(self) -> bool:
        """Whether the socket is open."""
        return self._context is not None

    async def start(self) -> None:
        """Open the socket (udp6 only: no DTLS, TCP or WebSocket transports)."""
        try:
            context = await Context.create_client_context(
                loggername=f"aiocoap.{self._name}", transports=["udp6"]
            )
        except OSError as err:
            raise EndpointError(f"cannot open a UDP socket: {err}") from err
        self._context = context
        self._message_manager = context.request_interfaces[0].token_interface
        self._install_ack_watch()

    async def shutdown(self) -> None:
        """Close the socket; pending requests end with aiocoap's LibraryShutdown."""
        context, self._context = self._context, None
        for _, future in self._awaiting_ack.values():
            if not future.done():
                future.cancel()
        self._awaiting_ack.clear()
        if context is not None:
            await context.shutdown()

    @property
    def local_port(self) -> int:
        """The ephemeral port requests leave from."""
        sock = self._message_manager.message_interface.transport.get_extra_info("socket")
        return int(sock.getsockname()[1])

    async def resolve(self, host: str, port: int) -> UDP6EndpointAddress:
        """The device's address; raises EndpointError for names that do not resolve."""
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                host, port, type=socket.SOCK_DGRAM, proto=socket.IPPROTO_UDP
            )
        except (OSError, UnicodeError) as err:
            raise EndpointError(f"cannot resolve {host}: {err}") from err
        usable = [info for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]
        if not usable:
            raise EndpointError(f"{host} has no IP address")
        # IPv4 first: a dual-stack name whose IPv6 address has no route would fail silently.
        usable.sort(key=lambda info: info[0] != socket.AF_INET)
        if ipaddress.ip_address(usable[0][4][0].split("%")[0]).is_multicast:
            raise EndpointError(f"{host} is a multicast address, not a device")
        return _DeviceAddress(_sockaddr(usable[0]), self._message_manager.message_interface)

    def request(self, message: Message, *, blockwise: bool = True) -> Any:
        """Send a request (message.remote must be set); returns aiocoap's request object."""
        return self._require_context().request(message, handle_blockwise=blockwise)

    def watch_ack(self, message: Message) -> asyncio.Future[bool]:
        """A future that becomes True when the device ACKs `message` (False on RST).

        Call before sending; `forget_ack` when no longer interested.
        """
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._awaiting_ack[id(message)] = (message, future)
        return future

    def forget_ack(self, message: Message) -> None:
        """Stop watching (the future is left as it is)."""
        self._awaiting_ack.pop(id(message), None)

    def _install_ack_watch(self) -> None:
        manager = self._message_manager
        dispatch: Callable[[Message], None] = manager.dispatch_message

        def watching_dispatch(message: Message) -> None:
            if message.mtype in (ACK, RST) and self._awaiting_ack:
                self._acknowledged(message)
            dispatch(message)

        # The udp6 transport hands every datagram to this bound method of its manager.
        manager.dispatch_message = watching_dispatch

    def _acknowledged(self, incoming: Message) -> None:
        for sent, future in self._awaiting_ack.values():
            if (
                sent.mid == incoming.mid
                and sent.remote is not None
                and sent.remote == incoming.remote
                and not future.done()
            ):
                future.set_result(incoming.mtype is ACK)

    def send_deregistration(self, registration: Message, *, ack_timeout: float = 0.5) -> None:
        """Cancel an observation on the wire: GET with Observe=1 and the registration's token.

        The device's answer arrives on that token, so aiocoap hands it to the observation as
        its last notification and ends it.
        """
        if self._context is None or registration.remote is None or not registration.token:
            return
        cancel = Message(
            code=Code.GET,
            uri_path=registration.opt.uri_path,
            observe=1,
            transport_tuning=CoapTuning(ack_timeout, 1),
        )
        cancel.token = registration.token
        cancel.remote = registration.remote
        self._message_manager.send_message(cancel, lambda: None)

    def _require_context(self) -> Any:
        if self._context is None:
            raise EndpointError("the CoAP endpoint is not started")
        return self._context
