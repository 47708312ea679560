"""Import IoT Bridge's Home-Assistant-free core in a simulator process.

The LwM2M simulators use the integration's own codecs (custom_components/iot_bridge/core),
which never import Home Assistant; but importing `custom_components.iot_bridge.core` runs
the integration's __init__.py first, and that one does. A process of its own (the CLI, the
fleet) therefore registers the integration package as a bare package, its directory
without its __init__: the core loads alone, without Home Assistant (30 MB less per
process, and nothing of Home Assistant's start-up). In a process where the integration is
already imported (tests, Home Assistant itself) nothing changes.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

PACKAGE = "custom_components.iot_bridge"


def use_core_without_home_assistant() -> None:
    """Make `custom_components.iot_bridge.core` importable without the integration."""
    if PACKAGE in sys.modules:
        return
    if importlib.util.find_spec("custom_components") is None:  # run from simulator/
        sys.path.append(str(Path(__file__).resolve().parents[2]))
    spec = importlib.util.find_spec("custom_components")
    if spec is None or not spec.submodule_search_locations:
        return  # no checkout around: the import will say what is missing
    for location in spec.submodule_search_locations:
        directory = Path(location) / "iot_bridge"
        if (directory / "core").is_dir():
            package = types.ModuleType(PACKAGE)
            package.__path__ = [str(directory)]
            package.__package__ = PACKAGE
            sys.modules[PACKAGE] = package
            return
