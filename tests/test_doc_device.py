"""A device built only from docs/protocols/mqtt.md (a shell script) works with the hub."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import Generator
from pathlib import Path

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er

from .common import mqtt_entry, setup_entry, wait_for
from .mosquitto import Broker

SCRIPT = Path(__file__).parent / "doc_device" / "lock_device.sh"


@pytest.fixture
def prefix() -> str:
    """A discovery prefix no other test uses on the shared broker."""
    return f"doc_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def shell_device(mqtt_broker: Broker, prefix: str, tmp_path: Path) -> Generator[Path]:
    """Run the shell device in its own session; yields the path of its log."""
    assert mqtt_broker.host == "127.0.0.1"
    log = tmp_path / "device.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [SCRIPT, mqtt_broker.host, str(mqtt_broker.port), prefix, "locker_sh"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    yield log
    # The script and its mosquitto_sub share the process group the new session made.
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
    with contextlib.suppress(ProcessLookupError):  # leave no mosquitto_sub behind
        os.killpg(proc.pid, signal.SIGKILL)


async def test_shell_device_from_profile(
    hass: HomeAssistant,
    socket_enabled: None,
    mqtt_broker: Broker,
    prefix: str,
    shell_device: Path,
) -> None:
    """Lock entity, door sensor and confirmed commands for the profile-only device."""
    entry = mqtt_entry(mqtt_broker, prefix=prefix, client_id=f"iot-bridge-{prefix}")
    await setup_entry(hass, entry)
    registry = er.async_get(hass)

    def entities(domain: str) -> list[er.RegistryEntry]:
        return [
            e
            for e in er.async_entries_for_config_entry(registry, entry.entry_id)
            if e.domain == domain
        ]

    await wait_for(
        lambda: entities("lock") and entities("binary_sensor"),
        timeout=10,
        what=lambda: f"the shell device's entities; log:\n{shell_device.read_text()}",
    )
    lock = entities("lock")[0]
    door = entities("binary_sensor")[0]
    await wait_for(
        lambda: (s := hass.states.get(lock.entity_id)) is not None and s.state == "locked",
        what=lambda: f"{lock.entity_id} locked; log:\n{shell_device.read_text()}",
    )

    await hass.services.async_call("lock", "open", {"entity_id": lock.entity_id}, blocking=True)
    assert hass.states.get(lock.entity_id).state == "open"
    assert hass.states.get(door.entity_id).state == "on"

    response = await hass.services.async_call(
        "iot_bridge",
        "send_command",
        {"device_id": lock.device_id, "capability": "door_lock", "action": "lock"},
        blocking=True,
        return_response=True,
    )
    assert response["status"] == "confirmed", response
    assert hass.states.get(lock.entity_id).state == "locked"

    log = shell_device.read_text()
    assert "locker_sh <- open door_lock" in log
    assert "locker_sh <- lock door_lock" in log
