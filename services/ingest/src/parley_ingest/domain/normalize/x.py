"""X Account Activity API webhooks (pure). Written by the X normalizer task."""

from __future__ import annotations

from typing import Any

from parley_ingest.domain.normalize.common import EMPTY, ParseResult


def parse_x(payload: Any) -> ParseResult:
    """One X delivery: ``direct_message_events`` and ``tweet_create_events`` for ``for_user_id``."""
    return EMPTY
