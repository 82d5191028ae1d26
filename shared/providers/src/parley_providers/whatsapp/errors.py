"""WhatsApp Cloud API error numbers Parley acts on (its errors are Graph errors: meta.errors)."""

from __future__ import annotations

WRONG_CODE = 136025
"""``verify_code``: the code the customer typed does not match the one Meta sent."""
WINDOW_CLOSED = 131047
"""Re-engagement: more than 24 hours since the customer's last message; only a template may go."""
