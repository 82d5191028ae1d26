"""Development defaults shared by `make run` and `make demo` (never used in production)."""

from __future__ import annotations

import os

DEV_DEFAULTS = {
    # Obviously fake values for a laptop stack; production sets real ones from its secret store.
    "PARLEY_META_APP_SECRETS": "dev-meta-app-secret",
    "PARLEY_META_VERIFY_TOKEN": "dev-verify-token",
    "PARLEY_X_CONSUMER_SECRETS": "dev-x-consumer-secret",
    "PARLEY_JWT_HS256_SECRET": "dev-jwt-secret-change-me-in-production",
}

SERVICES = {
    # console script: port
    "parley-ingest": 8080,
    "parley-normalizer": 8084,
    "parley-routing": 8083,
    "parley-policy": 8082,
    "parley-onboarding": 8081,
}


def dev_env() -> dict[str, str]:
    """The environment for the local stack: the caller's PARLEY_* values win over defaults."""
    env = dict(os.environ)
    for key, value in DEV_DEFAULTS.items():
        env.setdefault(key, value)
    return env
