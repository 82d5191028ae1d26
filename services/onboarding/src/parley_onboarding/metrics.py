"""Onboarding's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter

PAGE_UNSUBSCRIBES = Counter(
    "parley_onboarding_page_unsubscribes",
    "Removals of the app's webhook subscriptions for a channel (a Page's on a disconnect; an X "
    "handle's on a disconnect or when it switches X API): unsubscribed, failed (the provider refused "
    "or did not answer; the disconnect or switch went on) or no_credential.",
    ["provider", "outcome"],
)
SUBSCRIPTION_CHECKS = Counter(
    "parley_onboarding_subscription_checks",
    "Webhook subscription checks per provider account (a Page and its Instagram profile count once): "
    "complete, repaired (something was missing and is subscribed again), lost (something is missing "
    "and could not be subscribed), failed or unreachable (the provider could not be asked; tried "
    "again at the next check) or no_credential.",
    ["provider", "outcome"],
)

TOKEN_REFRESHES = Counter(
    "parley_onboarding_token_refreshes",
    "Refresh-job decisions per channel token near its end: refreshed, waiting (too young for the "
    "provider to refresh, or refreshed meanwhile), refused (the channel needs a reconnect), "
    "unreachable (tried again next run), claimed_elsewhere (another replica is spending this X "
    "refresh token) or no_refresh_token (an X grant without offline.access).",
    ["provider", "outcome"],
)
