"""An X account's profile address: ``x.com/{handle}``; its numeric id alone is no address."""

from __future__ import annotations

import re

from parley_events import Provider

# X handles: letters, digits and underscores, at most 15
HANDLE = re.compile(r"[A-Za-z0-9_]{1,15}")


def account_url(provider: Provider, account_id: str, account_name: str | None) -> str | None:
    handle = (account_name or "").removeprefix("@")
    if provider is Provider.X and HANDLE.fullmatch(handle):
        return f"https://x.com/{handle}"
    return None
