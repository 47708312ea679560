"""A CoAP parcel-locker door written from docs/protocols/coap.md alone (aiocoap server).

    python tests/doc_device/coap_lock_device.py --port 5683 [--blocked]

One lock (/lock) and its door (/door), both observable text/plain resources, the OCF device
resource (/oic/d) and /.well-known/core. Commands are PUTs with ?id=…&dl=…; repeated ids
get the first answer again, expired ones 4.12. --blocked refuses to open (4.03). It prints
one line per command and exits on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from collections import OrderedDict

import aiocoap
from aiocoap import resource
from aiocoap.numbers.codes import Code

DEVICE_ID = "doc-lock-0001"
TEXT = 0
RECENT = 16


class Door(resource.ObservableResource):
    """rt="oic.r.door": 1 while open."""

    def __init__(self) -> None:
        super().__init__()
        self.open = False

    def get_link_description(self) -> dict[str, str | None]:
        return {"rt": "oic.r.door", "if": "core.s", "ct": "0", "title": "Door open", "obs": None}

    async def render_get(self, _request: aiocoap.Message) -> aiocoap.Message:
        message = aiocoap.Message(payload=b"1" if self.open else b"0", content_format=TEXT)
        message.opt.max_age = 60
        return message


class Lock(resource.ObservableResource):
    """rt="oic.r.lock.status": locked / unlocked / open, set with PUT."""

    def __init__(self, door: Door, blocked: bool) -> None:
        super().__init__()
        self.state = "locked"
        self.door = door
        self.blocked = blocked
        self.recent: OrderedDict[str, tuple[Code, bytes]] = OrderedDict()

    def get_link_description(self) -> dict[str, str | None]:
        return {"rt": "oic.r.lock.status", "if": "core.a", "ct": "0", "title": "Door", "obs": None}

    async def render_get(self, _request: aiocoap.Message) -> aiocoap.Message:
        message = aiocoap.Message(payload=self.state.encode(), content_format=TEXT)
        message.opt.max_age = 60
        return message

    async def render_put(self, request: aiocoap.Message) -> aiocoap.Message:
        query = dict(item.partition("=")[::2] for item in request.opt.uri_query)
        command_id = query.get("id", "")
        if command_id in self.recent:  # a retry: answer again, do nothing
            code, payload = self.recent[command_id]
            print(f"repeat {command_id}", flush=True)
            return aiocoap.Message(code=code, payload=payload)
        code, payload = self.carry_out(request.payload.decode().strip(), query.get("dl"))
        if command_id:
            self.recent[command_id] = (code, payload)
            while len(self.recent) > RECENT:
                self.recent.popitem(last=False)
        print(f"{request.payload.decode()} id={command_id} -> {code.dotted}", flush=True)
        return aiocoap.Message(code=code, payload=payload)

    def carry_out(self, wanted: str, deadline: str | None) -> tuple[Code, bytes]:
        if deadline is not None and time.time() > float(deadline):
            return Code.PRECONDITION_FAILED, b"expired"
        if wanted not in ("locked", "unlocked", "open"):
            return Code.BAD_REQUEST, b"unknown state"
        if wanted == "open" and self.blocked:
            return Code.FORBIDDEN, b"door blocked"
        self.state = wanted
        if wanted in ("open", "locked"):
            self.door.open = wanted == "open"
            self.door.updated_state()
        self.updated_state()
        return Code.CHANGED, wanted.encode()


class DeviceInfo(resource.Resource):
    """rt="oic.wk.d": who this device is."""

    def get_link_description(self) -> dict[str, str]:
        return {"rt": "oic.wk.d", "ct": "50"}

    async def render_get(self, _request: aiocoap.Message) -> aiocoap.Message:
        info = {"di": DEVICE_ID, "n": "Doc lock", "mnmn": "IoT Bridge docs", "mnmo": "DL-1"}
        return aiocoap.Message(payload=json.dumps(info).encode(), content_format=50)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5683)
    parser.add_argument("--blocked", action="store_true", help="refuse to open")
    args = parser.parse_args()

    site = resource.Site()
    site.add_resource(
        [".well-known", "core"],
        resource.WKCResource(site.get_resources_as_linkheader, impl_info=None),
    )
    door = Door()
    site.add_resource(["oic", "d"], DeviceInfo())
    site.add_resource(["lock"], Lock(door, args.blocked))
    site.add_resource(["door"], door)
    context = await aiocoap.Context.create_server_context(
        site, bind=("::ffff:127.0.0.1", args.port), transports=["udp6"]
    )
    print(f"{DEVICE_ID} listening on 127.0.0.1:{args.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await context.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
