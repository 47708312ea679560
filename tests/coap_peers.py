"""Real CoAP peers on 127.0.0.1 for the tests: the simulators and Debian's libcoap server."""

from __future__ import annotations

import logging
import random
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.iot_bridge.const import (
    CONF_DEADLINE,
    CONF_DEVICE_ID,
    CONF_POLL_INTERVAL,
    CONF_PROTOCOL,
    CONF_RETRIES,
    DOMAIN,
    PROTOCOL_COAP,
)
from iot_bridge_sim.coap import CoapDeviceSimulator
from iot_bridge_sim.devices import DeviceModel

from .common import Simulators

try:  # pytest-socket replaces socket.socket; peers set up outside a test need the real one
    from pytest_socket import _true_socket as _socket  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover
    _socket = socket.socket

HOST = "127.0.0.1"
LIBCOAP_SERVER = shutil.which("coap-server-notls") or "/usr/bin/coap-server-notls"

StartSim = Callable[..., Awaitable[CoapDeviceSimulator]]


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 nothing is bound to right now."""
    with _socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def restartable_udp_port(count: int = 1) -> int:
    """A free UDP port below Linux's ephemeral range (32768-60999), for a device that stops
    and starts again on it: a port from that range may meanwhile be handed to another
    socket (a client's), and the restart would fail with "address in use". With `count`,
    that many consecutive ports from it are free (a fleet binds port, port + 1, ...)."""
    for _ in range(100):
        port = random.randrange(20000, 32000 - count)
        if all(_udp_free(port + offset) for offset in range(count)):
            return port
    raise RuntimeError("no free UDP port below the ephemeral range")


def _udp_free(port: int) -> bool:
    with _socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def coap_entry(
    port: int,
    device_id: str = "locker1",
    *,
    title: str = "Parcel locker",
    entry_id: str | None = None,
    **options: Any,
) -> MockConfigEntry:
    """A CoAP config entry as the flow creates it (not yet added to hass)."""
    return MockConfigEntry(
        domain=DOMAIN,
        entry_id=entry_id,
        title=title,
        data={
            CONF_PROTOCOL: PROTOCOL_COAP,
            CONF_HOST: HOST,
            CONF_PORT: port,
            CONF_DEVICE_ID: device_id,
        },
        options={CONF_DEADLINE: 2.0, CONF_RETRIES: 2, CONF_POLL_INTERVAL: 1.0, **options},
        unique_id=f"coap:{device_id}",
    )


@pytest.fixture
async def start_coap_sim(hass: HomeAssistant) -> AsyncGenerator[StartSim]:
    """Start simulated CoAP devices (each in its own thread); all stop after the test."""
    simulators: Simulators[CoapDeviceSimulator] = Simulators(hass)

    async def start(model: DeviceModel, **kwargs: Any) -> CoapDeviceSimulator:
        kwargs.setdefault("printer", logging.getLogger("simulator").info)
        return await simulators.start(CoapDeviceSimulator(model, **kwargs))

    yield start
    await simulators.stop_all()


class LibcoapServer:
    """Debian's coap-server-notls (libcoap 4.3) on 127.0.0.1, with its debug log kept."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_udp_port()
        self._log_dir = Path(tempfile.mkdtemp(prefix="libcoap-"))
        self.log_file = self._log_dir / "server.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Run it and wait until it answers."""
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                [LIBCOAP_SERVER, "-A", HOST, "-p", str(self.port), "-v", "7"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 5
        while "created UDP  endpoint" not in self.log() and time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"coap-server-notls exited:\n{self.log()[-2000:]}")
            time.sleep(0.05)
        time.sleep(0.1)

    def stop(self) -> None:
        """Terminate it."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(5)
        self._process = None

    def close(self) -> None:
        """Stop and remove the log."""
        self.stop()
        shutil.rmtree(self._log_dir, ignore_errors=True)

    def log(self) -> str:
        """Everything it printed so far."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def requests(self, pattern: str) -> list[str]:
        """Request lines in its debug log that match a regular expression."""
        return [line for line in self.log().splitlines() if re.search(pattern, line)]
