"""CLI: python -m iot_bridge_sim (with PYTHONPATH=simulator). Runs until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from .behaviour import Behaviour
from .coap import COAP_PORT, MulticastSettings
from .devices import DEVICE_FACTORIES
from .fleet import (
    DEFAULT_KINDS,
    Simulator,
    build_coap_fleet,
    build_fleet,
    crash_fleet,
    start_fleet,
    stop_fleet,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m iot_bridge_sim",
        description=(
            "Simulated IoT Bridge devices on an MQTT broker (docs/protocols/mqtt.md), "
            "or as CoAP servers with --coap (docs/protocols/coap.md)."
        ),
    )
    parser.add_argument(
        "--protocol",
        choices=["mqtt", "lwm2m"],
        default="mqtt",
        help="mqtt (default) or lwm2m (options: --protocol lwm2m --help)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--prefix", default="iot_bridge", help="discovery prefix")
    parser.add_argument(
        "--device",
        action="append",
        choices=sorted(DEVICE_FACTORIES),
        help="device to simulate (repeatable; default: locker on MQTT 5 and climate on 3.1.1)",
    )
    parser.add_argument(
        "--number",
        type=int,
        default=1,
        metavar="N",
        help="number the device ids from N (locker2, ...) to run beside an existing fleet",
    )
    parser.add_argument(
        "--mqtt-version",
        choices=["5", "3.1.1"],
        help="protocol for every device (default: locker 5, climate 3.1.1)",
    )
    parser.add_argument("--refuse", metavar="REASON", help="refuse every command with REASON")
    parser.add_argument(
        "--answer-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="act at once, answer SECONDS later",
    )
    parser.add_argument("--silent", action="store_true", help="act on commands, never answer")
    parser.add_argument(
        "--drop-first",
        type=int,
        default=0,
        metavar="N",
        help="ignore the first N deliveries of each command id (makes the hub retry)",
    )
    parser.add_argument(
        "--jam",
        action="append",
        default=[],
        metavar="KEY",
        help="lock KEY answers jammed (repeatable)",
    )
    parser.add_argument(
        "--offline-after",
        type=float,
        metavar="SECONDS",
        help="drop the connection after SECONDS so the broker publishes the Last Will, then exit",
    )
    parser.add_argument("--username")
    parser.add_argument("--password")
    coap = parser.add_argument_group("CoAP")
    coap.add_argument(
        "--coap",
        action="store_true",
        help="run the devices as CoAP servers instead (ids coap-locker1, ...; default: a locker)",
    )
    coap.add_argument("--coap-host", default="127.0.0.1", help="address the servers bind to")
    coap.add_argument(
        "--coap-port",
        type=int,
        default=0,
        metavar="PORT",
        help="UDP port of the first device, the next ones count up (default: free ports)",
    )
    coap.add_argument("--coap-format", choices=["text", "json", "cbor"], default="text")
    coap.add_argument(
        "--separate-response",
        action="store_true",
        help="acknowledge at once, answer in a separate response",
    )
    coap.add_argument(
        "--max-age", type=int, default=60, metavar="SECONDS", help="Max-Age of notifications"
    )
    coap.add_argument(
        "--discovery-port",
        type=int,
        default=COAP_PORT,
        metavar="PORT",
        help="answer multicast discovery (224.0.1.187) on this port",
    )
    coap.add_argument(
        "--discovery-interface",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="IPv4 address of the interface to join the discovery group on",
    )
    coap.add_argument("--no-discovery", action="store_true", help="do not answer discovery")
    return parser


def behaviour_from(args: argparse.Namespace) -> Behaviour:
    return Behaviour(
        refuse=args.refuse,
        answer_delay=args.answer_delay,
        silent=args.silent,
        drop_first=args.drop_first,
        jam=set(args.jam),
    )


def wants_lwm2m(argv: Sequence[str] | None) -> bool:
    """--protocol lwm2m hands the whole command line to the LwM2M CLI."""
    protocol = argparse.ArgumentParser(add_help=False)
    protocol.add_argument("--protocol")
    return protocol.parse_known_args(argv)[0].protocol == "lwm2m"


def build_mqtt(args: argparse.Namespace) -> list[Simulator]:
    return list(
        build_fleet(
            args.device or DEFAULT_KINDS,
            host=args.host,
            port=args.port,
            prefix=args.prefix,
            protocol=args.mqtt_version,
            behaviour=behaviour_from(args),
            username=args.username,
            password=args.password,
            first_number=args.number,
        )
    )


def build_coap(args: argparse.Namespace) -> list[Simulator]:
    multicast = None
    if not args.no_discovery:
        multicast = MulticastSettings(port=args.discovery_port, interface=args.discovery_interface)
    return list(
        build_coap_fleet(
            args.device or ("locker",),
            host=args.coap_host,
            first_port=args.coap_port,
            behaviour=behaviour_from(args),
            content_format=args.coap_format,
            separate_response=args.separate_response,
            max_age=args.max_age,
            multicast=multicast,
            first_number=args.number,
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
    if wants_lwm2m(argv):
        from . import lwm2m_cli  # aiocoap only when asked for

        return lwm2m_cli.main(argv)
    args = build_parser().parse_args(argv)
    done = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        fleet = start_fleet(build_coap(args) if args.coap else build_mqtt(args))
    except OSError as err:  # refused, unreachable, or no answer (ConnectionError)
        print(f"cannot start: {err}", file=sys.stderr)
        return 1
    if not done.wait(args.offline_after):  # only a timeout returns False
        crash_fleet(fleet)
        return 0
    stop_fleet(fleet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
