"""The one wiring point of the policy process.

Foundation scope: the process runs with its health, readiness and metrics endpoints and its
broker and store clients; its rules and subscribers arrive with the policy issue.
"""

from __future__ import annotations

from parley_shared.runtime import ServiceSpec, create_app
from parley_shared.settings import load_settings
from starlette.applications import Starlette

from parley_policy.settings import PolicySettings


def create_policy_app(settings: PolicySettings | None = None) -> Starlette:
    settings = settings or load_settings(PolicySettings)
    return create_app(ServiceSpec(name="policy", settings=settings))
