"""The CoAP simulator's command line and fleet, probed the way the config flow probes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from custom_components.iot_bridge.core.coap.probe import probe
from custom_components.iot_bridge.core.coap.scan import ALL_COAP_NODES_IPV4, ScanTarget, scan
from iot_bridge_sim import build_coap_fleet

from .coap_peers import HOST, free_udp_port, restartable_udp_port

pytestmark = pytest.mark.usefixtures("socket_enabled")

SIMULATOR_DIR = Path(__file__).resolve().parent.parent / "simulator"


async def test_cli_runs_coap_devices() -> None:
    """`python -m iot_bridge_sim --coap` serves a locker and a climate node, answers
    discovery, and goes offline with --offline-after."""
    # Two devices on consecutive ports, outside the range the kernel hands to other sockets.
    first, discovery = restartable_udp_port(count=2), free_udp_port()
    process = await asyncio.create_subprocess_exec(
        *[
            sys.executable,
            "-m",
            "iot_bridge_sim",
            "--coap",
            "--device",
            "locker",
            "--device",
            "climate",
            "--coap-format",
            "cbor",
            "--coap-port",
            str(first),
            "--discovery-port",
            str(discovery),
            "--offline-after",
            "4",
        ],
        # From the project root (not simulator/): coverage in the child finds its settings.
        env=os.environ | {"PYTHONPATH": str(SIMULATOR_DIR)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        found = None
        for _ in range(40):
            try:
                found = await probe(HOST, first, timeout=0.5)
                break
            except Exception:  # not bound yet
                await asyncio.sleep(0.1)
        assert found is not None, f"exit code {process.returncode}"
        assert (found.device_id, found.name) == ("coap-locker1", "CoAP parcel locker")
        assert {r.content_format for r in found.description.resources.values()} == {60}
        result = await scan([ScanTarget(ALL_COAP_NODES_IPV4, HOST, discovery)], wait=0.5)
        assert sorted(answer.port for answer in result.answers) == [first, first + 1]
    finally:
        raw, _ = await asyncio.wait_for(process.communicate(), 15)
    output = raw.decode()
    assert process.returncode == 0, output
    assert f"coap-climate1 online (CoAP, 127.0.0.1:{first + 1}" in output
    assert "coap-locker1 offline (CoAP)" in output


def test_fleet_ids_names_and_ports() -> None:
    """Repeated kinds count up; CoAP names stand apart from the MQTT devices'."""
    fleet = build_coap_fleet(["locker", "locker", "climate"], first_port=6000, first_number=2)
    assert [(sim.device_id, sim.name, sim.port) for sim in fleet] == [
        ("coap-locker2", "CoAP parcel locker", 6000),
        ("coap-locker3", "CoAP parcel locker", 6001),
        ("coap-climate2", "CoAP climate node", 6002),
    ]
    assert not any(sim.running for sim in fleet)
