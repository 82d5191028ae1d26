"""The Helm chart agrees with the code: commands, ports, settings, consumer groups, partitions.

`make chart-check` lints and renders the chart and validates the manifests; these tests need no
helm and check what only the code knows: files/catalog.yaml (each service's consumer groups and
topics, each topic's partitions) and values.yaml (commands, ports, PARLEY_* variables).
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator
from parley_events import topics
from parley_ingest.settings import IngestSettings, NormalizerSettings
from parley_onboarding.settings import OnboardingSettings
from parley_policy.settings import PolicySettings
from parley_reports.settings import ReportsSettings
from parley_routing.settings import RoutingSettings
from parley_shared.auth import ApiSettings
from parley_shared.settings import ServiceSettings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "parley"
SETTINGS: dict[str, type[ServiceSettings]] = {
    "ingest": IngestSettings,
    "normalizer": NormalizerSettings,
    "routing": RoutingSettings,
    "policy": PolicySettings,
    "onboarding": OnboardingSettings,
    "reports": ReportsSettings,
}
KEDA_SCALED = {"normalizer", "routing", "policy"}


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def catalog() -> dict[str, Any]:
    return load(CHART / "files" / "catalog.yaml")


def values() -> dict[str, Any]:
    return load(CHART / "values.yaml")


def setting_names(cls: type[ServiceSettings]) -> set[str]:
    return {f"PARLEY_{name.upper()}" for name in cls.model_fields}


def subscribers_in_code() -> dict[str, set[tuple[str, str]]]:
    """(group suffix, topic) of every subscriber on each process's router."""
    from faststream.kafka.subscriber.usecase import LogicSubscriber

    from scripts.gen_docs import wirings

    found: dict[str, set[tuple[str, str]]] = {}
    for name, wiring in wirings().items():
        subscribers = [s for s in wiring.router.subscribers if isinstance(s, LogicSubscriber)]
        found[name] = {
            (str(s.group_id).removeprefix("parley."), topic) for s in subscribers for topic in s.topic_names
        }
    return found


def test_the_catalog_partitions_are_the_topic_catalogs() -> None:
    assert catalog()["partitions"] == {t.name: t.partitions for t in topics.PRIMARY_TOPICS}


def test_the_catalog_subscribers_are_the_consumer_groups_the_code_runs() -> None:
    services = catalog()["services"]
    assert set(services) == set(SETTINGS)
    in_code = subscribers_in_code()
    assert set(in_code) == set(SETTINGS)
    for name, subscribers in in_code.items():
        declared = {(s["name"], s["topic"]) for s in services[name]["subscribers"]}
        assert declared == subscribers, name


def test_the_catalog_facts_match_the_settings_classes() -> None:
    for name, facts in catalog()["services"].items():
        cls = SETTINGS[name]
        assert facts["api"] == issubclass(cls, ApiSettings), name
        assert facts["providers"] == ("graph_base_url" in cls.model_fields), name
        # a process reading Parley's app id without the provider clients gets it on its own
        assert facts.get("appId", False) == ("meta_app_id" in cls.model_fields and not facts["providers"]), (
            name
        )


def test_every_service_runs_its_console_script_on_its_default_port() -> None:
    scripts: set[str] = set()
    for pyproject in [*ROOT.glob("services/*/pyproject.toml"), *ROOT.glob("shared/*/pyproject.toml")]:
        scripts |= set(tomllib.loads(pyproject.read_text()).get("project", {}).get("scripts", {}))
    services = values()["services"]
    assert set(services) == set(SETTINGS)
    for name, cls in SETTINGS.items():
        assert services[name]["command"] == [f"parley-{name}"]
        assert services[name]["command"][0] in scripts
        assert services[name]["port"] == cls.model_fields["http_port"].default


def chart_variables() -> set[str]:
    """Every PARLEY_* name the templates write themselves."""
    text = "\n".join(p.read_text() for p in (CHART / "templates").glob("*"))
    return set(re.findall(r"\bPARLEY_[A-Z0-9_]+\b", text))


def test_every_parley_variable_the_chart_sets_is_a_real_setting() -> None:
    every = set().union(*(setting_names(cls) for cls in SETTINGS.values()))
    assert chart_variables() <= every
    services = values()["services"]
    for name, cls in SETTINGS.items():
        own = set(services[name].get("env") or {}) | set(services[name].get("secretEnv") or {})
        assert own <= setting_names(cls), (name, own - setting_names(cls))


def documented_defaults() -> set[str]:
    """The settings the chart README says it leaves at the code's defaults, and why."""
    text = (CHART / "README.md").read_text()
    section = text.split("## Settings the chart does not set", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"\bPARLEY_[A-Z0-9_]+\b", section))


def test_every_setting_is_set_by_the_chart_or_documented_as_left_at_its_default() -> None:
    services = values()["services"]
    documented = documented_defaults()
    for name, cls in SETTINGS.items():
        own = set(services[name].get("env") or {}) | set(services[name].get("secretEnv") or {})
        missing = setting_names(cls) - own - chart_variables() - documented
        assert not missing, f"{name}: set these in values.yaml or name them in the chart README: {missing}"
    # and the README names no variable that is not a setting any more
    every = set().union(*(setting_names(cls) for cls in SETTINGS.values()))
    assert documented <= every, documented - every


def test_every_required_setting_is_provided_to_each_service() -> None:
    facts = catalog()["services"]
    services = values()["services"]
    for name, cls in SETTINGS.items():
        required = {f"PARLEY_{n.upper()}" for n, f in cls.model_fields.items() if f.is_required()}
        provided = set(services[name].get("secretEnv") or {})
        if facts[name]["providers"]:
            provided.add("PARLEY_META_APP_ID")  # providers.metaAppId, else the Secret's meta-app-id
        assert required <= provided, (name, required - provided)


def test_secrets_are_referenced_never_created() -> None:
    for template in (CHART / "templates").glob("*.yaml"):
        assert not re.search(r"^kind:\s*Secret\b", template.read_text(), re.MULTILINE), template.name
    for name, service in values()["services"].items():
        secret_vars = set(service.get("secretEnv") or {})
        assert not secret_vars & set(service.get("env") or {}), name


def test_keda_scales_the_kafka_consumers_within_their_partitions() -> None:
    data, cat = values(), catalog()
    scaled = {n for n, s in data["services"].items() if s["keda"]["enabled"]}
    assert scaled == KEDA_SCALED
    for name in scaled:
        env = data["services"][name].get("env") or {}
        busy = 0  # the most replicas that all get a partition of some group
        for sub in cat["services"][name]["subscribers"]:
            consumers = (
                int(env.get(sub["consumersSetting"], sub["consumers"])) if "consumersSetting" in sub else 1
            )
            busy = max(busy, math.ceil(cat["partitions"][sub["topic"]] / consumers))
        keda = data["services"][name]["keda"]
        assert 1 <= keda["minReplicaCount"] <= keda["maxReplicaCount"] <= busy, name
    assert data["services"]["ingest"]["autoscaling"]["enabled"]
    assert (
        data["config"]["consumerGroupPrefix"] == ServiceSettings.model_fields["consumer_group_prefix"].default
    )


def test_the_catalog_knows_how_many_consumers_a_pod_runs_per_group() -> None:
    for name, facts in catalog()["services"].items():
        for sub in facts["subscribers"]:
            if "consumersSetting" in sub:
                field = sub["consumersSetting"].removeprefix("PARLEY_").lower()
                assert SETTINGS[name].model_fields[field].default == sub["consumers"], sub
    # policy's delivery group is the one that runs several consumers per pod
    delivery = next(
        s for s in catalog()["services"]["policy"]["subscribers"] if s["name"] == "policy-delivery"
    )
    assert delivery["consumersSetting"] == "PARLEY_DELIVERY_CONSUMERS"


def test_the_grace_period_outlasts_the_shutdown_bound_and_the_pre_stop_sleep() -> None:
    data = values()
    shutdown = ServiceSettings.model_fields["shutdown_timeout_s"].default
    assert data["config"]["shutdownTimeoutSeconds"] == shutdown
    t = data["termination"]
    grace = t["preStopSleepSeconds"] + math.ceil(shutdown) + t["graceMarginSeconds"]
    assert grace > t["preStopSleepSeconds"] + shutdown


def test_the_default_values_meet_the_values_schema_and_every_ci_value_set_exists() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    Draft7Validator.check_schema(schema)
    Draft7Validator(schema).validate(values())
    ci_sets = sorted((CHART / "ci").glob("*-values.yaml"))
    assert {p.name for p in ci_sets} >= {
        "default-values.yaml",
        "production-values.yaml",
        "minimal-values.yaml",
    }
