"""WhatsApp Cloud API error numbers Parley acts on (its errors are Graph errors: meta.errors)."""

from __future__ import annotations

WRONG_CODE = 136025
"""``verify_code``: the code the customer typed does not match the one Meta sent."""
WINDOW_CLOSED = 131047
"""Re-engagement: more than 24 hours since the customer's last message; only a template may go."""
THROUGHPUT_EXCEEDED = 130429
"""The number sent more messages per second than its throughput allows (WhatsApp throughput)."""
SPAM_RATE_LIMITED = 131048
"""Sends from the number are limited because too many were marked as spam."""
PAIR_RATE_LIMITED = 131056
"""Too many messages from the number to one customer in a short time (pair rate limit)."""
RATE_LIMIT_CODES = frozenset({THROUGHPUT_EXCEEDED, SPAM_RATE_LIMITED, PAIR_RATE_LIMITED})
"""The Cloud API's rate limits: back off and try again."""
TEMPLATE_EXISTS = 2388024
"""Template creation (code 100, this subcode): a template of that name already exists in that
language, or one of that name is still being deleted (a deleted name is reusable after 30 days)."""
