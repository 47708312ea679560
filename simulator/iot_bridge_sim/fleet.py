"""Start and stop a set of simulated devices; shared by the CLI and demo launchers."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Literal

from .behaviour import Behaviour
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


def start_fleet(
    fleet: list[MqttDeviceSimulator], timeout: float = 5.0
) -> list[MqttDeviceSimulator]:
    """Start a built fleet; if one device cannot start, stop the started ones and raise."""
    started: list[MqttDeviceSimulator] = []
    try:
        for simulator in fleet:
            simulator.start(timeout)
            started.append(simulator)
    except BaseException:
        stop_fleet(started)
        raise
    return fleet


def stop_fleet(fleet: Iterable[MqttDeviceSimulator], clear: bool = False) -> None:
    for simulator in fleet:
        simulator.stop(clear=clear)


def crash_fleet(fleet: Iterable[MqttDeviceSimulator]) -> None:
    for simulator in fleet:
        simulator.crash()


def _copy(behaviour: Behaviour) -> Behaviour:
    return dataclasses.replace(behaviour, jam=set(behaviour.jam))
