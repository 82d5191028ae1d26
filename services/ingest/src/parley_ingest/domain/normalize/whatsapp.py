"""WhatsApp Cloud API webhooks (pure). Written by the WhatsApp normalizer task."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from parley_ingest.domain.normalize.common import EMPTY, ParseResult


def parse_whatsapp_entry(entry: Mapping[str, Any]) -> ParseResult:
    """One ``entry`` of a ``whatsapp_business_account`` delivery."""
    return EMPTY
