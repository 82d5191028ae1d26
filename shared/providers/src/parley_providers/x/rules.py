"""X's reply rules, with their sources (pure)."""

from __future__ import annotations

from parley_events import Provider

from parley_providers.rules import Counting, ReplyRule

X_DM_MAX = 10_000
X_POST_MAX = 280

RULES: dict[tuple[Provider, str], ReplyRule] = {
    (Provider.X, "direct"): ReplyRule(
        Provider.X,
        "direct",
        None,
        None,
        X_DM_MAX,
        Counting.CHARACTERS,
        False,
        None,
        "X developer docs: direct messages up to 10,000 characters",
    ),
    (Provider.X, "mention"): ReplyRule(
        Provider.X,
        "mention",
        None,
        None,
        X_POST_MAX,
        Counting.X_WEIGHTED,
        False,
        None,
        "X developer docs and twitter-text: posts up to 280 weighted characters",
    ),
}
