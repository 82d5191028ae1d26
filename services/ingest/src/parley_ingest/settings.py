"""Settings of the ingest HTTP process and the normalizer process."""

from __future__ import annotations

from parley_providers.base import WebhookSecrets
from parley_shared.settings import ServiceSettings
from pydantic import Field, SecretStr


class IngestSettings(ServiceSettings):
    """``parley-ingest``: webhook endpoints. Secrets are required and comma-separated."""

    http_port: int = 8080
    meta_app_secrets: SecretStr = Field(
        description="Comma-separated Meta app secrets; more than one while rotating."
    )
    meta_verify_token: SecretStr = Field(description="The hub.verify_token of the subscription.")
    instagram_app_secrets: SecretStr | None = Field(
        default=None,
        description="Comma-separated secrets of the Instagram app of Instagram Login (it signs the "
        "webhooks of accounts connected without a Page); more than one while rotating. "
        "/webhooks/meta accepts either app's signature.",
    )
    x_consumer_secrets: SecretStr | None = Field(
        default=None,
        description="Comma-separated X consumer secrets (first one answers CRC checks); "
        "unset means the X endpoints are not served.",
    )
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    max_publishes_in_flight: int = Field(
        default=256,
        gt=0,
        description="Verified deliveries one process lets wait for the broker's acknowledgement at "
        "once; one more is answered 503 with Retry-After at once instead of queueing (the provider "
        "retries). Roughly the process's sustained rate times the longest wait acceptable.",
    )
    overload_retry_after_s: int = Field(
        default=1, gt=0, le=300, description="The Retry-After of a 503 for a full process."
    )
    x_crc_per_minute: int = Field(
        default=60,
        gt=0,
        description="CRC checks answered per minute to one client address, by one process (a "
        "burst of as many, then refilled evenly); more get 429. X re-checks hourly and on demand. "
        "Behind a proxy the address is the proxy's unless uvicorn trusts its X-Forwarded-For.",
    )

    def meta_secrets(self) -> list[str]:
        return _split(self.meta_app_secrets)

    def instagram_secrets(self) -> list[str]:
        return _split(self.instagram_app_secrets)

    def x_secrets(self) -> list[str]:
        return _split(self.x_consumer_secrets)

    def webhook_secrets(self, endpoint: str) -> WebhookSecrets | None:
        """What ``/webhooks/<endpoint>`` checks with; None: not configured, not served."""
        if endpoint == "meta":
            # each app's set rotates on its own; a delivery may be signed by either app (the Meta
            # app for Pages and Page-linked profiles, the Instagram app for Instagram Login)
            signing = (*self.meta_secrets(), *self.instagram_secrets())
            return WebhookSecrets(signing, self.meta_verify_token.get_secret_value())
        if endpoint == "x" and self.x_secrets():
            return WebhookSecrets(tuple(self.x_secrets()))
        return None

    def handshakes_per_minute(self, endpoint: str) -> int:
        """Handshakes one client address gets a minute, where the endpoint limits them (X's CRC)."""
        return self.x_crc_per_minute


def _split(secret: SecretStr | None) -> list[str]:
    if secret is None:
        return []
    return [s.strip() for s in secret.get_secret_value().split(",") if s.strip()]


class NormalizerSettings(ServiceSettings):
    """``parley-normalizer``: turns archived deliveries into normalized message events."""

    http_port: int = 8084
    channel_catch_up_timeout_s: float = Field(default=5.0, gt=0)
    dedupe_window: int = Field(
        default=100_000, ge=0, description="How many recent event ids a normalizer remembers."
    )
    encryption_keys: SecretStr | None = Field(
        default=None,
        description="The same keys as onboarding: the normalizer reads a channel's token (read only) "
        "to fetch what a webhook names by ids only (Instagram mentions' text and author). Unset: "
        "no lookups, no store; such messages are published marked unavailable (not_configured).",
    )
    graph_base_url: str = Field(
        default="",
        description="Where Meta's Graph API calls go; empty: Meta's own host (known to parley-providers). "
        "Only the provider sandbox changes it.",
    )
    graph_api_version: str = Field(
        default="",
        pattern=r"^(v\d+\.\d+)?$",
        description="The Graph API version the lookups use (vNN.N); empty: the version "
        "parley-providers is tested against (docs/operations.md, moving the Graph API version).",
    )
    instagram_graph_base_url: str = Field(
        default="",
        description="Where lookups for Instagram accounts connected with Instagram Login go; empty: "
        "the Instagram API's own host (parley-providers knows it).",
    )
    content_lookup_attempts: int = Field(
        default=3,
        ge=1,
        le=10,
        description="Attempts of one content lookup when the provider fails transiently (an outage, "
        "throttling); then the message is published marked unavailable.",
    )
    content_lookup_backoff_s: float = Field(
        default=0.5, ge=0, description="The first wait between attempts; doubled each time."
    )
    content_lookup_backoff_max_s: float = Field(
        default=5.0,
        ge=0,
        description="The longest wait between attempts, the provider's Retry-After included (the "
        "partition waits meanwhile).",
    )
    meta_app_id: str | None = Field(
        default=None,
        description="Parley's Meta app (the one Pages connect to): a handover naming it as the new "
        "owner is Parley's own take or pass. Unset: handovers are read by whom they reached.",
    )
    instagram_app_id: str | None = Field(
        default=None,
        description="The Instagram app of Instagram Login, Parley's too (read like meta_app_id).",
    )

    def own_app_ids(self) -> frozenset[str]:
        """Parley's own app ids, as handover notifications name them."""
        return frozenset(a.strip() for a in (self.meta_app_id, self.instagram_app_id) if a and a.strip())
