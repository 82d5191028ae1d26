"""The providers' reply rules as one table (pure), assembled from every provider plugin's rows.

Sources: docs/policy.md and each provider package; every number is in ../shared/PLATFORM-RULES.md.
A provider's message tags (the one that extends its window, the ones it retired) and its messaging
tiers are fields of its rows: policy names no provider module.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cache

from parley_events import ChannelSnapshot, Provider
from parley_providers import registry
from parley_providers.rules import Counting, ReplyRule

__all__ = [
    "Counting",
    "ReplyRule",
    "account_send_rate",
    "business_scope",
    "limit_update_scope",
    "messaging_limit",
    "messaging_limit_period",
    "messaging_limit_scope",
    "messaging_tiers",
    "portfolio_scope",
    "rule_for",
    "rules",
    "send_rate",
    "send_rate_max",
]


@cache
def rules() -> dict[tuple[Provider, str], ReplyRule]:
    """Every provider plugin's reply rows (read from the registry once, on first use)."""
    return registry.reply_rules()


def rule_for(provider: Provider, kind: str) -> ReplyRule:
    try:
        return rules()[(provider, kind)]
    except KeyError as exc:
        raise ValueError(f"no reply rule for {provider.value} {kind}") from exc


def messaging_tiers(provider: Provider = Provider.WHATSAPP) -> tuple[int | None, ...]:
    """Business-initiated reach per rolling 24 h by tier, from the provider's direct-reply row."""
    rule = rules().get((provider, "direct"))
    return rule.messaging_tiers if rule is not None else ()


def messaging_limit(tier: int, provider: Provider = Provider.WHATSAPP) -> int | None:
    """Unique customers a business may reach outside the window per rolling 24 h (None: no limit)."""
    tiers = messaging_tiers(provider)
    if not tiers:
        return None
    return tiers[min(max(tier, 0), len(tiers) - 1)]


def messaging_limit_period(provider: Provider = Provider.WHATSAPP) -> timedelta:
    """The rolling period a provider's messaging limits count unique customers over."""
    rule = rules().get((provider, "direct"))
    period = rule.messaging_limit_period if rule is not None else None
    return period if period is not None else timedelta(hours=24)


def messaging_limit_scope(channel_id: str, channel: ChannelSnapshot | None) -> str:
    """Whose messaging limit a business-initiated send counts against: the business portfolio,
    shared by all numbers of all its WhatsApp Business Accounts. A channel that names no portfolio
    counts against its account (every number of it), and a channel Parley knows no account of
    counts alone."""
    if channel is not None and channel.business_portfolio_id:
        return portfolio_scope(channel.business_portfolio_id)
    if channel is not None and channel.business_account_id:
        return business_scope(channel.business_account_id)
    return f"channel:{channel_id}"


def superseded_scope(channel: ChannelSnapshot | None) -> str | None:
    """The account scope a channel counted its messaging limit in before its business portfolio
    was known (``waba:<id>``), when it now counts for its portfolio: the customers recorded there
    in the rolling period count toward the portfolio too. None for any other channel."""
    if channel is None or not channel.business_portfolio_id or not channel.business_account_id:
        return None
    return business_scope(channel.business_account_id)


def limit_update_scope(business_account_id: str, channel: ChannelSnapshot | None) -> str:
    """Where a messaging limit the provider set for a WhatsApp Business Account is recorded: its
    portfolio's scope when a channel of the account (``channel``) names one, else the account's."""
    if channel is not None and channel.business_portfolio_id:
        return portfolio_scope(channel.business_portfolio_id)
    return business_scope(business_account_id)


def portfolio_scope(business_portfolio_id: str) -> str:
    """The messaging limit's scope of a business portfolio's numbers (all its accounts')."""
    return f"portfolio:{business_portfolio_id}"


def business_scope(business_account_id: str) -> str:
    """The messaging limit's scope of a WhatsApp Business Account's numbers."""
    return f"waba:{business_account_id}"


def send_rate(provider: Provider) -> int | None:
    """The provider's default sends per second per account (its direct-reply row)."""
    rule = rules().get((provider, "direct"))
    return rule.rate_per_second if rule is not None else None


def send_rate_max(provider: Provider) -> int | None:
    """The most a provider raises an account's sends per second to (None: not raisable)."""
    rule = rules().get((provider, "direct"))
    return rule.rate_max_per_second if rule is not None else None


def account_send_rate(
    provider: Provider, kind: str, channel: ChannelSnapshot | None, ceiling: int | None = None
) -> int | None:
    """Sends per second for one account and kind of reply (None: no per-second rate).

    Where the provider sets the rate per account (WhatsApp: 80 messages/s per number, 1,000 once
    Meta upgraded it, 20 in coexistence with the WhatsApp Business app), the channel's throughput
    level and coexistence choose it; else the kind's rules row. ``ceiling`` (a deployment's
    setting) lowers it, never raises it.
    """
    rate: int | None = None
    if kind == "direct" and channel is not None:
        rate = registry.account_send_rate(provider, channel.throughput_level, channel.coexistence)
    if rate is None:
        rate = rule_for(provider, kind).rate_per_second
    if rate is not None and ceiling is not None:
        rate = min(rate, ceiling)
    return rate
