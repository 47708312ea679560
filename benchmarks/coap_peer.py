"""A simulated CoAP device in its own process, for bench_coap.py.

    python -m benchmarks.coap_peer locker|meter

Prints "ready PORT" once it serves on 127.0.0.1. Commands on stdin, one per line:
"flood N" (meter: N rounds, each changing every sensor, one notification per sensor per
round) answers "flooded SECONDS". Closing stdin stops it.
"""

from __future__ import annotations

import sys

from iot_bridge_sim.coap import CoapDeviceSimulator
from iot_bridge_sim.devices import DeviceModel, parcel_locker

SENSORS = 10


def meter() -> DeviceModel:
    """Ten observable power sensors (IPSO 3328), text/plain."""
    return DeviceModel(
        device_id="meter1",
        name="Meter",
        capabilities=[
            {
                "kind": "sensor",
                "key": f"s{index}",
                "name": f"S{index}",
                "device_class": "power",
                "unit": "W",
                "state_class": "measurement",
            }
            for index in range(SENSORS)
        ],
        state={f"s{index}": 0 for index in range(SENSORS)},
    )


def main() -> int:
    kind = sys.argv[1]
    model = parcel_locker() if kind == "locker" else meter()
    # Confirmable notifications (the simulator's default): at most one in flight (NSTART
    # 1), so a flood is paced by Home Assistant's ACKs instead of overflowing its socket
    # buffer (NON ones would be lost there; the last values would come with the next
    # Max-Age refresh).
    device = CoapDeviceSimulator(model, printer=lambda _line: None)
    device.start()
    print(f"ready {device.port}", flush=True)
    try:
        for line in sys.stdin:
            words = line.split()
            if words[:1] == ["flood"]:
                rounds = int(words[1])
                updates = [
                    {f"s{index}": value for index in range(SENSORS)}
                    for value in range(1, rounds + 1)
                ]
                seconds = device.notify_sequence(updates)
                print(f"flooded {seconds:.6f}", flush=True)
    finally:
        device.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
