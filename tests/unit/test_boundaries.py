"""The package boundaries of design.md hold: services meet through the database and Kafka, never
by importing each other. Every import in every module counts, including those inside functions.

One documented addition (docs/architecture.md): `services/reports` reads the rules file through
`services.rules.ruleset` (a pure loader) to name each event type's duty, and the portal shows
those reports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

SERVICES = REPO / "services"
PACKAGES = ("core", "ingest", "rules", "notifier", "portal", "reports")
MAY_IMPORT: dict[str, set[str]] = {
    "core": set(),
    "ingest": {"core"},
    "rules": {"core"},
    "notifier": {"core"},
    "portal": {"core", "reports"},
    "reports": {"core", "rules.ruleset"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("services.")}


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_only_what_design_allows(package: str) -> None:
    allowed = MAY_IMPORT[package] | {package}
    wrong = []
    for path in sorted((SERVICES / package).rglob("*.py")):
        for name in _imports(path):
            target = name.removeprefix("services.")
            if not any(target == a or target.startswith(a + ".") for a in allowed):
                wrong.append(f"{path.relative_to(REPO)} imports {name}")
    assert wrong == []


def test_the_scan_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from services.notifier.delivery import claim\n")
    assert _imports(module) == {"services.notifier.delivery"}
