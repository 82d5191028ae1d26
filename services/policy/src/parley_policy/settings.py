"""Settings of the policy process."""

from __future__ import annotations

from parley_shared.auth import ApiSettings
from pydantic import Field, SecretStr

from parley_policy.domain.rules import (
    WHATSAPP_THROUGHPUT_MAX_PER_S,
    WHATSAPP_THROUGHPUT_PER_S,
    WHATSAPP_TIER_LIMITS,
)

_TIERS = ", ".join(
    f"{i}={'unlimited' if n is None else f'{n:,}'}" for i, n in enumerate(WHATSAPP_TIER_LIMITS)
)


class PolicySettings(ApiSettings):
    """``parley-policy``: gates every outbound reply and delivers it."""

    http_port: int = 8082
    encryption_keys: SecretStr = Field(
        description="The same keys as onboarding: policy reads channel tokens."
    )
    graph_base_url: str = "https://graph.facebook.com"
    graph_api_version: str = "v21.0"
    meta_app_id: str
    meta_app_secret: SecretStr
    x_api_base_url: str = "https://api.x.com"
    x_client_id: str | None = None
    x_client_secret: SecretStr | None = None
    window_closing_lead_s: int = Field(
        default=3600, gt=0, description="reply_window.closing this long before."
    )
    window_sweep_interval_s: float = Field(default=30.0, gt=0)
    whatsapp_throughput_per_s: int = Field(
        default=WHATSAPP_THROUGHPUT_PER_S,
        ge=1,
        le=WHATSAPP_THROUGHPUT_MAX_PER_S,
        description=f"{WHATSAPP_THROUGHPUT_PER_S} by default, up to {WHATSAPP_THROUGHPUT_MAX_PER_S}.",
    )
    whatsapp_messaging_tier: int = Field(
        default=0,
        ge=0,
        le=len(WHATSAPP_TIER_LIMITS) - 1,
        description=f"Messaging limit tier: {_TIERS} unique customers reached outside the window per "
        "rolling 24 h.",
    )
    delivery_retry_budget_s: float = Field(
        default=600.0,
        gt=0,
        description="How long a reply is retried through transient provider errors (429, 5xx, "
        "throttling codes, no answer) before it fails with reason retry_budget_exhausted.",
    )
    delivery_backoff_s: float = Field(default=0.5, ge=0, description="The first wait between tries.")
    delivery_backoff_max_s: float = Field(
        default=30.0, gt=0, description="The longest wait between tries unless the provider asks longer."
    )
    delivery_consumers: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Kafka consumers delivering replies in each process, each with its own "
        "partitions: a reply retried through an outage holds back only its consumer's partitions.",
    )
