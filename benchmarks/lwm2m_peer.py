"""A share of the LwM2M fleet in its own process, for bench_lwm2m.py.

    python -m benchmarks.lwm2m_peer PORT FIRST COUNT PREFIX [LIFETIME [one]]

The fleet's light endpoints (iot_bridge_sim.lwm2m_fleet: /1/0, /3/0 and /3303/0 each) are
bound before anything is sent; prints "ready COUNT". LIFETIME (default 3,600 s: no Update
falls inside a run) is the registration lifetime; "one" registers /1/0 and /3303/0 only (one
observed instance per endpoint). Commands on stdin, one per line:

- "register": every endpoint sends its Register at once (the storm); answers "registering";
- "storm K": the next K endpoints not registered yet send their Register at once (and
  Updates start); answers "storming K";
- "notify RATE SECONDS": new temperatures, round-robin over the observed endpoints, RATE
  per second (0: as fast as this process can) for SECONDS; answers "notified SENT SECONDS";
- "values": answers "values JSON" ({endpoint: temperature});
- "counters": answers "counters JSON" (the fleet's counters).

Closing stdin stops it without De-registers (the server goes away with the benchmark).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from iot_bridge_sim.lwm2m_fleet import (
    LINKS,
    LINKS_ONE,
    Endpoint,
    FleetOptions,
    Lwm2mFleet,
    _raise_file_limit,
    connect,
)

LIFETIME = 3600  # no Update falls inside a run
TICK = 0.01  # pacing granularity of "notify"
BATCH = 50  # notifications between yields at full speed


async def notify(fleet: Lwm2mFleet, rate: float, seconds: float) -> tuple[int, float]:
    """Send notifications for `seconds`; how many went out and how long it took."""
    observed: list[Endpoint] = list(fleet.observed)
    if not observed:
        return 0, 0.0
    before = fleet.counters.notifications
    loop = asyncio.get_running_loop()
    start = loop.time()
    end = start + seconds
    cursor = 0
    budget = 0.0
    last = start
    while (now := loop.time()) < end:
        if rate > 0:
            budget += rate * (now - last)
            last = now
            wanted = int(budget)
        else:
            wanted = BATCH
        for _ in range(wanted):
            cursor = (cursor + 1) % len(observed)
            observed[cursor].notify()
        budget -= wanted
        await asyncio.sleep(TICK if rate > 0 else 0)
    return fleet.counters.notifications - before, loop.time() - start


async def main(
    port: int, first: int, count: int, prefix: str, lifetime: int = LIFETIME, links: str = LINKS
) -> int:
    _raise_file_limit(count + 256)
    fleet = Lwm2mFleet(
        FleetOptions(
            server=("127.0.0.1", port),
            count=count,
            prefix=prefix,
            first=first,
            lifetime=lifetime,
            links=links,
        ),
        printer=lambda _line: None,
    )
    stormed = 0  # endpoints whose Register went out with "storm"
    updating = False
    # Lwm2mFleet.start() binds and registers in one go; here the sockets come first, so
    # the storm is only the Registers.
    fleet._started_at = time.monotonic()
    for number in range(first, first + count):
        endpoint = Endpoint(fleet, f"{prefix}{number}")
        await connect(endpoint, ("127.0.0.1", 0), fleet.options.server)
        fleet.endpoints.append(endpoint)
    print(f"ready {len(fleet.endpoints)}", flush=True)
    loop = asyncio.get_running_loop()
    try:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            words = line.split()
            if words[:1] == ["register"]:
                fleet._started_at = time.monotonic()
                fleet._background(fleet._register_all())
                fleet._background(fleet._update_forever())
                print("registering", flush=True)
            elif words[:1] == ["storm"]:
                wave = fleet.endpoints[stormed : stormed + int(words[1])]
                stormed += len(wave)
                for endpoint in wave:
                    fleet._background(fleet._register(endpoint))
                if not updating:
                    updating = True
                    fleet._background(fleet._update_forever())
                print(f"storming {len(wave)}", flush=True)
            elif words[:1] == ["notify"]:
                sent, took = await notify(fleet, float(words[1]), float(words[2]))
                print(f"notified {sent} {took:.6f}", flush=True)
            elif words[:1] == ["values"]:
                values = {endpoint.name: endpoint.temperature for endpoint in fleet.endpoints}
                print(f"values {json.dumps(values)}", flush=True)
            elif words[:1] == ["counters"]:
                print(f"counters {json.dumps(fleet.snapshot())}", flush=True)
    finally:
        await fleet.stop(deregister=False)
    return 0


if __name__ == "__main__":
    lifetime = int(sys.argv[5]) if len(sys.argv) > 5 else LIFETIME
    links = LINKS_ONE if sys.argv[6:7] == ["one"] else LINKS
    sys.exit(
        asyncio.run(
            main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], lifetime, links)
        )
    )
