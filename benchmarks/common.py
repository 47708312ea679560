"""Shared pieces: statistics, tables, the broker, peer processes and the IoT Bridge hub."""

from __future__ import annotations

import asyncio
import cProfile
import io
import os
import platform
import pstats
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import (  # type: ignore[import-untyped]
    MockConfigEntry,
)

from iot_bridge_sim.broker import MOSQUITTO, Broker
from tests.common import mqtt_entry

ROOT = Path(__file__).resolve().parent.parent


# -- what ran, where ----------------------------------------------------------------------


def invocation(config: pytest.Config) -> str:
    """The command line that produced this output, as it can be pasted again."""
    python = Path(sys.executable)
    shown = python.relative_to(ROOT) if python.is_relative_to(ROOT) else python
    return f"{shown} -m pytest {shlex.join(config.invocation_params.args)}"


def machine() -> str:
    """Interpreter, library and broker versions, and the CPU count."""
    mosquitto = subprocess.run(
        [MOSQUITTO, "-h"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    broker = mosquitto[0].removeprefix("mosquitto version ") if mosquitto else "?"
    packages = ", ".join(
        f"{name} {version(name)}" for name in ("homeassistant", "paho-mqtt", "aiomqtt")
    )
    # Other work on the machine shows up as noise in the tails: say how busy it was.
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}, load {load}; "
        f"Python {platform.python_version()}, {packages}, mosquitto {broker}"
    )


def header(config: pytest.Config, title: str, machine_line: str) -> str:
    """Title, command and machine; take `machine_line` before the work (its load average)."""
    return f"\n## {title}\n\ncommand: {invocation(config)}\nmachine: {machine_line}\n"


# -- numbers ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Latency:
    """Percentiles of one series of round trips, in milliseconds."""

    label: str
    count: int
    p50: float
    p90: float
    p99: float
    mean: float

    @classmethod
    def of(cls, label: str, seconds: Sequence[float]) -> Latency:
        # 99 cut points; "inclusive" treats the samples as the whole population.
        cuts = statistics.quantiles([s * 1000 for s in seconds], n=100, method="inclusive")
        mean = statistics.fmean(seconds) * 1000
        return cls(label, len(seconds), cuts[49], cuts[89], cuts[98], mean)

    def row(self) -> list[str]:
        values = (self.p50, self.p90, self.p99, self.mean)
        return [self.label, str(self.count), *(f"{value:.3f}" for value in values)]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table, columns padded so it also reads well in a terminal."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


@contextmanager
def profiled(what: str, top: int = 30) -> Iterator[None]:
    """With BENCH_PROFILE=1, cProfile the block (this thread only) and print the top.

    Times are the process's CPU time (time.process_time), not wall time: on a shared machine
    a neighbour's work would otherwise land on whatever function was running.
    """
    if not os.environ.get("BENCH_PROFILE"):
        yield
        return
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        out = io.StringIO()
        stats = pstats.Stats(profile, stream=out)
        stats.sort_stats(os.environ.get("BENCH_PROFILE_SORT", "tottime")).print_stats(top)
        print(f"\n### profile: {what}\n{out.getvalue()}")


def rss() -> int:
    """Resident memory of this process, in bytes."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def require(condition: bool, message: str) -> None:
    """Stop the benchmark when an outcome is wrong (unlike assert, survives python -O)."""
    if not condition:
        raise RuntimeError(message)


# -- the broker -----------------------------------------------------------------------------


def start_broker(*, nodelay: bool = True, unlimited_queue: bool = False) -> Broker:
    """A fresh mosquitto on a free 127.0.0.1 port (blocking: call it in an executor).

    `unlimited_queue`: mosquitto 2.0 drops QoS 0 messages for a subscriber that has 1,000
    packets waiting (max_queued_messages); a flood measures the consumer, not that limit.
    """
    broker = Broker(nodelay=nodelay)
    if unlimited_queue:
        broker.config.write_text(broker.config.read_text() + "max_queued_messages 0\n")
    broker.start()
    return broker


# -- peer processes ---------------------------------------------------------------------


class Peer:
    """A `python -m benchmarks.peers` process: commands on its stdin, replies on its stdout."""

    def __init__(self, *args: str) -> None:
        env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "simulator")])}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.peers", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def send(self, line: str) -> None:
        if self.process.stdin is None:
            raise RuntimeError("peer has no stdin")
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def read(self, expected: str) -> list[str]:
        """The next reply's words (blocking); it must start with `expected`."""
        if self.process.stdout is None:
            raise RuntimeError("peer has no stdout")
        words = self.process.stdout.readline().split()
        require(
            bool(words) and words[0] == expected,
            f"peer said {words!r}, expected {expected!r} (exit code {self.process.poll()})",
        )
        return words

    async def expect(self, hass: HomeAssistant, expected: str) -> list[str]:
        return await hass.async_add_executor_job(self.read, expected)

    def close(self) -> None:
        """Closing stdin asks the peer to leave cleanly (the locker sends "offline")."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


# -- Home Assistant side --------------------------------------------------------------------


async def setup_hub(hass: HomeAssistant, broker: Broker, prefix: str) -> MockConfigEntry:
    # The same entry the tests use: default options (10 s deadline, 2 retries).
    entry = mqtt_entry(broker, client_id="bench-hub", prefix=prefix)
    entry.add_to_hass(hass)
    require(await hass.config_entries.async_setup(entry.entry_id), "IoT Bridge did not load")
    await hass.async_block_till_done()
    return entry


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Poll until predicate() holds; raise after `timeout` seconds naming what was awaited."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise RuntimeError(f"timed out after {timeout} s waiting for {what}") from None
