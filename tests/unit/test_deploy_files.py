"""The Dockerfile and the Compose file agree with the code: commands, ports and settings exist.

No Docker engine runs here, so what can be checked without one is checked: both files parse,
every command is one of Parley's console scripts, every port is the service's default, every
PARLEY_* variable is a real setting, and the image's final stage is non-root without build tools.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from parley_ingest.settings import IngestSettings, NormalizerSettings
from parley_onboarding.settings import OnboardingSettings
from parley_policy.settings import PolicySettings
from parley_routing.settings import RoutingSettings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {
    "parley-ingest": IngestSettings,
    "parley-normalizer": NormalizerSettings,
    "parley-onboarding": OnboardingSettings,
    "parley-policy": PolicySettings,
    "parley-routing": RoutingSettings,
}


def console_scripts() -> set[str]:
    scripts: set[str] = set()
    for pyproject in [*ROOT.glob("services/*/pyproject.toml"), *ROOT.glob("shared/*/pyproject.toml")]:
        scripts |= set(tomllib.loads(pyproject.read_text()).get("project", {}).get("scripts", {}))
    return scripts


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "deploy" / "compose" / "compose.yaml").read_text())
    return data


def test_every_compose_command_is_a_parley_console_script() -> None:
    scripts = console_scripts()
    parley_services = {n: s for n, s in compose()["services"].items() if "command" in s}
    assert set(parley_services) >= {
        "ingest",
        "normalizer",
        "onboarding",
        "policy",
        "routing",
        "sandbox",
        "topics",
    }
    for name, service in parley_services.items():
        assert service["command"][0] in scripts, (
            f"{name} runs {service['command'][0]}, which no package installs"
        )


def test_every_service_listens_on_its_default_port() -> None:
    services = compose()["services"]
    for script, settings in SETTINGS.items():
        name = script.removeprefix("parley-")
        port = str(settings.model_fields["http_port"].default)
        assert services[name]["environment"]["PARLEY_HTTP_PORT"] == port
        assert services[name]["ports"] == [f"{port}:{port}"]


def test_every_parley_variable_in_compose_is_a_real_setting() -> None:
    known = {f"PARLEY_{field.upper()}" for cls in SETTINGS.values() for field in cls.model_fields}
    for name, service in compose()["services"].items():
        for variable in service.get("environment", {}):
            if variable.startswith("PARLEY_"):
                assert variable in known, f"{name} sets {variable}, which no settings class reads"


def test_every_required_secret_is_provided_to_the_service_that_needs_it() -> None:
    services = compose()["services"]
    for script, settings in SETTINGS.items():
        env = services[script.removeprefix("parley-")]["environment"]
        required = [f"PARLEY_{n.upper()}" for n, f in settings.model_fields.items() if f.is_required()]
        assert all(r in env for r in required), (script, required)


def test_the_image_is_built_from_the_lock_file_and_runs_unprivileged_without_build_tools() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = [s for s in text.split("\nFROM ") if s.strip()]
    assert len(stages) >= 2, "multi-stage build"
    build, final = stages[-2], stages[-1]
    assert "uv.lock" in build
    assert "--frozen" in build
    assert "--no-dev" in build
    for tool in ("pip install", "apt-get", "uv sync", "gcc", "build-essential"):
        assert tool not in final, f"the final stage must not contain {tool}"
    user = [line.split()[1] for line in final.splitlines() if line.startswith("USER ")]
    assert user, "the final stage sets a user"
    assert not user[-1].startswith("0") and user[-1] != "root"
    cmd = [line for line in final.splitlines() if line.startswith("CMD ")][-1]
    assert yaml.safe_load(cmd.removeprefix("CMD "))[0] in console_scripts()


def production_closure() -> set[str]:
    """The packages the image installs without groups: the workspace root's dependencies, closed."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    packages = {p["name"]: p for p in lock["package"]}
    todo = [d["name"] for d in packages["parley-workspace"].get("dependencies", [])]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(d["name"] for d in packages[name].get("dependencies", []))
    return seen


def test_the_production_image_leaves_the_provider_sandbox_out() -> None:
    closure = production_closure()
    assert {"parley-ingest", "parley-routing", "parley-policy", "parley-onboarding"} <= closure
    assert "parley-sandbox" not in closure
    build = [s for s in (ROOT / "Dockerfile").read_text().split("\nFROM ") if s.strip()][-2]
    assert "--all-packages" not in build and "--no-dev" in build
    assert "ARG WITH_SANDBOX=false" in build
    # the laptop's Compose file runs the sandbox, so it builds the image with it
    assert compose()["x-parley-service"]["build"]["args"]["WITH_SANDBOX"] == "true"
