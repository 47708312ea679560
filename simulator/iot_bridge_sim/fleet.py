"""Start and stop a set of simulated devices; shared by the CLI and demo launchers."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Literal, Protocol

from .behaviour import Behaviour
from .coap import CoapDeviceSimulator, Format, MulticastSettings
from .devices import DEVICE_FACTORIES
from .mqtt import MqttDeviceSimulator, Printer

type MqttVersion = Literal["5", "3.1.1"]

# Without --device the demo shows both protocol versions side by side.
DEFAULT_KINDS = ("locker", "climate")
DEFAULT_PROTOCOL: dict[str, MqttVersion] = {"locker": "5", "climate": "3.1.1"}


def build_fleet(
    kinds: Sequence[str] = DEFAULT_KINDS,
    *,
    host: str = "127.0.0.1",
    port: int = 1883,
    prefix: str = "iot_bridge",
    protocol: MqttVersion | None = None,
    behaviour: Behaviour | None = None,
    printer: Printer | None = None,
    username: str | None = None,
    password: str | None = None,
    first_number: int = 1,
) -> list[MqttDeviceSimulator]:
    """One simulator per kind; a repeated kind gets the next id (locker1, locker2, ...)."""
    counts: dict[str, int] = {}
    fleet = []
    for kind in kinds:
        counts[kind] = counts.get(kind, first_number - 1) + 1
        model = DEVICE_FACTORIES[kind](f"{kind}{counts[kind]}")
        fleet.append(
            MqttDeviceSimulator(
                model,
                host=host,
                port=port,
                prefix=prefix,
                protocol=protocol or DEFAULT_PROTOCOL.get(kind, "5"),
                # Own copy each, so flipping one device's failure mode leaves the others alone.
                behaviour=_copy(behaviour or Behaviour()),
                printer=printer,
                username=username,
                password=password,
            )
        )
    return fleet


def build_coap_fleet(
    kinds: Sequence[str] = ("locker",),
    *,
    host: str = "127.0.0.1",
    first_port: int = 0,
    behaviour: Behaviour | None = None,
    printer: Printer | None = None,
    content_format: Format = "text",
    separate_response: bool = False,
    max_age: int = 60,
    multicast: MulticastSettings | None = None,
    first_number: int = 1,
) -> list[CoapDeviceSimulator]:
    """One CoAP server per kind (ids coap-locker1, ...; names start with "CoAP" so they
    stand apart from MQTT devices of the same model); port 0 picks free ports."""
    counts: dict[str, int] = {}
    fleet = []
    for index, kind in enumerate(kinds):
        counts[kind] = counts.get(kind, first_number - 1) + 1
        model = DEVICE_FACTORIES[kind](f"coap-{kind}{counts[kind]}")
        fleet.append(
            CoapDeviceSimulator(
                model,
                host=host,
                port=first_port + index if first_port else 0,
                behaviour=_copy(behaviour or Behaviour()),
                printer=printer,
                content_format=content_format,
                separate_response=separate_response,
                max_age=max_age,
                multicast=multicast,
                name=f"CoAP {model.name[:1].lower()}{model.name[1:]}",
            )
        )
    return fleet


class Simulator(Protocol):
    """What the fleet helpers need of a simulated device, whatever its protocol."""

    def start(self, timeout: float = ...) -> None: ...
    def stop(self, clear: bool = ...) -> None: ...
    def crash(self) -> None: ...


def start_fleet[S: Simulator](fleet: list[S], timeout: float = 5.0) -> list[S]:
    """Start a built fleet; if one device cannot start, stop the started ones and raise."""
    started: list[S] = []
    try:
        for simulator in fleet:
            simulator.start(timeout)
            started.append(simulator)
    except BaseException:
        stop_fleet(started)
        raise
    return fleet


def stop_fleet(fleet: Iterable[Simulator], clear: bool = False) -> None:
    for simulator in fleet:
        simulator.stop(clear=clear)


def crash_fleet(fleet: Iterable[Simulator]) -> None:
    for simulator in fleet:
        simulator.crash()


def _copy(behaviour: Behaviour) -> Behaviour:
    return dataclasses.replace(behaviour, jam=set(behaviour.jam))
