"""Settings of the routing process."""

from __future__ import annotations

from parley_shared.auth import ApiSettings
from pydantic import Field


class RoutingSettings(ApiSettings):
    """``parley-routing``: conversations, queues, ownership and access."""

    http_port: int = 8083
    auto_resolve_interval_s: float = Field(
        default=60.0, gt=0, description="How often idle conversations are swept."
    )
    outbox_relay_interval_s: float = Field(
        default=10.0,
        gt=0,
        description=(
            "How often unpublished events are retried. On PostgreSQL a replica holds the outbox of"
            " what it committed or relayed for six intervals; another replica's relay takes it after."
        ),
    )
    seen_message_retention_s: float = Field(
        default=8 * 24 * 3600.0,
        gt=0,
        description=(
            "How long the provider message ids of recorded messages are remembered, so a provider's"
            " late redelivery (Meta retries for 36 hours, WhatsApp for 7 days) is a duplicate."
        ),
    )
    batch_max_records: int = Field(
        default=200,
        ge=1,
        le=5000,
        description="Most normalized messages applied together (one store round per batch).",
    )
    conversation_cache_per_partition: int = Field(
        default=1000,
        ge=0,
        description=(
            "Conversations kept in memory per assigned inbound partition between batches (least"
            " recently used out first; dropped when the partition is revoked). 0 keeps none."
        ),
    )
