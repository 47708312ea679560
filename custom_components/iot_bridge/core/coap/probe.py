"""Reading what a CoAP device is: its /.well-known/core and its device information.

Shared by the config flow (test before configure, discovery) and the bridge (start-up and
when the device comes back): one GET of /.well-known/core, then the OCF device and
platform resources it links to, each bounded by a timeout.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final

from aiocoap import Message
from aiocoap import error as coap_error
from aiocoap.numbers.codes import Code

from ..model import Device
from .endpoint import CoapEndpoint, EndpointError, retransmission_plan
from .profile import (
    WELL_KNOWN_CORE,
    Description,
    Identity,
    ProfileError,
    code_text,
    is_success,
    parse_description,
    parse_identity,
)

DEFAULT_TIMEOUT: Final = 5.0
# A device rarely needs more than its device and platform resource.
MAX_INFO_RESOURCES: Final = 2
# Errors aiocoap raises for a request that got no usable answer.
NETWORK_ERRORS: Final = (coap_error.Error, OSError)


class ProbeError(Exception):
    """The device cannot be used; str() says why."""


class DeviceUnreachable(ProbeError):
    """No answer (nothing listening, no route, timeout)."""


class NothingUsable(ProbeError):
    """The device answered, but describes nothing IoT Bridge can show."""


async def fetch(
    endpoint: CoapEndpoint, remote: Any, path: tuple[str, ...], timeout: float
) -> Message:
    """GET one resource, bounded by `timeout` (retransmissions included)."""
    message = Message(
        code=Code.GET,
        uri_path=path,
        transport_tuning=retransmission_plan(timeout * 0.9).tuning(),
    )
    message.remote = remote
    request = endpoint.request(message)
    try:
        async with asyncio.timeout(timeout):
            return await request.response
    except TimeoutError:
        raise DeviceUnreachable(f"no answer within {timeout:g} s") from None
    except NETWORK_ERRORS as err:
        raise DeviceUnreachable(describe_error(err)) from err


def describe_error(err: BaseException, fallback: str = "") -> str:
    """A readable reason: aiocoap wraps socket errors (ICMP port unreachable, no route) in a
    NetworkError whose own text says little."""
    if isinstance(err, TimeoutError):
        return fallback or "no answer in time"
    cause = err.__cause__
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or fallback or type(err).__name__


async def read_device(
    endpoint: CoapEndpoint, remote: Any, timeout: float = DEFAULT_TIMEOUT
) -> tuple[Description, Identity]:
    """The device's resources and identity; ProbeError when it cannot be used."""
    response = await fetch(endpoint, remote, WELL_KNOWN_CORE, timeout)
    if not is_success(response.code):
        raise NothingUsable(f"/.well-known/core answered {code_text(response.code)}")
    try:
        description = parse_description(response.payload)
    except ProfileError as err:
        raise NothingUsable(f"/.well-known/core is not usable: {err}") from err
    if not description.usable:
        raise NothingUsable("/.well-known/core lists no resource IoT Bridge can use")
    payloads: list[tuple[bytes, int | None]] = []
    for path in description.info_paths[:MAX_INFO_RESOURCES]:
        try:
            info = await fetch(endpoint, remote, path, timeout)
        except DeviceUnreachable:
            continue  # its resources still work; only the name and model are missing
        if is_success(info.code):
            payloads.append((info.payload, info.opt.content_format))
    return description, parse_identity(payloads, description.endpoint_name)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What the config flow needs to know about a device."""

    host: str
    port: int
    description: Description
    identity: Identity

    @property
    def device_id(self) -> str:
        """The device's own id, else its address (which then identifies it)."""
        return self.identity.device_id or address_id(self.host, self.port)

    @property
    def identified(self) -> bool:
        """Whether the device states an id (so it can be followed to a new address)."""
        return self.identity.device_id is not None

    @property
    def name(self) -> str:
        """A name for the entry and the device."""
        return self.identity.name or self.identity.device_id or f"CoAP device {self.host}"


def address_id(host: str, port: int) -> str:
    """The id of a device that states none: where it is."""
    return f"{host.lower()}:{port}"


async def probe(host: str, port: int, timeout: float = DEFAULT_TIMEOUT) -> ProbeResult:
    """Test a device before it is configured, from a socket of its own."""
    endpoint = CoapEndpoint("iot_bridge.probe")
    try:
        await endpoint.start()
        remote = await endpoint.resolve(host, port)
    except EndpointError as err:
        await endpoint.shutdown()
        raise DeviceUnreachable(str(err)) from err
    try:
        description, identity = await read_device(endpoint, remote, timeout)
    finally:
        await endpoint.shutdown()
    return ProbeResult(host, port, description, identity)


def device_from(device_id: str, description: Description, identity: Identity, name: str) -> Device:
    """The model device for a description."""
    return Device(
        device_id=device_id,
        name=identity.name or name,
        info=identity.info,
        capabilities={key: res.capability for key, res in description.resources.items()},
    )
