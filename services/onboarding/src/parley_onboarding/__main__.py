"""Console entry point: ``parley-onboarding``."""

from __future__ import annotations

from parley_shared.http import run_service

from parley_onboarding.settings import OnboardingSettings


def main() -> None:
    run_service(OnboardingSettings, "parley_onboarding.bootstrap:create_onboarding_app")


if __name__ == "__main__":
    main()
