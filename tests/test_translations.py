"""Translations: every key the code uses is in en.json, none there is unused, and de.json
has exactly en.json's keys with the same placeholders."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.helpers.translation import async_get_translations

from custom_components.iot_bridge.const import DOMAIN

from .translation_usage import Usage, collect, compare, leaf_paths

INTEGRATION = Path(__file__).resolve().parent.parent / "custom_components" / "iot_bridge"
TRANSLATIONS = INTEGRATION / "translations"
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _sources() -> dict[str, str]:
    return {
        str(path.relative_to(INTEGRATION)): path.read_text()
        for path in INTEGRATION.rglob("*.py")
        if "core" not in path.relative_to(INTEGRATION).parts
    }


def _usage(extra: dict[str, str] | None = None) -> Usage:
    return collect({**_sources(), **(extra or {})}, (INTEGRATION / "services.yaml").read_text())


def _strings(language: str = "en") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((TRANSLATIONS / f"{language}.json").read_text())
    return data


def test_every_used_key_exists_and_none_is_unused() -> None:
    """The code's keys and en.json's keys are the same set."""
    usage = _usage()
    missing, unused = compare(usage, _strings())
    assert missing == [], f"used in the code, missing in en.json: {missing}"
    assert unused == [], f"in en.json, used nowhere in the code: {unused}"


def test_the_code_is_understood() -> None:
    """The analysis found the places it should, and follows every key but one: entity
    translation keys are the capability kind (entity names come from the device)."""
    usage = _usage()
    assert usage.unresolved == {"capability.kind.value"}
    assert ("exceptions", "device_gone", "message") in usage.paths  # a literal
    assert ("exceptions", "unknown_device", "message") in usage.paths  # a helper's argument
    assert ("config", "error", "invalid_auth") in usage.paths  # a helper's return value
    assert ("config", "abort", "no_usable_resources") in usage.paths  # unpacked from a tuple
    assert ("options", "step", "init") in usage.paths
    assert ("selector", "admission", "options", "accept_all") in usage.paths
    patterns = [p for path in usage.paths for p in path if isinstance(p, re.Pattern)]
    assert sorted(p.pattern for p in patterns) == ["command_[a-z0-9_]+", "operation_[a-z0-9_]+"]
    assert usage.services == {"send_command"}
    assert {"host", "client_id", "admission", "pmax"} <= usage.flow_fields
    assert "connectivity" in usage.entity_keys


def test_services_yaml_matches_registered_actions() -> None:
    """Every action registered in code is described in services.yaml (and so translated)."""
    usage = _usage()
    described = {path[1] for path in usage.paths if path[0] == "services"}
    assert described == usage.services


def test_a_missing_key_is_caught() -> None:
    """Proof that the check can fail: drop used texts, add a new key in code."""
    strings = _strings()
    del strings["exceptions"]["device_gone"]
    del strings["config"]["abort"]["already_configured"]
    del strings["config"]["step"]["mqtt_broker"]["data"]["client_id"]
    new_code = (
        "from homeassistant.exceptions import HomeAssistantError\n"
        "KEY = 'brand_new'\n"
        "def fail() -> None:\n"
        "    raise HomeAssistantError(translation_domain='iot_bridge', translation_key=KEY)\n"
    )
    missing, _ = compare(_usage({"extra.py": new_code}), strings)
    missing.sort()
    assert missing == [
        "<a step's data>.client_id",  # the only step with that field lost its text
        "config.abort.already_configured",
        "exceptions.brand_new.message",
        "exceptions.device_gone.message",
    ]


def test_an_unused_key_is_caught() -> None:
    """Proof that the check can fail: texts nobody uses are reported."""
    strings = _strings()
    strings["exceptions"]["never_raised"] = {"message": "x"}
    strings["config"]["abort"]["never_aborted"] = "x"
    strings["config"]["step"]["no_such_step"] = {"title": "x"}
    strings["config"]["step"]["coap"]["data"]["no_such_field"] = "x"
    strings["selector"]["admission"]["options"]["maybe"] = "x"
    strings["issues"] = {"no_such_issue": {"title": "x", "description": "x"}}
    _, unused = compare(_usage(), strings)
    assert sorted(unused) == [
        "config.abort.never_aborted",
        "config.step.coap.data.no_such_field",
        "config.step.no_such_step.title",
        "exceptions.never_raised.message",
        "issues.no_such_issue.description",
        "issues.no_such_issue.title",
        "selector.admission.options.maybe",
    ]


def _texts(strings: dict[str, Any]) -> dict[tuple[str, ...], str]:
    texts: dict[tuple[str, ...], str] = {}
    for path in leaf_paths(strings):
        value: Any = strings
        for part in path:
            value = value[part]
        texts[path] = value
    return texts


@pytest.mark.parametrize("language", ["de"])
def test_translation_has_english_keys_and_placeholders(language: str) -> None:
    """A second language with exactly en.json's texts, each with the same placeholders."""
    english, other = _texts(_strings()), _texts(_strings(language))
    assert sorted(set(english) - set(other)) == [], "not translated"
    assert sorted(set(other) - set(english)) == [], "not in en.json"
    for path, text in english.items():
        assert isinstance(other[path], str)
        assert other[path].strip(), path
        assert sorted(PLACEHOLDER.findall(other[path])) == sorted(PLACEHOLDER.findall(text)), path


async def test_home_assistant_serves_the_german_texts(hass: HomeAssistant) -> None:
    """The second language goes through Home Assistant's own loader, like a user's UI."""
    german = await async_get_translations(hass, "de", "exceptions", {DOMAIN})
    assert (
        german[f"component.{DOMAIN}.exceptions.device_gone.message"]
        == (_strings("de")["exceptions"]["device_gone"]["message"])
    )
    flow = await async_get_translations(hass, "de", "config", {DOMAIN})
    assert flow[f"component.{DOMAIN}.config.step.mqtt_confirm.title"] == (
        "IoT-Bridge-Geräte gefunden"
    )
