"""Development defaults shared by `make run` and `make demo` (never used in production)."""

from __future__ import annotations

import os

DEV_DEFAULTS = {
    # Obviously fake values for a laptop stack; production sets real ones from its secret store.
    "PARLEY_META_APP_SECRETS": "dev-meta-app-secret",
    "PARLEY_META_VERIFY_TOKEN": "dev-verify-token",
    "PARLEY_X_CONSUMER_SECRETS": "dev-x-consumer-secret",
    "PARLEY_JWT_HS256_SECRET": "dev-jwt-secret-change-me-in-production",
    # AES-256 key for channel credentials: 32 zero bytes, development only
    "PARLEY_ENCRYPTION_KEYS": "dev:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "PARLEY_META_APP_ID": "dev-meta-app",
    "PARLEY_META_APP_SECRET": "dev-meta-app-secret",
    "PARLEY_X_CLIENT_ID": "dev-x-client",
    "PARLEY_X_CLIENT_SECRET": "dev-x-client-secret",
    "PARLEY_X_WEBHOOK_ID": "dev-x-webhook",
    # the X Activity API: the sandbox's numeric webhook and its app Bearer token
    "PARLEY_X_ACTIVITY_WEBHOOK_ID": "1000000000000000001",
    "PARLEY_X_BEARER_TOKEN": "dev-x-bearer-token",
    # the provider sandbox stands in for Meta and X on a laptop
    "PARLEY_GRAPH_BASE_URL": "http://127.0.0.1:8090",
    "PARLEY_X_API_BASE_URL": "http://127.0.0.1:8090",
    # Instagram Login (no Page): the sandbox plays api.instagram.com and graph.instagram.com
    "PARLEY_INSTAGRAM_APP_ID": "dev-instagram-app",
    "PARLEY_INSTAGRAM_APP_SECRET": "dev-instagram-app-secret",
    "PARLEY_INSTAGRAM_APP_SECRETS": "dev-instagram-app-secret",
    "PARLEY_INSTAGRAM_OAUTH_BASE_URL": "http://127.0.0.1:8090/instagram-api",
    "PARLEY_INSTAGRAM_GRAPH_BASE_URL": "http://127.0.0.1:8090/instagram",
    # the login pages the console sends a browser to (Add Channel), served by the sandbox too
    "PARLEY_META_LOGIN_BASE_URL": "http://127.0.0.1:8090",
    "PARLEY_INSTAGRAM_LOGIN_BASE_URL": "http://127.0.0.1:8090/instagram-www",
    "PARLEY_X_AUTHORIZE_BASE_URL": "http://127.0.0.1:8090",
    # WhatsApp Embedded Signup: the sandbox's Login dialog opened with this configuration is its
    # signup window, which the console's Add Channel offers (docs/console.md)
    "PARLEY_WHATSAPP_EMBEDDED_SIGNUP_CONFIG_ID": "dev-whatsapp-signup",
    # the admin console at http://127.0.0.1:8081/console/ with its development sign-in (docs/console.md)
    "PARLEY_CONSOLE_ENABLED": "true",
    "PARLEY_CONSOLE_DEV_SIGN_IN": "true",
    # the console's Reports page asks the local reports service
    "PARLEY_CONSOLE_REPORTS_URL": "http://127.0.0.1:8085",
}

LOCAL_STORES = {
    # the stores of `make infra-up` (scripts/infra.sh)
    "postgres": "postgresql://postgres@127.0.0.1:54329/parley",
    "ferretdb": "mongodb://127.0.0.1:27017/parley",
}

SERVICES = {
    # console script: port
    "parley-sandbox": 8090,
    "parley-ingest": 8080,
    "parley-normalizer": 8084,
    "parley-routing": 8083,
    "parley-policy": 8082,
    "parley-onboarding": 8081,
    "parley-reports": 8085,
}


def dev_env() -> dict[str, str]:
    """The environment for the local stack: the caller's PARLEY_* values win over defaults."""
    env = dict(os.environ)
    for key, value in DEV_DEFAULTS.items():
        env.setdefault(key, value)
    # the services' store: the local PostgreSQL, or FerretDB under `make run STORE=ferretdb`
    env.setdefault(
        "PARLEY_STORE_URL", LOCAL_STORES["ferretdb" if env.get("STORE") == "ferretdb" else "postgres"]
    )
    return env
