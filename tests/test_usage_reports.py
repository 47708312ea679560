"""The deprecation guard in conftest.py catches Home Assistant's usage reports about us."""

from __future__ import annotations

import logging
from pathlib import Path

from homeassistant.core import HomeAssistant
from homeassistant.helpers import frame

import custom_components.iot_bridge as integration

from .conftest import UsageReports

# Code that Home Assistant's frame helper attributes to IoT Bridge: it looks for
# "custom_components/<domain>/" in the file name of the calling frame.
_PROBE_FILE = str(Path(integration.__file__).with_name("_usage_probe.py"))
_PROBE_SOURCE = """
def call_deprecated(report_usage):
    report_usage("calls `something_old`, which is deprecated", breaks_in_ha_version="2099.1.0")
"""


async def test_guard_collects_a_report_naming_iot_bridge(
    hass: HomeAssistant, usage_reports: UsageReports
) -> None:
    """A deprecated call from integration code is reported by HA and collected here."""
    namespace: dict[str, object] = {}
    exec(compile(_PROBE_SOURCE, _PROBE_FILE, "exec"), namespace)
    namespace["call_deprecated"](frame.report_usage)  # type: ignore[operator]
    assert len(usage_reports.reports) == 1
    assert "custom integration 'iot_bridge'" in usage_reports.reports[0]
    usage_reports.reports.clear()  # expected here: the guard must not fail this test


def test_guard_ignores_reports_about_others(usage_reports: UsageReports) -> None:
    """Another integration's report is not ours to fail on."""
    logging.getLogger("homeassistant.helpers.frame").warning(
        "Detected that custom integration 'other' calls `x`, which is deprecated"
    )
    assert usage_reports.reports == []
