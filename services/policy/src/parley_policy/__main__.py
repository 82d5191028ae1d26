"""Console entry point: ``parley-policy``."""

from __future__ import annotations

from parley_shared.http import run_service

from parley_policy.settings import PolicySettings


def main() -> None:
    run_service(PolicySettings, "parley_policy.bootstrap:create_policy_app")


if __name__ == "__main__":
    main()
