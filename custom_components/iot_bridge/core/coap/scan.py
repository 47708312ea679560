"""Multicast discovery: GET /.well-known/core to the all-CoAP-nodes groups, every answer kept.

aiocoap returns only the first answer to a multicast request, so the scan has sockets of
its own (one per interface it sends from) and uses aiocoap only to encode the request and
decode the answers. Which interfaces a scan uses is the caller's choice (ScanTarget): a
multicast datagram leaves through the interface named, never "wherever the route points".
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
from dataclasses import dataclass
from typing import Any, Final

from aiocoap import Message
from aiocoap import error as coap_error
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import NON

from .profile import MAX_LINK_FORMAT_BYTES, WELL_KNOWN_CORE

ALL_COAP_NODES_IPV4: Final = "224.0.1.187"
ALL_COAP_NODES_IPV6: Final = "ff02::fd"  # link-local scope: needs an interface
COAP_PORT: Final = 5683
DEFAULT_WAIT: Final = 2.0
MAX_ANSWERS: Final = 256
_MAX_DATAGRAM: Final = 1500


@dataclass(frozen=True, slots=True)
class ScanTarget:
    """One multicast group, sent to out of one interface."""

    group: str
    # IPv4: the local address of the interface (IP_MULTICAST_IF); IPv6: the interface index.
    interface: str | int
    port: int = COAP_PORT

    @property
    def ipv6(self) -> bool:
        """Whether this is the IPv6 group."""
        return ":" in self.group

    def describe(self) -> str:
        """For log lines."""
        if self.ipv6:
            try:
                name = socket.if_indextoname(int(self.interface))
            except OSError:
                name = str(self.interface)
            return f"[{self.group}%{name}]:{self.port}"
        return f"{self.group}:{self.port} via {self.interface}"


@dataclass(frozen=True, slots=True)
class ScanAnswer:
    """A device that answered: where it is and what it says about itself."""

    host: str
    port: int
    payload: bytes


@dataclass(slots=True)
class ScanResult:
    """Every answer of one scan, and the targets multicast did not work on."""

    answers: list[ScanAnswer]
    failures: dict[ScanTarget, str]


class _Collector(asyncio.DatagramProtocol):
    """Keeps the answers carrying our token, one per device address."""

    def __init__(self, token: bytes, answers: dict[tuple[str, int], ScanAnswer]) -> None:
        self.token = token
        self.answers = answers
        self.dropped = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(self.answers) >= MAX_ANSWERS:
            self.dropped += 1
            return
        try:
            message = Message.decode(data)
        except (coap_error.UnparsableMessage, ValueError):
            # aiocoap decodes string options eagerly: invalid UTF-8 is a UnicodeDecodeError.
            self.dropped += 1
            return
        if message.token != self.token or message.code != Code.CONTENT:
            self.dropped += 1
            return
        if len(message.payload) > MAX_LINK_FORMAT_BYTES:
            self.dropped += 1
            return
        host = _host(addr)
        key = (host, int(addr[1]))
        self.answers.setdefault(key, ScanAnswer(host, key[1], bytes(message.payload)))


def _host(addr: Any) -> str:
    """The answer's source as a host IoT Bridge can address (IPv6 link-local with its zone)."""
    address = ipaddress.ip_address(str(addr[0]).split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    if isinstance(address, ipaddress.IPv6Address) and address.is_link_local and len(addr) > 3:
        try:
            return f"{address}%{socket.if_indextoname(addr[3])}"
        except OSError:
            return f"{address}%{addr[3]}"
    return str(address)


def _request(token: bytes) -> bytes:
    """GET /.well-known/core as a NON message (multicast requests are never confirmable)."""
    message = Message(code=Code.GET, uri_path=WELL_KNOWN_CORE)
    message.mtype, message.token, message.mid = NON, token, secrets.randbits(16)
    return bytes(message.encode())


def _socket(target: ScanTarget) -> socket.socket:
    """A socket that sends to the group out of the target's interface only."""
    if target.ipv6:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, int(target.interface))
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)
            sock.bind(("::", 0))
        except BaseException:
            sock.close()
            raise
        return sock
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        interface = socket.inet_aton(str(target.interface))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, interface)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        sock.bind((str(target.interface), 0))
    except BaseException:
        sock.close()
        raise
    return sock


def _destination(target: ScanTarget) -> tuple[Any, ...]:
    if target.ipv6:
        return (target.group, target.port, 0, int(target.interface))
    return (target.group, target.port)


async def scan(targets: list[ScanTarget], wait: float = DEFAULT_WAIT) -> ScanResult:
    """Send one discovery request per target and collect answers for `wait` seconds.

    A target whose interface cannot send multicast (no route, no such interface) is
    reported in `failures`, never raised: discovery is best effort.
    """
    loop = asyncio.get_running_loop()
    token = secrets.token_bytes(4)
    request = _request(token)
    answers: dict[tuple[str, int], ScanAnswer] = {}
    failures: dict[ScanTarget, str] = {}
    transports: list[asyncio.DatagramTransport] = []
    try:
        for target in targets:
            try:
                sock = _socket(target)
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Collector(token, answers), sock=sock
                )
                transports.append(transport)
                sock.sendto(request, _destination(target))
            except (OSError, ValueError) as err:
                failures[target] = str(err)
            except Exception as err:  # e.g. a test harness that blocks sockets
                failures[target] = f"{type(err).__name__}: {err}"
        if transports:
            await asyncio.sleep(wait)
    finally:
        for transport in transports:
            transport.close()
    return ScanResult(sorted(answers.values(), key=lambda a: (a.host, a.port)), failures)
