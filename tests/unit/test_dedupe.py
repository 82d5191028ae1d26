"""The normalizer's bounded memory of recently published ids."""

from __future__ import annotations

import pytest
from parley_ingest.domain.dedupe import RecentIds

pytestmark = pytest.mark.unit


def test_an_id_is_remembered_until_capacity_newer_ids_push_it_out() -> None:
    recent = RecentIds(capacity=3)
    for event_id in ("a", "b", "c"):
        recent.add(event_id)
    assert "a" in recent
    recent.add("d")
    assert "a" not in recent
    assert all(i in recent for i in ("b", "c", "d"))
    assert len(recent) == 3


def test_seeing_an_id_again_makes_it_the_newest() -> None:
    recent = RecentIds(capacity=2)
    recent.add("a")
    recent.add("b")
    recent.add("a")
    recent.add("c")
    assert "a" in recent
    assert "b" not in recent


def test_a_zero_window_remembers_nothing() -> None:
    recent = RecentIds(capacity=0)
    recent.add("a")
    assert "a" not in recent
    assert len(recent) == 0
