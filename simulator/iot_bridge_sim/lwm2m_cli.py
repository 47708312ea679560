"""CLI for LwM2M clients: python -m iot_bridge_sim --protocol lwm2m [options].

All devices run on one event loop; each registers from its own socket. Runs until Ctrl-C
or SIGTERM, then de-registers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import signal
import sys
from collections.abc import Sequence

from .core_import import use_core_without_home_assistant

use_core_without_home_assistant()  # before anything imports the LwM2M codecs

from .devices import DEVICE_FACTORIES  # noqa: E402
from .lwm2m import (  # noqa: E402
    DEFAULT_SERVER,
    FORMAT_NAMES,
    Lwm2mBehaviour,
    Lwm2mClient,
    Lwm2mOptions,
    Printer,
)

DEFAULT_KIND = "locker"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m iot_bridge_sim --protocol lwm2m",
        description="Simulated LwM2M clients registering with an LwM2M server "
        "(docs/protocols/lwm2m.md).",
    )
    parser.add_argument("--protocol", choices=["lwm2m"], default="lwm2m")
    parser.add_argument("--server", default=DEFAULT_SERVER, help="coap://host:port of the server")
    parser.add_argument(
        "--device",
        action="append",
        choices=sorted(DEVICE_FACTORIES),
        help=f"device to simulate (repeatable; default: {DEFAULT_KIND})",
    )
    parser.add_argument("--number", type=int, default=1, metavar="N", help="number ids from N")
    parser.add_argument("--endpoint-prefix", default="", help="prefix for endpoint names")
    parser.add_argument("--lifetime", type=int, default=60, metavar="SECONDS")
    parser.add_argument("--lwm2m-version", choices=["1.0", "1.1"], default="1.1")
    parser.add_argument(
        "--read-format",
        choices=sorted(FORMAT_NAMES),
        default="tlv",
        help="answer format of a Read without Accept (default: tlv, as many clients)",
    )
    parser.add_argument("--vendor-object", action="store_true", help="add object /31024/0")
    parser.add_argument(
        "--queue", action="store_true", help="queue mode: listen only briefly after sending"
    )
    parser.add_argument("--queue-window", type=float, default=2.0, metavar="SECONDS")
    parser.add_argument(
        "--wake-interval", type=float, metavar="SECONDS", help="queue mode: Update this often"
    )
    parser.add_argument("--notify", choices=["con", "non"], default="con")
    parser.add_argument("--refuse", metavar="REASON", help="refuse Execute/Write with REASON")
    parser.add_argument("--refuse-code", default="5.00", help="code of refusals (e.g. 4.05)")
    parser.add_argument("--jam", action="append", default=[], metavar="KEY", help="jam lock KEY")
    parser.add_argument(
        "--status-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="answer 2.04 at once, change the status SECONDS later",
    )
    parser.add_argument(
        "--answer-delay", type=float, default=0.0, metavar="SECONDS", help="answer late"
    )
    parser.add_argument("--silent", action="store_true", help="act on requests, never answer")
    parser.add_argument(
        "--drop-first", type=int, default=0, metavar="N", help="ignore N transmissions"
    )
    parser.add_argument(
        "--offline-after", type=float, metavar="SECONDS", help="stop answering after SECONDS"
    )
    parser.add_argument(
        "--rebind-every",
        type=float,
        metavar="SECONDS",
        help="move to a new source port every SECONDS (NAT rebinding)",
    )
    parser.add_argument(
        "--send",
        action="append",
        default=[],
        metavar="PATH",
        help="LwM2M 1.1 Send (POST /dp, SenML JSON) of PATH's values every --send-every seconds",
    )
    parser.add_argument("--send-every", type=float, default=10.0, metavar="SECONDS")
    return parser


def build_clients(args: argparse.Namespace, printer: Printer | None = None) -> list[Lwm2mClient]:
    behaviour = Lwm2mBehaviour(
        refuse=args.refuse,
        refuse_code=args.refuse_code,
        jam=set(args.jam),
        status_delay=args.status_delay,
        answer_delay=args.answer_delay,
        silent=args.silent,
        drop_first=args.drop_first,
        notify_confirmable=args.notify == "con",
    )
    counts: dict[str, int] = {}
    clients = []
    for kind in args.device or [DEFAULT_KIND]:
        counts[kind] = counts.get(kind, args.number - 1) + 1
        model = DEVICE_FACTORIES[kind](f"{kind}{counts[kind]}")
        options = Lwm2mOptions(
            server=args.server,
            endpoint=f"{args.endpoint_prefix}{model.device_id}",
            lifetime=args.lifetime,
            version=args.lwm2m_version,
            queue_mode=args.queue,
            queue_window=args.queue_window,
            wake_interval=args.wake_interval,
            read_format=FORMAT_NAMES[args.read_format],
            vendor_object=args.vendor_object or kind == "sensor",
        )
        clients.append(
            Lwm2mClient(model, options, dataclasses.replace(behaviour, jam=set(args.jam)), printer)
        )
    return clients


async def run(args: argparse.Namespace) -> int:
    try:
        if args.send and args.lwm2m_version == "1.0":
            raise ValueError("--send needs --lwm2m-version 1.1 (Send is LwM2M 1.1)")
        clients = build_clients(args)
    except ValueError as err:
        print(f"cannot start: {err}", file=sys.stderr)
        return 2
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, done.set)
    for client in clients:
        # Keep trying in the background: the server (Home Assistant) may start later.
        await client.start(wait=False)
    rebinding = None
    if args.rebind_every:
        rebinding = asyncio.create_task(_rebind_forever(clients, args.rebind_every))
    sending = None
    if args.send:
        sending = asyncio.create_task(_send_forever(clients, args.send, args.send_every))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), args.offline_after)
    if not done.is_set():  # --offline-after elapsed
        for client in clients:
            client.go_offline()
        await done.wait()
    for task in (rebinding, sending):
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    for client in clients:
        await client.stop()
    return 0


async def _rebind_forever(clients: list[Lwm2mClient], every: float) -> None:
    while True:
        await asyncio.sleep(every)
        for client in clients:
            await client.rebind()


async def _send_forever(clients: list[Lwm2mClient], paths: list[str], every: float) -> None:
    while True:
        await asyncio.sleep(every)
        for client in clients:
            if client.registration_id is not None and not client.offline:
                await client.send(paths)


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(run(build_parser().parse_args(argv)))
