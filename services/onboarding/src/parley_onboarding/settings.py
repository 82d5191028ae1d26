"""Settings of the onboarding process."""

from __future__ import annotations

from parley_shared.settings import ServiceSettings


class OnboardingSettings(ServiceSettings):
    """``parley-onboarding``: connects channels and holds their settings."""

    http_port: int = 8081
