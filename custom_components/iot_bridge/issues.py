"""Repair issues: problems IoT Bridge sees in its own traffic, each naming its fix.

Every issue is raised and deleted from the cause itself (command outcomes, the bridge's
probes), so it goes away by itself when the cause does.
"""

from __future__ import annotations

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir

from .const import DOMAIN, LOGGER
from .core.bridge import PROBLEM_BROKER_NAGLE

ISSUE_DEVICE_TIMEOUTS = "device_timeouts"


def device_timeouts_issue_id(entry_id: str, device_id: str) -> str:
    """The issue id of one device that has answered no command for a day."""
    return f"{ISSUE_DEVICE_TIMEOUTS}_{entry_id}_{device_id}"


def problem_issue_id(entry_id: str, problem: str) -> str:
    """The issue id of a problem a hub's bridge reported."""
    return f"{problem}_{entry_id}"


@callback
def async_sync_device_timeouts(
    hass: HomeAssistant, entry_id: str, device_id: str, device_name: str, *, timing_out: bool
) -> None:
    """Raise the issue while the device has timed out on every command for a day; else delete."""
    issue_id = device_timeouts_issue_id(entry_id, device_id)
    if not timing_out:
        ir.async_delete_issue(hass, DOMAIN, issue_id)
        return
    if ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None:
        LOGGER.warning("%s has answered no command for a day", device_name)
    async_warn(hass, issue_id, ISSUE_DEVICE_TIMEOUTS, {"device": device_name})


@callback
def async_warn(
    hass: HomeAssistant, issue_id: str, translation_key: str, placeholders: dict[str, str]
) -> None:
    """Raise (or refresh) a repair the user fixes outside Home Assistant: a warning."""
    ir.async_create_issue(
        hass,
        DOMAIN,
        issue_id,
        is_fixable=False,
        severity=ir.IssueSeverity.WARNING,
        translation_key=translation_key,
        translation_placeholders=placeholders,
    )


# Problems a bridge can report, and the issue (translation key) each becomes.
ISSUE_BROKER_NAGLE = "broker_nagle"
ISSUE_REGISTRATION_LAPSED = "registration_lapsed"
_PROBLEM_ISSUES = {PROBLEM_BROKER_NAGLE: ISSUE_BROKER_NAGLE}


@callback
def async_sync_problem(
    hass: HomeAssistant, entry: ConfigEntry, problem: str, active: bool, target: str
) -> None:
    """Raise or delete the issue of a problem the bridge found."""
    issue_id = problem_issue_id(entry.entry_id, problem)
    if not active:
        ir.async_delete_issue(hass, DOMAIN, issue_id)
        return
    translation_key = _PROBLEM_ISSUES.get(problem)
    if translation_key is None:
        LOGGER.debug("No repair for the problem %s", problem)
        return
    async_warn(hass, issue_id, translation_key, {"hub": entry.title, "target": target})


@callback
def async_clear_issues(hass: HomeAssistant, entry_id: str) -> None:
    """Delete every issue of a hub (it stopped: its figures start afresh)."""
    registry = ir.async_get(hass)
    for domain, issue_id in list(registry.issues):
        if domain == DOMAIN and (issue_id.endswith(f"_{entry_id}") or f"_{entry_id}_" in issue_id):
            ir.async_delete_issue(hass, DOMAIN, issue_id)
