"""No service imports another: each imports only ``cxrwatch.core`` and itself."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "services" / "cxrwatch"
SERVICES = ("imaging", "clinical", "joiner", "scorer", "alerter", "api")


def imported_cxrwatch_packages(source: Path) -> set[str]:
    tree = ast.parse(source.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "cxrwatch" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_service_imports_only_core_and_itself(service: str) -> None:
    folder = PACKAGE / service
    if not folder.exists():
        pytest.skip(f"{service} is not written yet")
    for source in folder.rglob("*.py"):
        foreign = imported_cxrwatch_packages(source) - {"core", service}
        assert not foreign, f"{source.relative_to(PACKAGE)} imports {foreign}"


def test_core_imports_no_service() -> None:
    for source in (PACKAGE / "core").rglob("*.py"):
        assert imported_cxrwatch_packages(source) <= {"core"}, source.name
