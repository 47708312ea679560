"""manifest.json and hacs.json against the rules Home Assistant's hassfest and HACS apply.

The schemas below restate those tools' rules (hassfest's manifest and dependency checks for
a custom integration, HACS's hacs.json and integration manifest checks, as published in
late 2026); Home Assistant's own lists (platforms, discovery integrations, MQTT topic
validation) are taken from the installed Home Assistant.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import homeassistant.components
import pytest
import voluptuous as vol
from awesomeversion import AwesomeVersion, AwesomeVersionStrategy
from homeassistant.components.mqtt.util import valid_subscribe_topic
from homeassistant.const import Platform
from homeassistant.const import __version__ as HA_VERSION
from homeassistant.requirements import DISCOVERY_INTEGRATIONS
from packaging.requirements import Requirement

from custom_components.iot_bridge.const import DEFAULT_DISCOVERY_PREFIX, DOMAIN

ROOT = Path(__file__).resolve().parent.parent
INTEGRATION = ROOT / "custom_components" / DOMAIN
CORE_COMPONENTS = Path(homeassistant.components.__file__).parent

VERSION_STRATEGIES = [
    AwesomeVersionStrategy.CALVER,
    AwesomeVersionStrategy.SEMVER,
    AwesomeVersionStrategy.SIMPLEVER,
    AwesomeVersionStrategy.BUILDVER,
    AwesomeVersionStrategy.PEP440,
]


def _version(value: Any) -> str:
    if not isinstance(value, str):
        raise vol.Invalid("a version is a string")
    AwesomeVersion(value, ensure_strategy=VERSION_STRATEGIES)
    return value


def _https_url(value: Any) -> str:
    parsed = urlparse(str(value))
    if parsed.scheme != "https" or not parsed.netloc:
        raise vol.Invalid(f"{value} is not an https URL")
    if parsed.netloc == "www.home-assistant.io" and not parsed.path.startswith("/integrations/"):
        raise vol.Invalid("home-assistant.io documentation lives under /integrations/")
    return str(value)


def _requirement(value: Any) -> str:
    Requirement(value)  # raises on anything pip would not understand
    return str(value)


# hassfest, custom integration: no unknown keys; version required (checked separately
# there, required here); integration_type and iot_class from fixed lists.
CUSTOM_INTEGRATION_MANIFEST = vol.Schema(
    {
        vol.Required("domain"): str,
        vol.Required("name"): str,
        vol.Required("codeowners"): [vol.Match(r"^@[\w.-]+(/[\w.-]+)?$")],
        vol.Required("documentation"): _https_url,
        vol.Required("version"): _version,
        vol.Required("iot_class"): vol.In(
            [
                "assumed_state",
                "calculated",
                "cloud_polling",
                "cloud_push",
                "local_polling",
                "local_push",
            ]
        ),
        vol.Optional("integration_type"): vol.In(
            ["device", "entity", "hardware", "helper", "hub", "service", "system"]
        ),
        vol.Optional("config_flow"): bool,
        vol.Optional("single_config_entry"): bool,
        vol.Optional("import_executor"): bool,
        vol.Optional("issue_tracker"): _https_url,
        vol.Optional("quality_scale"): vol.In(
            ["bronze", "silver", "gold", "platinum", "internal", "legacy"]
        ),
        vol.Optional("requirements"): [_requirement],
        vol.Optional("dependencies"): [str],
        vol.Optional("after_dependencies"): [str],
        vol.Optional("loggers"): [str],
        vol.Optional("mqtt"): [str],
        vol.Optional("zeroconf"): list,
        vol.Optional("ssdp"): list,
        vol.Optional("dhcp"): list,
        vol.Optional("usb"): list,
        vol.Optional("bluetooth"): list,
        vol.Optional("homekit"): dict,
        vol.Optional("disabled"): str,
    },
    extra=vol.PREVENT_EXTRA,
)

# HACS: hacs.json has only these keys; an integration's manifest needs these.
HACS_JSON = vol.Schema(
    {
        vol.Required("name"): str,
        vol.Optional("content_in_root"): bool,
        vol.Optional("country"): vol.Any(str, [str]),
        vol.Optional("filename"): str,
        vol.Optional("hacs"): _version,
        vol.Optional("hide_default_branch"): bool,
        vol.Optional("homeassistant"): _version,
        vol.Optional("persistent_directory"): str,
        vol.Optional("render_readme"): bool,
        vol.Optional("zip_release"): bool,
    },
    extra=vol.PREVENT_EXTRA,
)
HACS_INTEGRATION_MANIFEST = vol.Schema(
    {
        vol.Required("codeowners"): list,
        vol.Required("documentation"): _https_url,
        vol.Required("domain"): str,
        vol.Required("issue_tracker"): _https_url,
        vol.Required("name"): str,
        vol.Required("version"): _version,
    },
    extra=vol.ALLOW_EXTRA,
)


def _manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((INTEGRATION / "manifest.json").read_text())
    return data


def _hacs() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "hacs.json").read_text())
    return data


def test_manifest_follows_hassfest() -> None:
    """Schema, key order (domain, name, then alphabetical), domain = folder, no clash with
    a core integration, dependencies that exist and are not listed twice."""
    manifest = _manifest()
    CUSTOM_INTEGRATION_MANIFEST(manifest)
    keys = list(manifest)
    assert keys[:2] == ["domain", "name"]
    assert keys[2:] == sorted(keys[2:])
    assert manifest["domain"] == INTEGRATION.name
    assert not (CORE_COMPONENTS / manifest["domain"]).exists()
    dependencies = manifest.get("dependencies", [])
    after = manifest.get("after_dependencies", [])
    assert not set(dependencies) & set(after)
    for domain in (*dependencies, *after):
        assert (CORE_COMPONENTS / domain / "manifest.json").is_file(), domain


def test_manifest_schema_rejects_what_hassfest_rejects() -> None:
    """The schema is not a rubber stamp."""
    for change in (
        {"iot_class": "local_pushing"},
        {"version": None},
        {"integration_type": "virtual"},
        {"documentation": "http://example.com"},
        {"requirements": ["aiomqtt>=>2"]},
        {"unknown_key": True},
    ):
        broken = {**_manifest(), **change}
        if change.get("version", "") is None:
            del broken["version"]
        with pytest.raises(vol.Invalid):
            CUSTOM_INTEGRATION_MANIFEST(broken)


def _imported_components() -> set[tuple[str, str]]:
    """(file stem, imported integration) for every import of homeassistant.components.X."""
    found: set[tuple[str, str]] = set()
    for path in INTEGRATION.rglob("*.py"):
        stem = path.relative_to(INTEGRATION).parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[:2] == ["homeassistant", "components"] and len(parts) > 2:
                    found.add((stem, parts[2]))
    return found


# hassfest lets any integration use these internal integrations without declaring them.
_ALWAYS_ALLOWED = {"automation", "device_automation", "homeassistant", "script", "websocket_api"}


def test_every_imported_integration_is_declared() -> None:
    """hassfest's dependency rule: an imported integration is a platform, an internal one,
    one of ours (a module of that name), a (after_)dependency, the integration of a
    discovery key, or the integration whose platform the importing file is (logbook.py)."""
    manifest = _manifest()
    allowed = (
        {str(platform) for platform in Platform}
        | _ALWAYS_ALLOWED
        | set(manifest.get("dependencies", []))
        | set(manifest.get("after_dependencies", []))
        | {
            domain
            for domain, keys in DISCOVERY_INTEGRATIONS.items()
            if any(key in manifest for key in keys)
        }
    )
    imported = _imported_components()
    assert imported, "the scan found no imports"
    undeclared = {
        domain
        for stem, domain in imported
        if domain not in allowed
        and domain != stem
        and not (INTEGRATION / f"{domain}.py").is_file()
        and not (INTEGRATION / domain).is_dir()
    }
    assert undeclared == set()


def test_mqtt_discovery_topics() -> None:
    """Home Assistant's MQTT integration subscribes to these for us: valid filters, the
    device profile's config topic under the default prefix (what the discovery step reads)."""
    topics = _manifest()["mqtt"]
    assert topics == [f"{DEFAULT_DISCOVERY_PREFIX}/+/config"]
    for topic in topics:
        valid_subscribe_topic(topic)


def test_hacs_json_and_repository_layout() -> None:
    """hacs.json has only HACS's keys, the manifest what HACS needs, one integration folder,
    and the minimum Home Assistant is one the tests run on (or older)."""
    hacs = _hacs()
    HACS_JSON(hacs)
    HACS_INTEGRATION_MANIFEST(_manifest())
    assert hacs["name"] == _manifest()["name"]
    folders = (ROOT / "custom_components").iterdir()
    assert [p.name for p in folders if p.is_dir() and not p.name.startswith("__")] == [DOMAIN]
    assert AwesomeVersion(hacs["homeassistant"]) <= AwesomeVersion(HA_VERSION)
    with pytest.raises(vol.Invalid):
        HACS_JSON({**hacs, "domains": ["lock"]})
    with pytest.raises(vol.Invalid):
        HACS_INTEGRATION_MANIFEST({**_manifest(), "issue_tracker": None})
