"""The real frontend in headless Chromium: add a hub in the dialog, accept the discovered
devices, see the lockers' pages.

Opt-in by machine: runs when Debian's /usr/bin/chromium and the playwright package are
present (scripts/setup installs both), skips otherwise. The browser part runs in
tests/browser_check.py, its own process, because the Home Assistant test plugin owns this
process's event loop, blocks sockets and fails tests that leave threads behind.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = (
    "coap-discovered.png",
    "lwm2m-discovered.png",
    "lwm2m-device.png",
    "demo-dashboard.png",
    "config-flow-mqtt.png",
    "hub-added.png",
    "locker-device.png",
    "logbook-commands.png",
    "device-triggers.png",
)

pytestmark = pytest.mark.browser


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's header."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(header[16:20]), int.from_bytes(header[20:24])


def test_frontend_adds_a_hub_and_shows_the_locker(tmp_path: Path) -> None:
    """Log in, add the discovered CoAP locker, accept the LwM2M locker waiting for admission
    and open its page, add a second MQTT hub through the dialog, open the parcel locker's
    page, find a confirmed and a refused command in the logbook, list the device triggers."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (Debian's chromium; scripts/setup installs it)")
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("the playwright package is missing (requirements_test.txt)")

    started = time.time()
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "browser_check.py"), "--screenshots", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "logged in as 'demo'" in output
    assert "discovered CoAP device shown: CoAP parcel locker at 127.0.0.1" in output
    assert "CoAP device added: CoAP parcel locker" in output
    assert "discovered LwM2M device shown: lwm2m-locker1 registered with LwM2M server" in output
    assert "LwM2M device accepted: lwm2m-locker1" in output
    assert "device page shows 'lwm2m-locker1' and 'Door 2'" in output
    assert "MQTT form filled" in output
    assert "success step shown: created MQTT 127.0.0.1:" in output
    assert "device page shows 'Parcel locker' and 'Door 2'" in output
    assert "door 2 confirmed; door 3 refused: True" in output
    assert "logbook shows 'Parcel locker Door 2 open: confirmed in" in output
    assert "automation editor lists the device triggers: A command was confirmed, " in output
    assert "the rejected-command trigger offers Door 2 and the action open" in output
    assert "Home Assistant has all four hubs loaded (two MQTT, one CoAP, one LwM2M)" in output
    assert "BROWSER CHECK PASSED" in output
    for name in SCREENSHOTS:
        # Written to tmp_path: docs/images is refreshed by hand (see tests/browser_check.py).
        path = tmp_path / name
        assert path.stat().st_mtime >= started - 1, f"{path} was not written by this run"
        assert _png_size(path) == (1280, 800), path
