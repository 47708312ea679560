"""A chatty device for tests/test_mqtt_flood.py: state for one device, as fast as possible.

    python tests/flood_peer.py HOST PORT TOPIC KEY MAX_MESSAGES MAX_SECONDS

Publishes {KEY: n} for n = 0, 1, ... at QoS 0 until MAX_MESSAGES were sent or MAX_SECONDS
passed, writing only as fast as the broker reads (no unbounded queue in this process);
the last message goes at QoS 1 and is acknowledged before the peer disconnects. Prints one
JSON line: {"sent": ..., "last": ..., "seconds": ...}. Loopback only, bounded in count and
time: the test stops it by terminating it if anything goes wrong.
"""

from __future__ import annotations

import json
import select
import sys
import time

import paho.mqtt.client as mqtt


def main() -> None:
    host, port, topic, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    max_messages, max_seconds = int(sys.argv[5]), float(sys.argv[6])
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="iot-bridge-flooder")
    client.connect(host, port, keepalive=30)
    while not client.is_connected():
        client.loop(0.1)
    sock = client.socket()
    started = time.monotonic()
    deadline = started + max_seconds
    sent = 0
    while sent < max_messages - 1 and (sent % 1000 or time.monotonic() < deadline):
        client.publish(topic, json.dumps({key: sent}), qos=0)
        sent += 1
        while client.want_write():
            select.select([], [sock], [], 1.0)
            client.loop_write()
    info = client.publish(topic, json.dumps({key: sent}), qos=1)
    while not info.is_published():
        client.loop(0.1)
    seconds = time.monotonic() - started
    client.disconnect()
    print(json.dumps({"sent": sent + 1, "last": sent, "seconds": round(seconds, 3)}), flush=True)


if __name__ == "__main__":
    main()
