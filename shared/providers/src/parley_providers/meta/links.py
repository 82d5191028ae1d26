"""Where a Facebook Page or an Instagram profile is on the web, for people to open.

A Page's address works with its numeric id (``facebook.com/{page id}`` redirects to its vanity
name); an Instagram profile is reached by its username only (``instagram.com/{username}``), so an
Instagram channel whose username is not known has no address.
"""

from __future__ import annotations

import re

from parley_events import Provider

# Instagram usernames: letters, digits, periods and underscores, at most 30
INSTAGRAM_USERNAME = re.compile(r"[A-Za-z0-9._]{1,30}")
PAGE_ID = re.compile(r"[0-9]{1,30}")


def account_url(provider: Provider, account_id: str, account_name: str | None) -> str | None:
    if provider is Provider.MESSENGER and PAGE_ID.fullmatch(account_id):
        return f"https://www.facebook.com/{account_id}"
    if provider is Provider.INSTAGRAM and account_name and INSTAGRAM_USERNAME.fullmatch(account_name):
        return f"https://www.instagram.com/{account_name}"
    return None
