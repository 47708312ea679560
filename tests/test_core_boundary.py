"""core/ is a protocol library: it must never import Home Assistant."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).parent.parent / "custom_components" / "iot_bridge" / "core"


def _imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def test_core_never_imports_homeassistant() -> None:
    """Every module under core/ stays free of homeassistant imports."""
    files = sorted(CORE.rglob("*.py"))
    assert len(files) >= 5  # The check must actually see the library.
    offenders = {
        str(path.relative_to(CORE)): sorted(
            m for m in _imported_modules(path) if m.split(".")[0] == "homeassistant"
        )
        for path in files
    }
    assert {name: mods for name, mods in offenders.items() if mods} == {}


def test_boundary_check_detects_an_import(tmp_path: Path) -> None:
    """The checker itself finds both import forms."""
    sample = tmp_path / "sample.py"
    sample.write_text("import homeassistant.core\nfrom homeassistant.const import Platform\n")
    assert _imported_modules(sample) == {"homeassistant.core", "homeassistant.const"}
