"""The benchmarks' data set (bench/dataset.py), generated at a small size on every store."""

from __future__ import annotations

import pytest
from parley_shared.store import Store

from bench import dataset

pytestmark = pytest.mark.store


async def test_the_data_set_is_routings_own_rows_spread_over_the_channels(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dataset, "CHUNK", 7)  # several commits, the last one short
    written = await dataset.load(store, count=45, events=4)

    assert written == 45 * 4  # created and three messages each
    repository = dataset.repository_of(store)
    assert await repository.pending_outbox() == []  # everything marked published
    history = await repository.history_of("conv-data-44")
    assert [h["sequence"] for h in history] == [1, 2, 3, 4]
    assert history[0]["type"] == "parley.conversation.created.v1"
    stored = await repository.get_many([f"conv-data-{n}" for n in range(45)])
    assert len(stored) == 45
    assert {c.sequence for c in stored.values()} == {4}
    assert {c.channel_id for c in stored.values()} == {dataset.channel_id(n) for n in range(20)}
    page = await repository.list_visible("tenant-bench", [dataset.channel_id(3)], limit=10)
    assert sorted(c.id for c in page.items) == ["conv-data-23", "conv-data-3", "conv-data-43"]
