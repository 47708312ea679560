"""Run IoT Bridge in a real Home Assistant with a simulated device fleet.

Started by scripts/develop. Everything is set up through Home Assistant's own APIs
(onboarding, config flows, the automation and dashboard editors), exactly as a user's
clicks would, so the demo exercises the same paths as a real installation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "simulator"))

from iot_bridge_sim.broker import Broker, free_port  # noqa: E402

DEMO_USER = "demo"
DEMO_PASSWORD = "demo-pass-1234"  # documented in the README; loopback only
DEMO_NAME = "IoT Bridge demo"
LOCKER_DOOR_2 = "lock.parcel_locker_door_2"
# The demo parcel locker's door 3 is jammed: commands to it are refused.
JAMMED_LOCK = "door3_lock"
COAP_LOCKER = "CoAP parcel locker"
COAP_DOOR_2 = "lock.coap_parcel_locker_door_2"
# The LwM2M locker registers with the demo's LwM2M server and waits under Discovered.
LWM2M_ENDPOINT = "lwm2m-locker1"
LWM2M_DOOR_2 = "lock.lwm2m_locker1_door_2"
LWM2M_DOOR_2_OPEN = "binary_sensor.lwm2m_locker1_door_2"
LWM2M_DOOR_2_KEY = "10359_1"  # object 10359 (lock), instance 1
LWM2M_TITLE = "LwM2M server (UDP {port})"
ONLINE_ONLY_DOMAINS = frozenset({"google_translate", "met", "radio_browser", "shopping_list"})
CONFIGURATION = """\
homeassistant:
  name: {name}
  unit_system: metric
  time_zone: UTC
  latitude: 52.37
  longitude: 4.89
  elevation: 0
  country: NL
  currency: EUR
http:
  server_host: 127.0.0.1
  server_port: {port}
frontend:
config:
automation: !include automations.yaml
script:
input_button:
  open_door_2:
    name: Open locker door 2
    icon: mdi:door-open
lovelace:
# Command outcomes are logbook lines on their device (the logbook brings the recorder).
logbook:
logger:
  default: warning
  logs:
    custom_components.iot_bridge: debug
    homeassistant.setup: info
# CoAP discovery scans on loopback only (the simulated CoAP locker answers there).
iot_bridge:
  coap_discovery:
    interface: 127.0.0.1
    port: {coap_discovery_port}
    scan_interval: 30
"""


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nothing is bound to right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log(message: str) -> None:
    """The launcher's own lines, distinguishable from Home Assistant's and the devices'."""
    print(f"\033[1m[demo]\033[0m {message}", flush=True)


@dataclass
class DemoStack:
    """mosquitto + device simulators + Home Assistant, configured through its APIs."""

    config_dir: Path
    http_port: int = 8123
    mqtt_port: int = 1883
    # The multicast group's port for CoAP discovery: one of the demo's own, so it meets
    # no other CoAP service on the machine (all of it stays on loopback).
    coap_discovery_port: int = field(default_factory=free_udp_port)
    quiet: bool = False
    base_url: str = field(init=False)
    token: str | None = field(init=False, default=None)
    # The LwM2M server entry's UDP port: a free one, found when the entry is created.
    lwm2m_port: int | None = field(init=False, default=None)
    _broker: Broker | None = field(init=False, default=None)
    _processes: list[subprocess.Popen[bytes]] = field(init=False, default_factory=list)
    _hass: subprocess.Popen[bytes] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.base_url = f"http://127.0.0.1:{self.http_port}"

    # Processes -------------------------------------------------------------------

    def start_processes(self) -> None:
        """Broker, simulators and Home Assistant; stop() ends all of them."""
        self._broker = Broker(port=self.mqtt_port)
        self._broker.start()
        log(f"mosquitto listening on 127.0.0.1:{self.mqtt_port}")
        env = self._simulator_env()
        # Door 3 of the parcel locker is jammed: every command to it is refused, so the demo
        # shows a refusal (logbook, device triggers) beside the confirmed door 2.
        mqtt_fleet = ["--port", str(self.mqtt_port), "--jam", JAMMED_LOCK]
        self._spawn([sys.executable, "-m", "iot_bridge_sim", *mqtt_fleet], env=env)
        coap = ["--coap", "--device", "locker", "--discovery-port", str(self.coap_discovery_port)]
        self._spawn([sys.executable, "-m", "iot_bridge_sim", *coap], env=env)
        log(f"CoAP parcel locker answering discovery on 224.0.1.187:{self.coap_discovery_port}")
        self._write_config()
        hass = [sys.executable, "-m", "homeassistant", "-c", str(self.config_dir), "--skip-pip"]
        self._hass = self._spawn(hass, env=os.environ.copy(), log_name="home-assistant.out")
        log(f"Home Assistant starting on {self.base_url} (config {self.config_dir})")

    def start_lwm2m_locker(self) -> None:
        """An LwM2M parcel locker registering with the demo's LwM2M server (which must exist
        first: add_lwm2m_server). stop() ends it before Home Assistant, so it de-registers."""
        assert self.lwm2m_port is not None
        command = [
            *("-m", "iot_bridge_sim", "--protocol", "lwm2m"),
            *("--server", f"coap://127.0.0.1:{self.lwm2m_port}", "--device", "locker"),
            *("--endpoint-prefix", LWM2M_ENDPOINT.removesuffix("locker1")),
        ]
        self._spawn([sys.executable, *command], env=self._simulator_env())
        log(
            f"LwM2M parcel locker '{LWM2M_ENDPOINT}' registering with coap://127.0.0.1:{self.lwm2m_port}"
        )

    @staticmethod
    def _simulator_env() -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(ROOT / "simulator"), "PYTHONUNBUFFERED": "1"}

    def _spawn(
        self, command: list[str], *, env: dict[str, str], log_name: str | None = None
    ) -> subprocess.Popen[bytes]:
        output: Any = None
        if self.quiet or log_name:
            output = (self.config_dir / (log_name or "simulators.out")).open("ab")
        process = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._processes.append(process)
        return process

    def stop(self) -> None:
        """Terminate everything this stack started, newest first."""
        for process in reversed(self._processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(self._processes):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self._processes.clear()
        self._hass = None
        if self._broker is not None:
            self._broker.close()
            self._broker = None
        log("stopped broker, simulators and Home Assistant")

    def _write_config(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "configuration.yaml").write_text(
            CONFIGURATION.format(
                name=DEMO_NAME, port=self.http_port, coap_discovery_port=self.coap_discovery_port
            )
        )
        automations = self.config_dir / "automations.yaml"
        if not automations.exists():
            automations.write_text("[]\n")
        components = self.config_dir / "custom_components"
        components.mkdir(exist_ok=True)
        link = components / "iot_bridge"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(ROOT / "custom_components" / "iot_bridge", target_is_directory=True)

    # Home Assistant's APIs --------------------------------------------------------

    async def wait_until_up(self, session: aiohttp.ClientSession, timeout: float = 180) -> None:
        """Wait for the HTTP server; fail early if Home Assistant exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._hass is None or self._hass.poll() is not None:
                raise RuntimeError("Home Assistant exited; see home-assistant.out")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(f"{self.base_url}/api/onboarding") as response:
                    # 404 once onboarding is done (a later run): the view is not registered.
                    if response.status in (200, 404):
                        return
            await asyncio.sleep(0.5)
        raise TimeoutError(f"Home Assistant did not answer on {self.base_url}")

    async def onboard(self, session: aiohttp.ClientSession) -> None:
        """Create the demo user (first run) and obtain an access token."""
        token_file = self.config_dir / ".demo_token"
        async with session.get(f"{self.base_url}/api/onboarding") as response:
            onboarded = response.status == 404
            steps = {} if onboarded else {s["step"]: s["done"] for s in await response.json()}
        if onboarded or steps.get("user"):
            self.token = token_file.read_text().strip()
            return
        client_id = f"{self.base_url}/"
        async with session.post(
            f"{self.base_url}/api/onboarding/users",
            json={
                "client_id": client_id,
                "name": "Demo",
                "username": DEMO_USER,
                "password": DEMO_PASSWORD,
                "language": "en",
            },
        ) as response:
            response.raise_for_status()
            auth_code = (await response.json())["auth_code"]
        async with session.post(
            f"{self.base_url}/auth/token",
            data={"grant_type": "authorization_code", "code": auth_code, "client_id": client_id},
        ) as response:
            response.raise_for_status()
            access_token = (await response.json())["access_token"]
        self.token = access_token
        for step, body in (
            ("core_config", {}),
            ("analytics", {}),
            (
                "integration",
                {"client_id": client_id, "redirect_uri": f"{client_id}?auth_callback=1"},
            ),
        ):
            await self.post(session, f"/api/onboarding/{step}", body)
        self.token = await self._long_lived_token(session)
        token_file.write_text(self.token)
        await self._remove_online_only_entries(session)
        log(f"onboarding done: user '{DEMO_USER}', password '{DEMO_PASSWORD}'")

    async def _remove_online_only_entries(self, session: aiohttp.ClientSession) -> None:
        """Onboarding adds weather, TTS and radio entries that need the internet; the demo
        runs offline, so they would only show as failed."""
        for entry in await self.get(session, "/api/config/config_entries/entry"):
            if entry["domain"] in ONLINE_ONLY_DOMAINS:
                async with session.delete(
                    f"{self.base_url}/api/config/config_entries/entry/{entry['entry_id']}",
                    headers=self._headers(),
                ) as response:
                    response.raise_for_status()

    async def _long_lived_token(self, session: aiohttp.ClientSession) -> str:
        result = await self.ws(
            session,
            {"type": "auth/long_lived_access_token", "client_name": "demo", "lifespan": 3650},
        )
        return str(result)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def post(self, session: aiohttp.ClientSession, path: str, body: Any) -> Any:
        """POST JSON with the access token; return the decoded answer."""
        async with session.post(
            f"{self.base_url}{path}", json=body, headers=self._headers()
        ) as response:
            text = await response.text()
            if response.status >= 400:
                raise RuntimeError(f"POST {path} -> {response.status}: {text}")
            return json.loads(text) if text else None

    async def get(self, session: aiohttp.ClientSession, path: str) -> Any:
        """GET with the access token; return the decoded answer."""
        async with session.get(f"{self.base_url}{path}", headers=self._headers()) as response:
            response.raise_for_status()
            return await response.json()

    async def ws(self, session: aiohttp.ClientSession, message: dict[str, Any]) -> Any:
        """One websocket command (authenticated), returning its result."""
        async with session.ws_connect(f"{self.base_url}/api/websocket") as socket:
            await socket.receive_json()
            await socket.send_json({"type": "auth", "access_token": self.token})
            if (await socket.receive_json())["type"] != "auth_ok":
                raise RuntimeError("websocket authentication failed")
            await socket.send_json({"id": 1, **message})
            answer = await socket.receive_json()
            if not answer.get("success"):
                raise RuntimeError(f"websocket {message['type']} failed: {answer}")
            return answer.get("result")

    async def add_mqtt_hub(
        self, session: aiohttp.ClientSession, client_id: str = "iot-bridge-demo"
    ) -> None:
        """Create the hub through the integration's real config flow (once)."""
        entries = await self.get(session, "/api/config/config_entries/entry?domain=iot_bridge")
        if entries:
            return
        flow = await self.post(
            session, "/api/config/config_entries/flow", {"handler": "iot_bridge"}
        )
        flow = await self.post(
            session,
            f"/api/config/config_entries/flow/{flow['flow_id']}",
            {"next_step_id": "mqtt_broker"},
        )
        result = await self.post(
            session,
            f"/api/config/config_entries/flow/{flow['flow_id']}",
            {
                "host": "127.0.0.1",
                "port": self.mqtt_port,
                "username": "",
                "password": "",
                "tls": False,
                "ca_file": "",
                "client_id": client_id,
                "discovery_prefix": "iot_bridge",
            },
        )
        if result.get("type") != "create_entry":
            raise RuntimeError(f"config flow did not create the hub: {result}")
        log(f"MQTT hub added through the config flow: {result['title']}")

    async def add_lwm2m_server(self, session: aiohttp.ClientSession) -> None:
        """The LwM2M server entry through the real config flow, admission "ask me", on a free
        UDP port of 127.0.0.1; a later run (interactive config) keeps the entry and its port."""
        prefix = LWM2M_TITLE.split("{", 1)[0]
        entries = await self.get(session, "/api/config/config_entries/entry?domain=iot_bridge")
        for entry in entries:
            if entry["title"].startswith(prefix):
                self.lwm2m_port = int(entry["title"].removeprefix(prefix).rstrip(")"))
                return
        port = free_udp_port()
        flow = await self.post(
            session, "/api/config/config_entries/flow", {"handler": "iot_bridge"}
        )
        flow = await self.post(
            session,
            f"/api/config/config_entries/flow/{flow['flow_id']}",
            {"next_step_id": "lwm2m"},
        )
        result = await self.post(
            session,
            f"/api/config/config_entries/flow/{flow['flow_id']}",
            {"host": "127.0.0.1", "port": port, "admission": "ask"},
        )
        if result.get("type") != "create_entry":
            raise RuntimeError(f"config flow did not create the LwM2M server: {result}")
        self.lwm2m_port = port
        log(f"LwM2M server added through the config flow: {result['title']}, admission 'ask me'")

    async def wait_for_state(
        self, session: aiohttp.ClientSession, entity_id: str, timeout: float = 60
    ) -> dict[str, Any]:
        """Wait until an entity exists with a known state."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            async with session.get(
                f"{self.base_url}/api/states/{entity_id}", headers=self._headers()
            ) as response:
                if response.status == 200:
                    state: dict[str, Any] = await response.json()
                    if state["state"] not in ("unknown", "unavailable"):
                        return state
            await asyncio.sleep(0.3)
        raise TimeoutError(f"{entity_id} did not appear")

    async def locker_device_id(
        self, session: aiohttp.ClientSession, name: str = "Parcel locker"
    ) -> str:
        """Home Assistant's device id of a simulated parcel locker."""
        devices = await self.ws(session, {"type": "config/device_registry/list"})
        for device in devices:
            if device["name"] == name:
                return str(device["id"])
        raise RuntimeError(f"{name} is not in the device registry")

    async def coap_discovery(
        self, session: aiohttp.ClientSession, timeout: float = 60
    ) -> dict[str, Any] | None:
        """The discovered CoAP locker's flow; None once an entry for it exists (a later
        run: discovery then only updates that entry's address)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entries = await self.get(session, "/api/config/config_entries/entry?domain=iot_bridge")
            if any(entry["title"] == COAP_LOCKER for entry in entries):
                return None
            flows = await self.ws(session, {"type": "config_entries/flow/progress"})
            for flow in _discovery_flows(flows):
                if str(flow["context"].get("unique_id", "")).startswith("coap:"):
                    return flow
            await asyncio.sleep(0.5)
        raise TimeoutError("the CoAP locker was not discovered")

    async def lwm2m_discovery(
        self, session: aiohttp.ClientSession, timeout: float = 60
    ) -> dict[str, Any] | None:
        """The flow asking about the registered LwM2M locker; None once it was accepted
        (a later run: its entities exist and it gets no new flow)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            async with session.get(
                f"{self.base_url}/api/states/{LWM2M_DOOR_2}", headers=self._headers()
            ) as response:
                if response.status == 200:
                    return None
            flows = await self.ws(session, {"type": "config_entries/flow/progress"})
            for flow in _discovery_flows(flows):
                unique_id = str(flow["context"].get("unique_id", ""))
                if unique_id.startswith("device:") and unique_id.endswith(f":{LWM2M_ENDPOINT}"):
                    return flow
            await asyncio.sleep(0.5)
        raise TimeoutError(f"the LwM2M locker {LWM2M_ENDPOINT} did not register")

    async def accept_lwm2m_locker(self, session: aiohttp.ClientSession) -> None:
        """Accept the waiting LwM2M locker the way the UI's "Add" then "Submit" do."""
        flow = await self.lwm2m_discovery(session)
        if flow is not None:
            result = await self.post(
                session, f"/api/config/config_entries/flow/{flow['flow_id']}", {}
            )
            if result.get("reason") != "device_accepted":
                raise RuntimeError(f"the LwM2M device was not accepted: {result}")
            log(f"LwM2M device discovered and accepted: {LWM2M_ENDPOINT}")
        await self.wait_for_state(session, LWM2M_DOOR_2)

    async def confirm_coap_locker(self, session: aiohttp.ClientSession) -> None:
        """Confirm the discovered CoAP locker the way the UI's "Add" button does."""
        flow = await self.coap_discovery(session)
        if flow is not None:
            result = await self.post(
                session, f"/api/config/config_entries/flow/{flow['flow_id']}", {}
            )
            if result.get("type") != "create_entry":
                raise RuntimeError(f"the CoAP discovery flow did not create an entry: {result}")
            log(f"CoAP device discovered and confirmed: {result['title']}")
        await self.wait_for_state(session, COAP_DOOR_2)

    async def add_demo_automation(self, session: aiohttp.ClientSession) -> None:
        """'Open door 2, notify whether it was confirmed', saved as through the editor."""
        device_id = await self.locker_device_id(session)
        command = {"device_id": device_id, "capability": "door2_lock", "action": "open"}
        automation = {
            "id": "iot_bridge_demo_open_door_2",
            "alias": "Open locker door 2 and report",
            "description": "Opens door 2 with a confirmed command and says whether it opened.",
            "triggers": [{"trigger": "state", "entity_id": "input_button.open_door_2"}],
            "actions": [
                {
                    "action": "iot_bridge.send_command",
                    "data": command,
                    "response_variable": "result",
                    "continue_on_error": True,
                },
                {
                    "action": "persistent_notification.create",
                    "data": {
                        "title": "Locker door 2",
                        "message": (
                            "{% if result is defined %}Door 2 opened — confirmed in "
                            "{{ result.latency_ms | round(0) }} ms.{% else %}Door 2 did NOT "
                            "open: the locker did not confirm.{% endif %}"
                        ),
                    },
                },
            ],
            "mode": "single",
        }
        await self.post(session, f"/api/config/automation/config/{automation['id']}", automation)

    async def add_demo_dashboard(self, session: aiohttp.ClientSession) -> None:
        """A dashboard with the locker, the climate node and the demo button."""
        locks = [f"lock.parcel_locker_door_{n}" for n in (1, 2, 3)]
        doors = [f"binary_sensor.parcel_locker_door_{n}_open" for n in (1, 2, 3)]
        config = {
            "title": DEMO_NAME,
            "views": [
                {
                    "title": "Demo",
                    "path": "demo",
                    "cards": [
                        {
                            "type": "entities",
                            "title": "Parcel locker",
                            "entities": [
                                *locks,
                                *doors,
                                "sensor.parcel_locker_temperature",
                            ],
                        },
                        {
                            "type": "entities",
                            "title": "Climate node",
                            "entities": [
                                "sensor.climate_node_temperature",
                                "sensor.climate_node_humidity",
                                "switch.climate_node_relay",
                                "number.climate_node_setpoint",
                            ],
                        },
                        {
                            "type": "button",
                            "entity": "input_button.open_door_2",
                            "name": "Open door 2 (confirmed)",
                            "tap_action": {"action": "toggle"},
                        },
                        {
                            "type": "entities",
                            "title": COAP_LOCKER,
                            "entities": [
                                *(f"lock.coap_parcel_locker_door_{n}" for n in (1, 2, 3)),
                                *(
                                    f"binary_sensor.coap_parcel_locker_door_{n}_open"
                                    for n in (1, 2, 3)
                                ),
                                "sensor.coap_parcel_locker_temperature",
                            ],
                        },
                    ],
                }
            ],
        }
        await self.ws(session, {"type": "lovelace/config/save", "config": config})

    async def open_door(
        self,
        session: aiohttp.ClientSession,
        locker: str = "Parcel locker",
        capability: str = "door2_lock",
    ) -> dict[str, Any]:
        """Open door 2 of a locker through the REST API and return the action's response."""
        command = {
            "device_id": await self.locker_device_id(session, locker),
            "capability": capability,
            "action": "open",
        }
        answer = await self.post(
            session, "/api/services/iot_bridge/send_command?return_response", command
        )
        return dict(answer["service_response"])

    async def try_jammed_door(self, session: aiohttp.ClientSession) -> str:
        """Open the jammed door 3 of the parcel locker; return the refusal's message."""
        command = {
            "type": "call_service",
            "domain": "iot_bridge",
            "service": "send_command",
            "service_data": {
                "device_id": await self.locker_device_id(session),
                "capability": JAMMED_LOCK,
                "action": "open",
            },
            "return_response": True,
        }
        try:
            await self.ws(session, command)
        except RuntimeError as err:
            return str(err)
        raise RuntimeError("the jammed door 3 confirmed a command")

    async def prepare(self, session: aiohttp.ClientSession) -> None:
        """Everything after the processes run: onboarding, hubs, the LwM2M locker,
        automation, dashboard."""
        await self.wait_until_up(session)
        await self.onboard(session)
        await self.add_mqtt_hub(session)
        await self.add_lwm2m_server(session)
        self.start_lwm2m_locker()
        await self.wait_for_state(session, LOCKER_DOOR_2)
        await self.add_demo_automation(session)
        await self.add_demo_dashboard(session)


def _discovery_flows(flows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """IoT Bridge's flows waiting under Discovered (CoAP scan answers, pending devices)."""
    return [
        dict(flow)
        for flow in flows
        if flow["handler"] == "iot_bridge"
        and flow["context"].get("source") == "integration_discovery"
    ]


async def _open_and_report(
    stack: DemoStack,
    session: aiohttp.ClientSession,
    label: str,
    locker: str,
    entity_id: str,
    capability: str = "door2_lock",
) -> bool:
    response = await stack.open_door(session, locker, capability)
    state = await stack.get(session, f"/api/states/{entity_id}")
    log(
        f"{label}: {response.get('status')} in {response.get('latency_ms')} ms "
        f"after {response.get('attempts')} attempt(s); {entity_id} is now '{state['state']}'"
    )
    return response.get("status") == "confirmed" and state["state"] == "open"


async def _open_lwm2m_and_report(stack: DemoStack, session: aiohttp.ClientSession) -> bool:
    """LwM2M's lock status knows only locked and unlocked: the door's own sensor says open."""
    response = await stack.open_door(session, LWM2M_ENDPOINT, LWM2M_DOOR_2_KEY)
    door = "unknown"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        door = (await stack.get(session, f"/api/states/{LWM2M_DOOR_2_OPEN}"))["state"]
        if door == "on":
            break
        await asyncio.sleep(0.2)
    lock = (await stack.get(session, f"/api/states/{LWM2M_DOOR_2}"))["state"]
    log(
        f"lwm2m door 2: {response.get('status')} in {response.get('latency_ms')} ms "
        f"after {response.get('attempts')} attempt(s); {LWM2M_DOOR_2} is now '{lock}', "
        f"{LWM2M_DOOR_2_OPEN} is '{door}'"
    )
    return response.get("status") == "confirmed" and door == "on"


async def run_headless(stack: DemoStack) -> int:
    """Start, confirm the discovered CoAP locker, accept the waiting LwM2M locker, open door 2
    of all three lockers, print the outcomes and latencies; 0 only if all were confirmed."""
    async with aiohttp.ClientSession() as session:
        await stack.prepare(session)
        await stack.confirm_coap_locker(session)
        await stack.accept_lwm2m_locker(session)
        mqtt = await _open_and_report(stack, session, "door 2", "Parcel locker", LOCKER_DOOR_2)
        coap = await _open_and_report(stack, session, "coap door 2", COAP_LOCKER, COAP_DOOR_2)
        lwm2m = await _open_lwm2m_and_report(stack, session)
        async with session.get(f"{stack.base_url}/") as page:
            ui_ok = page.status == 200
    log(f"UI at {stack.base_url}/ answered {'200' if ui_ok else 'an error'}")
    confirmed = mqtt and coap and lwm2m and ui_ok
    print("DOOR CONFIRMED" if confirmed else "DOOR NOT CONFIRMED", flush=True)
    return 0 if confirmed else 1


async def run_interactive(stack: DemoStack) -> int:
    """Set up, print how to log in, then wait for Ctrl-C."""
    async with aiohttp.ClientSession() as session:
        await stack.prepare(session)
    log(f"ready: open {stack.base_url}/ and log in as '{DEMO_USER}' / '{DEMO_PASSWORD}'")
    log("press the dashboard's 'Open door 2' button; Ctrl-C stops everything")
    async with aiohttp.ClientSession() as session:
        if await stack.coap_discovery(session) is not None:
            log(
                f"discovered: {COAP_LOCKER} - add it under Settings > Devices & services "
                "(Discovered: IoT Bridge, Add)"
            )
        if await stack.lwm2m_discovery(session) is not None:
            log(
                f"waiting: LwM2M locker '{LWM2M_ENDPOINT}' registered with "
                f"{LWM2M_TITLE.format(port=stack.lwm2m_port)} - accept it under Settings > "
                f"Devices & services (Discovered: {LWM2M_ENDPOINT}, Add, Submit); its doors "
                "appear on its device page"
            )
        else:
            log(f"LwM2M locker '{LWM2M_ENDPOINT}' was accepted before: its doors are there")
        log(
            "another LwM2M locker: PYTHONPATH=simulator .venv/bin/python -m iot_bridge_sim "
            f"--protocol lwm2m --server coap://127.0.0.1:{stack.lwm2m_port} --device locker "
            "--endpoint-prefix lwm2m- --number 2"
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/develop", description=__doc__)
    parser.add_argument("--headless", action="store_true", help="open a door, report, exit")
    parser.add_argument("--port", type=int, default=None, help="HTTP port (default 8123)")
    parser.add_argument("--mqtt-port", type=int, default=None, help="broker port (default 1883)")
    args = parser.parse_args(argv)

    if args.headless:
        # A throw-away config and free ports: runs beside an interactive demo or in CI.
        config_dir = Path(tempfile.mkdtemp(prefix="iot-bridge-headless-"))
        stack = DemoStack(
            config_dir,
            http_port=args.port or free_port(),
            mqtt_port=args.mqtt_port or free_port(),
            quiet=True,
        )
    else:
        stack = DemoStack(
            ROOT / ".develop" / "config",
            http_port=args.port or 8123,
            mqtt_port=args.mqtt_port or 1883,
        )
    try:
        stack.start_processes()
        runner = run_headless if args.headless else run_interactive
        return asyncio.run(runner(stack))
    except KeyboardInterrupt:
        return 130  # Ctrl-C before the demo was ready: `finally` still stops everything
    except Exception as err:
        log(f"failed: {err}")
        if args.headless:
            hass_log = stack.config_dir / "home-assistant.out"
            if hass_log.exists():
                print(hass_log.read_text()[-4000:], file=sys.stderr)
        return 1
    finally:
        stack.stop()
        if args.headless:
            shutil.rmtree(stack.config_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
