"""Peer processes of the benchmarks, talking line commands on stdin/stdout.

    python -m benchmarks.peers locker --port P --prefix X
    python -m benchmarks.peers flood --port P --prefix X --style iot_bridge --shape all ...
    python -m benchmarks.peers flood ... --shape fleet --devices 1000 --sensors 5
    python -m benchmarks.peers fleet --port P --prefix X --style ha_mqtt --devices N

They run outside the measured process so that their Python work does not share its GIL.
This module imports only paho and the simulator (no Home Assistant): it starts fast.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from iot_bridge_sim.devices import parcel_locker
from iot_bridge_sim.mqtt import MqttDeviceSimulator

type Style = Literal["iot_bridge", "ha_mqtt"]
type Shape = Literal["all", "one", "fleet"]

HOST = "127.0.0.1"
HA_DISCOVERY_PREFIX = "homeassistant"
NODELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def say(*words: object) -> None:
    print(*words, flush=True)


# -- the parcel locker ------------------------------------------------------------------


def run_locker(port: int, prefix: str) -> None:
    """The simulator from iot_bridge_sim (TCP_NODELAY on, as the profile advises devices),
    silent (its log lines would cost it time)."""
    sim = MqttDeviceSimulator(
        parcel_locker(), host=HOST, port=port, prefix=prefix, protocol="5", printer=_silent
    )
    sim.start()
    say("ready")
    sys.stdin.read()  # until the benchmark closes our stdin
    sim.stop()


def _silent(_line: str) -> None:
    """Printer that drops the simulator's per-command log lines."""


# -- the state flood --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FloodPlan:
    """Which topics and payloads one flood uses; shared by the publisher and the benchmark.

    `devices` meters of `sensors` sensors each. Shapes: "all" (one device, every message
    sets all its sensors), "one" (one device, every message sets one sensor, in turn) and
    "fleet" (one sensor per message, message i going to device i % devices, so consecutive
    messages never hit the same device).
    """

    style: Style
    shape: Shape
    prefix: str
    device: str
    sensors: int
    devices: int = 1

    @property
    def keys(self) -> list[str]:
        return [f"s{index}" for index in range(self.sensors)]

    @property
    def device_names(self) -> list[str]:
        if self.devices == 1:
            return [self.device]
        return [f"{self.device}{index:04d}" for index in range(self.devices)]

    def targets(self) -> list[tuple[str, str]]:
        """Every (device, sensor) pair: one entity each."""
        return [(device, key) for device in self.device_names for key in self.keys]

    def state_topic(self, device: str, key: str) -> str:
        """IoT Bridge has one state topic per device; each HA sensor gets one of its own
        unless every message carries all values (with a shared topic the other sensors'
        templates would render an undefined key on every message)."""
        if self.style == "ha_mqtt" and self.shape != "all":
            return f"{self.prefix}/{device}/{key}"
        return f"{self.prefix}/{device}/state"

    def _target(self, index: int) -> tuple[str, str]:
        device = index % self.devices
        key = (index // self.devices) % self.sensors
        return self.device_names[device], self.keys[key]

    def message(self, index: int) -> tuple[str, bytes]:
        """Message `index` of the flood: every sensor, or one sensor, set to index."""
        if self.shape == "all":
            return self.state_topic(self.device, self.keys[0]), _json(
                dict.fromkeys(self.keys, index)
            )
        device, key = self._target(index)
        return self.state_topic(device, key), _json({key: index})

    def setting_all(self, value: int) -> list[tuple[str, bytes]]:
        """Messages that set every sensor to `value` (the probe)."""
        if self.shape == "all":
            return [
                (
                    self.state_topic(self.device, self.keys[0]),
                    _json(dict.fromkeys(self.keys, value)),
                )
            ]
        return [(self.state_topic(d, k), _json({k: value})) for d, k in self.targets()]

    def final_values(self, messages: int) -> dict[tuple[str, str], int]:
        """Each sensor's value after the whole flood: the sentinels the benchmark waits for."""
        last = messages - 1
        if self.shape == "all":
            return dict.fromkeys(self.targets(), last)
        finals: dict[tuple[str, str], int] = {}
        index = last
        while index >= 0 and len(finals) < self.devices * self.sensors:
            finals.setdefault(self._target(index), index)
            index -= 1
        return finals

    def updates_per_message(self) -> int:
        return self.sensors if self.shape == "all" else 1

    def announcements(self) -> list[tuple[str, bytes]]:
        """Retained discovery for either integration, plus whatever makes it available."""
        if self.style == "iot_bridge":
            return [m for device in self.device_names for m in self._iot_bridge(device)]
        return [self._ha_discovery(device, key) for device, key in self.targets()]

    def _iot_bridge(self, device: str) -> list[tuple[str, bytes]]:
        capabilities = [
            {"kind": "sensor", "key": key, "name": key, "unit": "W", "state_class": "measurement"}
            for key in self.keys
        ]
        base = f"{self.prefix}/{device}"
        config = {"id": device, "name": device, "capabilities": capabilities}
        return [
            (f"{base}/config", _json(config)),
            (f"{base}/availability", b"online"),
            (f"{base}/state", _json(dict.fromkeys(self.keys, 0))),
        ]

    def _ha_discovery(self, device: str, key: str) -> tuple[str, bytes]:
        config = {
            "name": key,
            "unique_id": self.ha_unique_id(device, key),
            "state_topic": self.state_topic(device, key),
            "value_template": f"{{{{ value_json.{key} }}}}",
            "unit_of_measurement": "W",
            "state_class": "measurement",
            "device": {"identifiers": [f"bench_{device}"], "name": device},
        }
        object_id = f"{device}_{key}"
        return f"{HA_DISCOVERY_PREFIX}/sensor/{object_id}/config", _json(config)

    def ha_unique_id(self, device: str, key: str) -> str:
        return f"bench_{device}_{key}"


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class Flooder:
    """One paho connection driven by hand (no network thread): publishes as fast as it can."""

    def __init__(self, port: int, plan: FloodPlan) -> None:
        self.plan = plan
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"bench-flood-{plan.device}",
            protocol=mqtt.MQTTv5,
        )
        # Long keepalive: the peer sits idle on stdin while Home Assistant starts.
        self.client.max_inflight_messages_set(1000)
        self.client.connect(HOST, port, keepalive=600)
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            # Without it the flood's last segment can wait ~40 ms for a delayed ACK.
            sock.setsockopt(*NODELAY)
        self._pump(self.client.is_connected)

    def _pump(self, done: Callable[[], bool], timeout: float = 10.0) -> None:
        until = time.monotonic() + timeout
        while not done():
            if time.monotonic() > until:
                raise TimeoutError("broker did not answer")
            self.client.loop(timeout=0.01)

    def announce(self) -> None:
        infos = [
            self.client.publish(topic, payload, qos=1, retain=True)
            for topic, payload in self.plan.announcements()
        ]
        self._pump(lambda: all(info.is_published() for info in infos))

    def send(self, messages: Sequence[tuple[str, bytes]]) -> float:
        """Publish at QoS 0 and return the seconds until the last one left the socket."""
        start = time.perf_counter()
        for topic, payload in messages:
            # Without a network thread paho writes the packet right inside publish().
            self.client.publish(topic, payload, qos=0)
        self._pump(lambda: not self.client.want_write(), timeout=60.0)
        return time.perf_counter() - start

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop(timeout=0.1)


def run_flood(port: int, plan: FloodPlan, messages: int) -> None:
    """Announce, then obey `probe VALUE` and `flood` lines until stdin closes."""
    flooder = Flooder(port, plan)
    flooder.announce()
    # Built before the clock starts: the flood measures delivery, not JSON encoding.
    flood = [plan.message(index) for index in range(messages)]
    say("ready")
    for line in sys.stdin:
        command, *args = line.split()
        if command == "probe":
            flooder.send(plan.setting_all(int(args[0])))
            say("ok")
        elif command == "flood":
            say("sent", f"{flooder.send(flood):.6f}")
    flooder.close()


# -- a fleet's retained announcements ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FleetPlan:
    """N devices, each with one sensor and three retained topics: config, state, availability.

    Every `offline_every`-th device announced itself and then went offline (its Last Will),
    so availability has to arrive for its entity to show the right thing.
    """

    style: Style
    prefix: str
    devices: int
    offline_every: int = 7

    def name(self, index: int) -> str:
        return f"d{index:05d}"

    def offline(self, index: int) -> bool:
        return index % self.offline_every == 0

    def state_topic(self, index: int) -> str:
        return f"{self.prefix}/{self.name(index)}/state"

    def availability_topic(self, index: int) -> str:
        return f"{self.prefix}/{self.name(index)}/availability"

    def messages(self, index: int) -> list[tuple[str, bytes]]:
        """The device's retained messages; state and availability are the same bytes on both
        sides, the config is each integration's own discovery format."""
        name = self.name(index)
        if self.style == "iot_bridge":
            capability = {"kind": "sensor", "key": "level", "name": "level", "unit": "%"}
            description = {"id": name, "name": name, "capabilities": [capability]}
            config = (f"{self.prefix}/{name}/config", _json(description))
        else:
            discovery = {
                "name": "level",
                "unique_id": f"{name}_level",
                "state_topic": self.state_topic(index),
                "value_template": "{{ value_json.level }}",
                "unit_of_measurement": "%",
                "availability_topic": self.availability_topic(index),
                "device": {"identifiers": [f"bench_{name}"], "name": name},
            }
            config = (f"{HA_DISCOVERY_PREFIX}/sensor/{name}/config", _json(discovery))
        availability = b"offline" if self.offline(index) else b"online"
        return [
            config,
            (self.state_topic(index), _json({"level": index})),
            (self.availability_topic(index), availability),
        ]


def run_fleet(port: int, plan: FleetPlan) -> None:
    """Publish every device's retained messages at QoS 1, wait for the PUBACKs, exit."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-fleet-{plan.style}", protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(1000)
    client.connect(HOST, port)
    client.loop_start()
    infos = [
        client.publish(topic, payload, qos=1, retain=True)
        for index in range(plan.devices)
        for topic, payload in plan.messages(index)
    ]
    for info in infos:
        info.wait_for_publish(timeout=60)
    client.disconnect()
    client.loop_stop()
    say("published", len(infos))


# -- command line -----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers")
    sub = parser.add_subparsers(dest="role", required=True)
    locker = sub.add_parser("locker", help="the simulated parcel locker (MQTT 5)")
    flood = sub.add_parser("flood", help="a sensor device that floods state messages")
    fleet = sub.add_parser("fleet", help="publish a fleet's retained messages, then exit")
    for role in (locker, flood, fleet):
        role.add_argument("--port", type=int, required=True)
        role.add_argument("--prefix", required=True)
    flood.add_argument("--style", choices=["iot_bridge", "ha_mqtt"], required=True)
    flood.add_argument("--shape", choices=["all", "one", "fleet"], required=True)
    flood.add_argument("--device", required=True)
    flood.add_argument("--sensors", type=int, default=10)
    flood.add_argument("--messages", type=int, required=True)
    flood.add_argument("--devices", type=int, default=1)
    fleet.add_argument("--style", choices=["iot_bridge", "ha_mqtt"], required=True)
    fleet.add_argument("--devices", type=int, required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.role == "locker":
        run_locker(args.port, args.prefix)
        return 0
    if args.role == "fleet":
        run_fleet(args.port, FleetPlan(args.style, args.prefix, args.devices))
        return 0
    plan = FloodPlan(args.style, args.shape, args.prefix, args.device, args.sensors, args.devices)
    run_flood(args.port, plan, args.messages)
    return 0


if __name__ == "__main__":
    sys.exit(main())
