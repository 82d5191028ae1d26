"""Settings of the policy process."""

from __future__ import annotations

from parley_events import Provider
from parley_shared.auth import ApiSettings
from pydantic import Field, SecretStr, field_validator

from parley_policy.domain.rules import messaging_tiers, send_rate_max


class PolicySettings(ApiSettings):
    """``parley-policy``: gates every outbound reply and delivers it."""

    http_port: int = 8082
    encryption_keys: SecretStr = Field(
        description="The same keys as onboarding: policy reads channel tokens."
    )
    graph_base_url: str = Field(
        default="",
        description="Where Meta's Graph API calls go; empty: Meta's own host (known to parley-providers). "
        "Only the provider sandbox changes it.",
    )
    graph_api_version: str = Field(
        default="",
        pattern=r"^(v\d+\.\d+)?$",
        description="The Graph API version Meta's calls use (vNN.N); empty: the version parley-providers "
        "is tested against. A version within 90 days of its end is warned about at start "
        "(docs/operations.md, moving the Graph API version).",
    )
    instagram_graph_base_url: str = Field(
        default="",
        description="Where replies of Instagram accounts connected with Instagram Login (no Page) go; "
        "empty: the Instagram API's own host (parley-providers knows it).",
    )
    meta_app_id: str
    meta_app_secret: SecretStr
    x_api_base_url: str = Field(
        default="",
        description="Where X API calls go; empty: X's own host (known to parley-providers). "
        "Only the provider sandbox changes it.",
    )
    x_client_id: str | None = None
    x_client_secret: SecretStr | None = None
    window_closing_lead_s: int = Field(
        default=3600, gt=0, description="reply_window.closing this long before."
    )
    window_sweep_interval_s: float = Field(default=30.0, gt=0)
    whatsapp_throughput_per_s: int | None = Field(
        default=None,
        ge=1,
        description="A ceiling on every WhatsApp number's messages per second. Unset: each number's "
        "own throughput (80 by default, 1,000 once Meta upgraded it, 20 in coexistence with the "
        "WhatsApp Business app, from its channel); set, it lowers a number's rate, never raises it.",
    )
    whatsapp_messaging_tier: int = Field(
        default=0,
        ge=0,
        description="Messaging limit tier, an index into WhatsApp's tiers of unique customers "
        "reached outside the window per rolling 24 h, for a business WhatsApp has sent no limit "
        "update for yet (docs/policy.md).",
    )

    @field_validator("whatsapp_throughput_per_s")
    @classmethod
    def _within_whatsapp_maximum(cls, value: int | None) -> int | None:
        top = send_rate_max(Provider.WHATSAPP)
        if value is not None and top is not None and value > top:
            raise ValueError(f"WhatsApp raises a number's throughput to {top} messages/s at most")
        return value

    @field_validator("whatsapp_messaging_tier")
    @classmethod
    def _a_whatsapp_tier(cls, value: int) -> int:
        tiers = messaging_tiers(Provider.WHATSAPP)
        if tiers and value >= len(tiers):
            raise ValueError(f"WhatsApp has {len(tiers)} messaging tiers: 0 to {len(tiers) - 1}")
        return value

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
