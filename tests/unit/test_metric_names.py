"""Every Prometheus metric Parley exports follows the Prometheus naming conventions."""

from __future__ import annotations

import re

import parley_ingest.metrics  # noqa: F401 - registers ingest's metrics
import parley_onboarding.metrics  # noqa: F401 - registers onboarding's metrics
import parley_providers.metrics  # noqa: F401 - registers the provider packages' metrics
import parley_shared.metrics  # noqa: F401 - registers the shared metrics
import pytest
from prometheus_client import REGISTRY

pytestmark = pytest.mark.unit

NAME = re.compile(r"^parley_[a-z][a-z0-9_]*$")


def parley_metrics() -> list[tuple[str, str]]:
    return [(m.name, m.type) for m in REGISTRY.collect() if m.name.startswith("parley_")]


def test_parley_exports_metrics() -> None:
    assert len(parley_metrics()) >= 10


@pytest.mark.parametrize(("name", "kind"), parley_metrics())
def test_metric_names_follow_the_conventions(name: str, kind: str) -> None:
    assert NAME.match(name), f"{name}: snake_case with the parley_ prefix"
    if kind == "counter":
        # prometheus_client strips _total from a counter's family name and adds it to the sample
        assert not name.endswith("_total")
    if kind == "histogram":
        assert name.endswith(("_seconds", "_bytes")), f"{name}: a histogram names its base unit"
    assert not re.search(r"(milli|micro)?seconds?_(ms|us)|_ms$|_millis", name), f"{name}: use base units"
    assert "__" not in name
