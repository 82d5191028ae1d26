"""A WhatsApp number's click-to-chat address: ``wa.me/{number}``, the full number in international
format with digits only (no ``+``, spaces or dashes), as WhatsApp's click-to-chat help describes."""

from __future__ import annotations

import re

from parley_events import Provider

E164 = re.compile(r"\+?[1-9][0-9]{6,14}")


def account_url(provider: Provider, account_id: str, account_name: str | None) -> str | None:
    """``account_name`` is the number (E.164); the phone number id in ``account_id`` is no address."""
    if provider is not Provider.WHATSAPP or not account_name:
        return None
    number = re.sub(r"[\s().-]", "", account_name)
    return f"https://wa.me/{number.removeprefix('+')}" if E164.fullmatch(number) else None
