"""Which Page tasks let Parley run a Page as a channel (providers/meta/connect.py, security #13
finding 14b)."""

from __future__ import annotations

import pytest
from parley_providers.meta.connect import missing_page_tasks


@pytest.mark.parametrize(
    "tasks",
    [
        pytest.param(
            ["ADVERTISE", "ANALYZE", "CREATE_CONTENT", "MESSAGING", "MODERATE", "MANAGE"], id="admin"
        ),
        pytest.param(["MANAGE"], id="full-control"),
        pytest.param(["MESSAGING", "MODERATE"], id="messaging-and-moderate"),
        pytest.param(["moderate", "messaging"], id="case-insensitive"),
    ],
)
def test_enough_tasks_accepted(tasks: list[str]) -> None:
    assert missing_page_tasks(tasks) == []


@pytest.mark.parametrize(
    ("tasks", "missing"),
    [
        pytest.param(["MODERATE"], ["MESSAGING"], id="moderator-only"),
        pytest.param(["ANALYZE", "MODERATE", "CREATE_CONTENT"], ["MESSAGING"], id="moderator-and-editor"),
        pytest.param(["ANALYZE", "MESSAGING"], ["MODERATE"], id="messaging-only"),
        pytest.param(["ADVERTISE", "ANALYZE"], ["MESSAGING", "MODERATE"], id="advertiser"),
        pytest.param([], ["MESSAGING", "MODERATE"], id="none"),
    ],
)
def test_missing_tasks_named(tasks: list[str], missing: list[str]) -> None:
    assert missing_page_tasks(tasks) == missing
