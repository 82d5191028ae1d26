"""The store URL's scheme chooses the adapters; nothing else of the URL is read or repeated."""

from __future__ import annotations

import pytest
from parley_shared.store import UnknownStore, store_kind

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("mongodb://127.0.0.1:27017/parley", "mongodb"),
        ("mongodb+srv://user:secret@cluster.example/parley", "mongodb"),
        ("MONGODB://host/db", "mongodb"),
        ("postgresql://postgres@127.0.0.1:54329/parley", "postgresql"),
        ("postgres://user:secret@db.example/parley?sslmode=require", "postgresql"),
    ],
)
def test_the_scheme_names_the_store(url: str, kind: str) -> None:
    assert store_kind(url) == kind


@pytest.mark.parametrize("url", ["mysql://user:hunter2@db/parley", "127.0.0.1:27017", "", "sqlite:///x.db"])
def test_any_other_url_is_refused_without_repeating_it(url: str) -> None:
    with pytest.raises(UnknownStore) as refused:
        store_kind(url)
    assert "hunter2" not in str(refused.value)
    assert "mongodb://" in str(refused.value) and "postgresql://" in str(refused.value)
