"""Settings of the ingest HTTP process and the normalizer process."""

from __future__ import annotations

from parley_shared.settings import ServiceSettings
from pydantic import Field, SecretStr


class IngestSettings(ServiceSettings):
    """``parley-ingest``: webhook endpoints. Secrets are required and comma-separated."""

    http_port: int = 8080
    meta_app_secrets: SecretStr = Field(
        description="Comma-separated Meta app secrets; more than one while rotating."
    )
    meta_verify_token: SecretStr = Field(description="The hub.verify_token of the subscription.")
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)

    def meta_secrets(self) -> list[str]:
        return [s.strip() for s in self.meta_app_secrets.get_secret_value().split(",") if s.strip()]


class NormalizerSettings(ServiceSettings):
    """``parley-normalizer``: turns archived deliveries into normalized message events."""

    http_port: int = 8084
    channel_catch_up_timeout_s: float = Field(default=5.0, gt=0)
