"""quality_scale.yaml: every rule up to Platinum, each decision with evidence that exists."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import yaml

from custom_components.iot_bridge import PLATFORMS

ROOT = Path(__file__).resolve().parent.parent
INTEGRATION = ROOT / "custom_components" / "iot_bridge"

# The rules of Home Assistant's Integration Quality Scale, Bronze to Platinum, as listed by
# hassfest (script/hassfest/quality_scale.py) in late 2026.
RULES = {
    "bronze": [
        "action-setup",
        "appropriate-polling",
        "brands",
        "common-modules",
        "config-flow",
        "config-flow-test-coverage",
        "dependency-transparency",
        "docs-actions",
        "docs-conditions",
        "docs-high-level-description",
        "docs-installation-instructions",
        "docs-removal-instructions",
        "docs-triggers",
        "entity-event-setup",
        "entity-unique-id",
        "has-entity-name",
        "runtime-data",
        "test-before-configure",
        "test-before-setup",
        "unique-config-entry",
    ],
    "silver": [
        "action-exceptions",
        "config-entry-unloading",
        "docs-configuration-parameters",
        "docs-installation-parameters",
        "entity-unavailable",
        "integration-owner",
        "log-when-unavailable",
        "parallel-updates",
        "reauthentication-flow",
        "test-coverage",
    ],
    "gold": [
        "devices",
        "diagnostics",
        "discovery",
        "discovery-update-info",
        "docs-data-update",
        "docs-examples",
        "docs-known-limitations",
        "docs-supported-devices",
        "docs-supported-functions",
        "docs-troubleshooting",
        "docs-use-cases",
        "dynamic-devices",
        "entity-category",
        "entity-device-class",
        "entity-disabled-by-default",
        "entity-translations",
        "exception-translations",
        "icon-translations",
        "reconfiguration-flow",
        "repair-issues",
        "stale-devices",
    ],
    "platinum": ["async-dependency", "inject-websession", "strict-typing"],
}
TEST_REFERENCE = re.compile(r"(tests/[\w/]+\.py)(?:::(\w+))?")
FILE_REFERENCE = re.compile(r"(?<![\w/])((?:docs|scripts)/[\w./-]+\w|[\w]+\.(?:py|json|yaml))")
README_REFERENCE = re.compile(r"README\.md#([a-z0-9-]+)")


def _rules() -> dict[str, dict[str, str]]:
    data = yaml.safe_load((INTEGRATION / "quality_scale.yaml").read_text())
    return dict(data["rules"])


def _anchors() -> set[str]:
    """The README's section anchors, as GitHub makes them."""
    return {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith("#")
    }


def test_every_rule_up_to_platinum_is_assessed() -> None:
    """All rules, no unknown ones, each a known status; exempt and todo say why."""
    rules = _rules()
    assert sorted(rules) == sorted(name for tier in RULES.values() for name in tier)
    for name, rule in rules.items():
        assert rule["status"] in ("done", "exempt", "todo"), name
        assert rule.get("comment", "").strip(), f"{name} gives no reason or evidence"


def test_every_reference_exists() -> None:
    """Each test, file and README section a rule names is there; each `done` names one."""
    anchors = _anchors()
    for name, rule in _rules().items():
        comment = " ".join(rule["comment"].split())
        references = 0
        for path, test in TEST_REFERENCE.findall(comment):
            source = (ROOT / path).read_text()
            assert not test or re.search(rf"def {test}\(", source), f"{name}: {path}::{test}"
            references += 1
        for path in FILE_REFERENCE.findall(comment):
            assert (ROOT / path).exists() or (INTEGRATION / path).exists(), f"{name}: {path}"
            references += 1
        for heading in README_REFERENCE.findall(comment):
            assert heading in anchors, f"{name}: README.md#{heading}"
            references += 1
        if rule["status"] == "done":
            assert references, f"{name} is done without evidence"


def test_every_platform_sets_parallel_updates() -> None:
    """parallel-updates: each platform module states its limit."""
    for platform in PLATFORMS:
        module = importlib.import_module(f"custom_components.iot_bridge.{platform}")
        assert module.PARALLEL_UPDATES == 0, platform
