"""Drive the real Home Assistant frontend in Debian's headless Chromium (tests/test_browser.py).

Starts the demo stack (mosquitto, simulators, Home Assistant on free ports with a throw-away
config), logs in as the demo user, adds the CoAP locker that discovery found (Discovered →
Add), accepts the LwM2M locker waiting for admission (Discovered → Add → Submit) and opens
its device page, opens the demo dashboard, adds a second MQTT hub through the integration dialog,
opens the parcel locker's device page, sends it a confirmed and a refused command and finds
both in the logbook, lists IoT Bridge's device triggers in the automation editor, and saves
screenshots.

It runs in its own process because the Home Assistant test plugin owns the event loop,
blocks sockets and fails tests that leave threads behind. Run it directly to refresh the
screenshots in docs/images:

    .venv/bin/python tests/browser_check.py

Prints one line per step and ends with "BROWSER CHECK PASSED"; exits non-zero otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from playwright.async_api import BrowserContext, Page, Route, ViewportSize, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from demo import (  # noqa: E402
    COAP_DOOR_2,
    COAP_LOCKER,
    DEMO_PASSWORD,
    DEMO_USER,
    LWM2M_DOOR_2,
    LWM2M_ENDPOINT,
    LWM2M_TITLE,
    DemoStack,
    free_port,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
BROWSER_CLIENT_ID = "iot-bridge-browser"
# Integration logos come from brands.home-assistant.io, which is not reachable here: answer
# with a transparent 1x1 PNG so the pages show no broken-image icons.
BLANK_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)
STEP_TIMEOUT_MS = 30_000
# IoT Bridge's device triggers as the automation editor names them (translations/en.json).
DEVICE_TRIGGERS = (
    "A command was confirmed",
    "A command was rejected",
    "A command timed out",
    "A command was not delivered",
)
_started = time.monotonic()


def step(message: str) -> None:
    """One progress line with the time since start."""
    print(f"[browser {time.monotonic() - _started:5.1f}s] {message}", flush=True)


async def keep_local(context: BrowserContext, base_url: str) -> None:
    """Only Home Assistant itself is reached; logos get a blank image, the rest is refused."""

    async def handle(route: Route) -> None:
        if route.request.url.startswith("https://brands.home-assistant.io/"):
            await route.fulfill(status=200, content_type="image/png", body=BLANK_PNG)
        else:
            await route.abort()

    await context.route(lambda url: not url.startswith(base_url), handle)


async def screenshot(page: Page, directory: Path, name: str) -> None:
    """A viewport screenshot once animations have settled."""
    await page.wait_for_timeout(500)
    await page.screenshot(path=directory / name, animations="disabled")
    step(f"screenshot {directory / name}")


async def log_in(page: Page, base_url: str) -> None:
    """The login form, as a user fills it; the frontend keeps the tokens for later visits."""
    await page.goto(f"{base_url}/")
    await page.locator("input[name=username]").fill(DEMO_USER)
    await page.locator("input[name=password]").fill(DEMO_PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_function("() => localStorage.getItem('hassTokens') !== null")
    step(f"logged in as '{DEMO_USER}'")


async def confirm_discovered_coap(page: Page, stack: DemoStack, shots: Path) -> None:
    """Settings → Devices & services → Discovered: add the CoAP locker the scan found."""
    await page.goto(f"{stack.base_url}/config/integrations/dashboard")
    card = page.locator("ha-config-flow-card", has_text=f"{COAP_LOCKER} (127.0.0.1)")
    await card.wait_for()
    # The LwM2M locker waits under Discovered too: the card's own Add button.
    await card.get_by_role("button", name="Add").click()
    dialog = page.locator("dialog-data-entry-flow")
    await dialog.get_by_text("IoT Bridge found the CoAP device").wait_for()
    step(f"discovered CoAP device shown: {COAP_LOCKER} at 127.0.0.1")
    await screenshot(page, shots, "coap-discovered.png")
    await dialog.get_by_role("button", name="Submit").click()
    created = dialog.locator("step-flow-create-entry")
    await created.wait_for()
    await created.get_by_text(COAP_LOCKER).first.wait_for()
    step(f"CoAP device added: {COAP_LOCKER}")
    await created.get_by_role("button", name="Finish").click()
    await created.wait_for(state="detached")


async def accept_discovered_lwm2m(page: Page, stack: DemoStack, shots: Path) -> None:
    """Settings → Devices & services → Discovered: accept the LwM2M locker that registered
    with the LwM2M server (admission "ask me")."""
    hub = LWM2M_TITLE.format(port=stack.lwm2m_port)
    await page.goto(f"{stack.base_url}/config/integrations/dashboard")
    card = page.locator("ha-config-flow-card", has_text=f"{LWM2M_ENDPOINT} ({hub})")
    await card.wait_for()
    await card.get_by_role("button", name="Add").click()
    dialog = page.locator("dialog-data-entry-flow")
    await dialog.get_by_text(f"Accept {LWM2M_ENDPOINT}?").wait_for()
    await dialog.get_by_text(f"registered with {hub}").wait_for()
    step(f"discovered LwM2M device shown: {LWM2M_ENDPOINT} registered with {hub}")
    await screenshot(page, shots, "lwm2m-discovered.png")
    await dialog.get_by_role("button", name="Submit").click()
    accepted = dialog.locator("step-flow-abort")
    await accepted.get_by_text(f"{LWM2M_ENDPOINT} was accepted").wait_for()
    step(f"LwM2M device accepted: {LWM2M_ENDPOINT}")
    await accepted.get_by_role("button", name="Close").click()
    await accepted.wait_for(state="detached")


async def show_lwm2m_locker(page: Page, base_url: str, device_id: str, shots: Path) -> None:
    """The accepted LwM2M locker's device page: its doors as locks, sensors and buttons."""
    await page.goto(f"{base_url}/config/devices/device/{device_id}")
    await page.get_by_text(LWM2M_ENDPOINT, exact=True).first.wait_for()
    await page.get_by_text("Door 2", exact=True).first.wait_for()
    step(f"device page shows '{LWM2M_ENDPOINT}' and 'Door 2'")
    await screenshot(page, shots, "lwm2m-device.png")


async def show_dashboard(page: Page, base_url: str, shots: Path) -> None:
    """The demo dashboard: both lockers, the climate node and the confirmed-open button."""
    await page.goto(f"{base_url}/lovelace/demo")
    await page.get_by_text("Open door 2 (confirmed)").wait_for()
    await page.get_by_text("Parcel locker Door 2", exact=True).wait_for()
    await page.get_by_text(f"{COAP_LOCKER} Door 2", exact=True).wait_for()
    step("demo dashboard shows both lockers and the 'Open door 2' button")
    await screenshot(page, shots, "demo-dashboard.png")


async def add_hub_in_dialog(page: Page, stack: DemoStack, shots: Path) -> None:
    """Settings → Devices & services → Add integration → IoT Bridge → MQTT broker."""
    await page.goto(f"{stack.base_url}/config/integrations/dashboard")
    await page.get_by_role("button", name="Add integration").click()
    await page.locator("dialog-add-integration search-input input").fill("IoT Bridge")
    await page.locator("ha-integration-list-item", has_text="IoT Bridge").click()
    dialog = page.locator("dialog-data-entry-flow")
    await dialog.get_by_text("MQTT broker", exact=True).click()
    form = dialog.locator("step-flow-form")
    await form.locator("input[name=host]").fill("127.0.0.1")
    # The port is a number selector: its input has no name, only the "Port" label.
    await form.get_by_role("spinbutton", name="Port").fill(str(stack.mqtt_port))
    await form.locator("input[name=client_id]").fill(BROWSER_CLIENT_ID)
    prefix = await form.locator("input[name=discovery_prefix]").input_value()
    if prefix != "iot_bridge":
        raise AssertionError(f"discovery prefix pre-filled with {prefix!r}, not 'iot_bridge'")
    step(f"MQTT form filled: 127.0.0.1:{stack.mqtt_port}, client id {BROWSER_CLIENT_ID}")
    await screenshot(page, shots, "config-flow-mqtt.png")
    await form.get_by_role("button", name="Submit").click()
    created = dialog.locator("step-flow-create-entry")
    await created.wait_for()
    title = f"MQTT 127.0.0.1:{stack.mqtt_port}"
    await created.get_by_text(title).wait_for()
    # The success step lists the devices the new hub found, each with an area picker.
    await created.get_by_text("Parcel locker").wait_for()
    step(f"success step shown: created {title}, found the parcel locker")
    await screenshot(page, shots, "hub-added.png")
    await created.get_by_role("button", name="Finish").click()
    await created.wait_for(state="detached")


async def show_locker(page: Page, base_url: str, device_id: str, shots: Path) -> None:
    """The parcel locker's device page: its doors as controls and sensors."""
    await page.goto(f"{base_url}/config/devices/device/{device_id}")
    await page.get_by_text("Parcel locker", exact=True).first.wait_for()
    await page.get_by_text("Door 2", exact=True).wait_for()
    step("device page shows 'Parcel locker' and 'Door 2'")
    await screenshot(page, shots, "locker-device.png")


async def show_logbook(page: Page, base_url: str, shots: Path) -> None:
    """The logbook: the demo's confirmed door 2 and its refused (jammed) door 3."""
    logbook = page.locator("ha-logbook")
    confirmed = logbook.get_by_text(
        re.compile(r"Parcel locker Door 2 open: confirmed in [\d.]+ ms")
    )
    refused = logbook.get_by_text("Parcel locker Door 3 open: refused — jammed")
    # The page reads what the recorder has written; on a busy machine the recorder can
    # lag the demo's commands, so a page loaded too early is loaded again.
    for attempt in range(3):
        await page.goto(f"{base_url}/logbook")
        try:
            await confirmed.first.wait_for(timeout=10_000)
            await refused.first.wait_for(timeout=10_000)
            break
        except PlaywrightTimeoutError:
            if attempt == 2:
                raise
            step("logbook not complete yet; loading it again")
    step(
        f"logbook shows '{await confirmed.first.inner_text()}' and 'Door 3 open: refused — jammed'"
    )
    await screenshot(page, shots, "logbook-commands.png")


async def show_device_triggers(page: Page, base_url: str, device_id: str, shots: Path) -> None:
    """The locker's page → Automations → + → Use device as trigger: the automation editor
    offers IoT Bridge's four command triggers, each narrowable to a door and an action."""
    await page.goto(f"{base_url}/config/devices/device/{device_id}")
    card = page.locator("ha-card", has_text="Automations").first
    await card.locator("ha-icon-button").first.click()
    await page.get_by_text("Use device as trigger").click()
    await page.wait_for_url("**/config/automation/edit/new")
    picker = page.locator("ha-device-trigger-picker")
    await picker.locator("ha-select").click()
    for name in DEVICE_TRIGGERS:
        await picker.get_by_role("option", name=name).wait_for()
    step(f"automation editor lists the device triggers: {', '.join(DEVICE_TRIGGERS)}")
    await screenshot(page, shots, "device-triggers.png")
    await picker.get_by_role("option", name=DEVICE_TRIGGERS[1]).click()
    editor = page.locator("ha-automation-trigger-device")
    for field in ("Door 2", "open"):
        await editor.get_by_text(field, exact=True).first.wait_for()
    step("the rejected-command trigger offers Door 2 and the action open")


async def run(stack: DemoStack, shots: Path) -> None:
    """Demo set-up through the APIs, then the browser part."""
    async with aiohttp.ClientSession() as session:
        await stack.prepare(session)
        locker_id = await stack.locker_device_id(session)
        step(f"demo ready on {stack.base_url}; parcel locker is device {locker_id}")

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                context = await browser.new_context(viewport=VIEWPORT)
                context.set_default_timeout(STEP_TIMEOUT_MS)
                await keep_local(context, stack.base_url)
                page = await context.new_page()
                try:
                    await log_in(page, stack.base_url)
                    await confirm_discovered_coap(page, stack, shots)
                    await stack.wait_for_state(session, COAP_DOOR_2)
                    await accept_discovered_lwm2m(page, stack, shots)
                    await stack.wait_for_state(session, LWM2M_DOOR_2)
                    lwm2m_id = await stack.locker_device_id(session, LWM2M_ENDPOINT)
                    await show_lwm2m_locker(page, stack.base_url, lwm2m_id, shots)
                    await show_dashboard(page, stack.base_url, shots)
                    await add_hub_in_dialog(page, stack, shots)
                    await show_locker(page, stack.base_url, locker_id, shots)
                    # A confirmed and a refused command, as the demo's user would send them.
                    opened = await stack.open_door(session)
                    refused = await stack.try_jammed_door(session)
                    step(f"door 2 {opened['status']}; door 3 refused: {'jammed' in refused}")
                    await show_logbook(page, stack.base_url, shots)
                    await show_device_triggers(page, stack.base_url, locker_id, shots)
                except Exception:
                    failure = Path(tempfile.gettempdir()) / "iot-bridge-browser-failure.png"
                    await page.screenshot(path=failure)
                    step(f"FAILED at {page.url}; screenshot of the page: {failure}")
                    raise
            finally:
                await browser.close()

        entries = await stack.get(session, "/api/config/config_entries/entry?domain=iot_bridge")
        loaded = [entry for entry in entries if entry["state"] == "loaded"]
        if len(loaded) != 4:
            raise AssertionError(
                "expected the demo hub, the browser's hub, the CoAP locker and the LwM2M server "
                f"loaded: {entries}"
            )
        step("Home Assistant has all four hubs loaded (two MQTT, one CoAP, one LwM2M)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--screenshots",
        type=Path,
        default=ROOT / "docs" / "images",
        help="directory for the PNG files (default docs/images)",
    )
    args = parser.parse_args(argv)
    shots: Path = args.screenshots
    shots.mkdir(parents=True, exist_ok=True)

    config_dir = Path(tempfile.mkdtemp(prefix="iot-bridge-browser-"))
    stack = DemoStack(config_dir, http_port=free_port(), mqtt_port=free_port(), quiet=True)
    try:
        stack.start_processes()
        asyncio.run(run(stack, shots))
    except Exception as err:
        step(f"failed: {type(err).__name__}: {err}")
        hass_log = config_dir / "home-assistant.out"
        if hass_log.exists():
            print(hass_log.read_text()[-4000:], file=sys.stderr)
        return 1
    finally:
        stack.stop()
        shutil.rmtree(config_dir, ignore_errors=True)
    print("BROWSER CHECK PASSED", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
