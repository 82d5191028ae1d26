"""Policy's template adapters on the real store (PostgreSQL, and MongoDB for the test marked so):
what a template's updates leave behind, and what a restarted replica loads back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from parley_events import (
    ChannelTemplateCategoryChanged,
    ChannelTemplateQualityChanged,
    ChannelTemplateStatusChanged,
    Provider,
)
from parley_policy.adapters.postgres import PostgresPolicyStore, PostgresPolicyTemplates
from parley_policy.adapters.stores import PolicyStore, PolicyTemplates, TemplatesPort
from parley_policy.domain.decision import TemplateInfo
from parley_shared.store import open_store

pytestmark = pytest.mark.integration

AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def status(
    status: str, count: int | None = None, category: str | None = None
) -> ChannelTemplateStatusChanged:
    return ChannelTemplateStatusChanged(
        event_id=f"e_{status}",
        channel_id="chn_wa",
        tenant_id="ten",
        provider=Provider.WHATSAPP,
        occurred_at=AT,
        template_name="order_update",
        language="en_US",
        status=status,
        parameter_count=count,
        category=category,
    )


async def updates_survive_a_restart(store_url: str) -> None:
    store = await open_store(store_url)
    try:

        def templates() -> TemplatesPort:
            if store.kind == "postgresql":
                return PostgresPolicyTemplates(store.postgres)
            return PolicyTemplates(store.db)

        if store.kind == "postgresql":
            await PostgresPolicyStore(store.postgres).ensure_indexes()  # the migrations
        else:
            await PolicyStore(store.db).ensure_indexes()
        first = templates()
        await first.record(status("PENDING", 2, "UTILITY"))
        await first.record(status("APPROVED"))  # Meta's review: no count
        await first.record_category(
            ChannelTemplateCategoryChanged(
                event_id="e_cat",
                channel_id="chn_wa",
                tenant_id="ten",
                provider=Provider.WHATSAPP,
                occurred_at=AT,
                template_name="order_update",
                language="en_US",
                category="AUTHENTICATION",
                previous_category="UTILITY",
            )
        )
        await first.record_quality(
            ChannelTemplateQualityChanged(
                event_id="e_q",
                channel_id="chn_wa",
                tenant_id="ten",
                provider=Provider.WHATSAPP,
                occurred_at=AT,
                template_name="order_update",
                language="en_US",
                quality="YELLOW",
                previous_quality="GREEN",
            )
        )
        expected = {("order_update", "en_US"): TemplateInfo("APPROVED", 2, "AUTHENTICATION", "YELLOW")}
        assert first.of("chn_wa") == expected

        restarted = templates()
        await restarted.load()
        assert restarted.of("chn_wa") == expected
        await restarted.record(status("DELETED"))
        again = templates()
        await again.load()
        assert again.of("chn_wa") == {
            ("order_update", "en_US"): TemplateInfo("DELETED", 2, "AUTHENTICATION", "YELLOW")
        }
    finally:
        await store.close()


async def test_template_updates_survive_a_restart_on_postgresql(store_url: str) -> None:
    await updates_survive_a_restart(store_url)


@pytest.mark.mongodb
async def test_template_updates_survive_a_restart_on_mongodb(store_url: str) -> None:
    await updates_survive_a_restart(store_url)
