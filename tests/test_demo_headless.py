"""scripts/develop --headless: the whole demo stack opens a locker door with confirmation."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_headless_demo_confirms_a_door() -> None:
    """mosquitto + simulators + Home Assistant, set up through its own APIs, open door 2."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--headless"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "MQTT hub added through the config flow" in output
    match = re.search(r"door 2: confirmed in ([\d.]+) ms after (\d+) attempt", output)
    assert match, output
    assert 0 < float(match.group(1)) < 10_000
    assert "lock.parcel_locker_door_2 is now 'open'" in output
    assert "DOOR CONFIRMED" in output
