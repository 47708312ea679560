"""The broker stall verdict (core, no Home Assistant): agreement needed both ways."""

from __future__ import annotations

from custom_components.iot_bridge.core.mqtt.stall import BrokerStallProbe

from .common import wait_for


async def _never(_topic: str, _payload: bytes) -> None:
    raise AssertionError("no probe is sent in these tests")


def _probe() -> tuple[BrokerStallProbe, list[bool]]:
    changes: list[bool] = []
    return BrokerStallProbe(_never, "t/_bridge/x/probe", changes.append), changes


def test_one_slow_pair_is_no_stall() -> None:
    probe, changes = _probe()
    for gap in (0.2, 41.0, 0.3, 0.2, 60.0):
        probe.record(gap)
    assert changes == []
    assert not probe.stalled


def test_stall_needs_three_of_five_and_clears_after_three_fast() -> None:
    probe, changes = _probe()
    for gap in (0.4, 42.1, 43.0, 0.3, 44.2):
        probe.record(gap)
    assert changes == [True]
    probe.record(0.3)
    probe.record(12.0)  # neither held back nor clearly fast: the verdict stays
    probe.record(0.2)
    assert changes == [True]
    probe.record(0.4)
    probe.record(0.3)
    assert changes == [True, False]
    # Old evidence is forgotten: one more slow pair does not bring it back.
    probe.record(45.0)
    assert changes == [True, False]


async def test_slow_commands_probe_at_most_once_per_interval() -> None:
    """A probe loops back through a stand-in broker; a second slow command waits its turn."""
    sent: list[str] = []

    async def loop_back(topic: str, payload: bytes) -> None:
        sent.append(topic)
        probe.handle(topic, payload)

    probe = BrokerStallProbe(loop_back, "t/_bridge/x/probe", lambda _stalled: None)
    probe.command_ended(5.0)  # fast: nothing to look into
    assert not probe.busy
    probe.command_ended(45.0)
    assert probe.busy
    await wait_for(lambda: not probe.busy)
    assert sent == ["t/_bridge/x/probe/1/a", "t/_bridge/x/probe/1/b"]
    assert probe.probes == 1
    probe.command_ended(45.0)  # within the interval: no second probe
    assert not probe.busy
    probe.interval = 0
    probe.command_ended(45.0)
    await wait_for(lambda: not probe.busy)
    assert probe.probes == 2
    await probe.stop()
