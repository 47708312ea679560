"""icons.json: valid, every icon for something the code has, and icons where they help."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import voluptuous as vol
import yaml
from homeassistant.components.lock.const import LockState
from homeassistant.const import STATE_HOME, STATE_NOT_HOME, STATE_OFF, STATE_ON

from custom_components.iot_bridge.core.model import CapabilityKind
from custom_components.iot_bridge.entity import IotBridgeEntity

from .test_translations import _usage

INTEGRATION = Path(__file__).resolve().parent.parent / "custom_components" / "iot_bridge"
SLUG = vol.Match(r"^[a-z0-9_]+$")
ICON = vol.All(str, vol.Match(r"^mdi:[a-z0-9]+(-[a-z0-9]+)*$"))
STATES = {SLUG: ICON}
# The shape hassfest accepts for an integration's icons.json (entity icons by translation
# key, with state icons; action icons).
SCHEMA = vol.Schema(
    {
        vol.Optional("entity"): {
            SLUG: {
                SLUG: {
                    vol.Optional("default"): ICON,
                    vol.Optional("state"): STATES,
                    vol.Optional("state_attributes"): {
                        SLUG: {vol.Optional("default"): ICON, vol.Optional("state"): STATES}
                    },
                }
            }
        },
        vol.Optional("services"): {SLUG: {vol.Required("service"): ICON}},
    }
)
# States an entity of these platforms can show (others' states are the entity's own).
PLATFORM_STATES = {
    "lock": {str(state) for state in LockState},
    "binary_sensor": {STATE_ON, STATE_OFF},
    "light": {STATE_ON, STATE_OFF},
    "device_tracker": {STATE_HOME, STATE_NOT_HOME},
}


def _icons() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((INTEGRATION / "icons.json").read_text())
    return data


def test_icons_follow_the_schema() -> None:
    """The file has the shape Home Assistant reads."""
    SCHEMA(_icons())
    broken = {**_icons(), "services": {"send_command": {"service": "send-check"}}}
    try:
        SCHEMA(broken)
    except vol.Invalid:
        pass
    else:
        raise AssertionError("an icon without mdi: passed")


def test_every_icon_belongs_to_an_entity_or_action_the_code_has() -> None:
    """Entity icons by the translation keys the code sets (each capability kind's entities
    use the kind; the connectivity sensor its own), states each platform has, actions from
    services.yaml."""
    usage = _usage()
    keys = usage.entity_keys | {str(kind) for kind in CapabilityKind}
    for platform, by_key in _icons()["entity"].items():
        assert (INTEGRATION / f"{platform}.py").is_file(), platform
        for key, icons in by_key.items():
            assert key in keys, f"{platform}.{key}"
            assert "default" in icons, f"{platform}.{key}"
            if platform in PLATFORM_STATES:
                states = set(icons.get("state", {}))
                assert states <= PLATFORM_STATES[platform], f"{platform}.{key}"
    services = yaml.safe_load((INTEGRATION / "services.yaml").read_text())
    assert set(_icons()["services"]) == set(services) == usage.services


def test_entities_without_a_device_class_have_icons() -> None:
    """Where no device class gives an entity its icon, icons.json does (an icon by
    translation key would replace a device class's icon, so those platforms get none);
    locks get one per state, including their transitions."""
    entity = _icons()["entity"]
    for kind in CapabilityKind:
        module = importlib.import_module(f"custom_components.iot_bridge.{kind}")
        classes = [
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and issubclass(value, IotBridgeEntity)
            and value.__module__ == module.__name__
        ]
        assert classes, kind
        has_device_classes = any(cls._device_classes is not None for cls in classes)
        assert (str(kind) in entity.get(str(kind), {})) is not has_device_classes, kind
    assert set(entity["lock"]["lock"]["state"]) == PLATFORM_STATES["lock"]
    assert "connectivity" in entity["binary_sensor"]
