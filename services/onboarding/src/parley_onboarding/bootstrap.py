"""The one wiring point of the onboarding process.

Foundation scope: the process runs with its health, readiness and metrics endpoints and its
broker and store clients; its rules and subscribers arrive with the onboarding issue.
"""

from __future__ import annotations

from parley_shared.runtime import ServiceSpec, create_app
from parley_shared.settings import load_settings
from starlette.applications import Starlette

from parley_onboarding.settings import OnboardingSettings


def create_onboarding_app(settings: OnboardingSettings | None = None) -> Starlette:
    settings = settings or load_settings(OnboardingSettings)
    return create_app(ServiceSpec(name="onboarding", settings=settings))
