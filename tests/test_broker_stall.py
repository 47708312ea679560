"""The broker stall verdict (core, no Home Assistant): agreement needed both ways."""

from __future__ import annotations

from custom_components.iot_bridge.core.mqtt.stall import BrokerStallProbe


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
