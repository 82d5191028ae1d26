"""Reports is built on Parley's event contract alone: it depends on parley-events and
parley-shared, and none of its modules imports another service or the provider packages."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "services" / "reports"
FORBIDDEN = ("parley_routing", "parley_policy", "parley_onboarding", "parley_ingest", "parley_providers")


def test_its_only_parley_dependencies_are_the_events_and_the_plumbing() -> None:
    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]
    parley = {d.split(">")[0].split("=")[0] for d in project["dependencies"] if d.startswith("parley")}
    assert parley == {"parley-events", "parley-shared"}


def test_no_module_imports_another_service_or_a_provider() -> None:
    modules = sorted((PACKAGE / "src").rglob("*.py"))
    assert len(modules) > 10
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(FORBIDDEN), f"{path.relative_to(ROOT)} imports {name}"
