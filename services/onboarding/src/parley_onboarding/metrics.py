"""Onboarding's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter

PAGE_UNSUBSCRIBES = Counter(
    "parley_onboarding_page_unsubscribes",
    "Disconnects that removed the app from a Page: unsubscribed, failed (the provider refused or did "
    "not answer; the disconnect went on) or no_credential.",
    ["provider", "outcome"],
)

SUBSCRIPTION_CHECKS = Counter(
    "parley_onboarding_subscription_checks",
    "Webhook subscription checks per provider account (a Page counts once): complete, repaired, "
    "lost (incomplete and not restored), unreachable (the provider did not answer; tried again at "
    "the next check) or no_credential.",
    ["provider", "outcome"],
)

TOKEN_REFRESHES = Counter(
    "parley_onboarding_token_refreshes",
    "Refresh-job decisions per channel token near its end: refreshed, waiting (too young for the "
    "provider to refresh), refused (the channel needs a reconnect) or unreachable (tried again next run).",
    ["provider", "outcome"],
)
