"""What the console's language tests share: the messages German writes as English does."""

from __future__ import annotations

SAME_IN_GERMAN = frozenset(
    {
        # words German uses as they are
        "Name",
        "Status",
        "Team",
        "Teams",
        "Token",
        "Code",
        "Supervisor",  # the brief's German term
        # names of products and companies
        "Meta",
        "WhatsApp",
        "WhatsApp %(number)s",
        "X",
        "X Activity API",
        "Account Activity API",
        # times of day are written alike
        "%H:%M UTC",
        "%H:%M:%S UTC",
    }
)
"""Any other message German leaves in English is a message nobody translated."""
