"""A WhatsApp business number's profile: the fields and their limits (pure).

Sources (WhatsApp Business Platform documentation, "Business profiles", confirmed 2026-11):
``GET /{phone-number-id}/whatsapp_business_profile?fields=about,address,description,email,
profile_picture_url,websites,vertical`` answers ``{"data": [{...}]}``; ``POST`` to the same edge with
``messaging_product: "whatsapp"`` and any of the fields updates them, answering
``{"success": true}``. ``about``: 1 to 139 characters; ``address``: up to 256; ``description``: up to
512; ``email``: up to 128, an address; ``websites``: up to 2 URLs, each up to 256 characters and
starting with ``http://`` or ``https://``; ``vertical``: one of the industries below;
``profile_picture_handle``: a handle from the Graph API's Resumable Upload API
(``POST /{app-id}/uploads?file_length&file_type`` gives ``{"id": "upload:..."}``, then ``POST
/{upload-id}`` with the bytes, ``file_offset: 0`` and ``Authorization: OAuth {token}`` gives
``{"h": handle}``); the picture is a JPEG or PNG.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["PICTURE_TYPES", "PROFILE_FIELDS", "VERTICALS", "profile_problem"]

VERTICALS = frozenset(
    {
        "UNDEFINED",
        "OTHER",
        "AUTO",
        "BEAUTY",
        "APPAREL",
        "EDU",
        "ENTERTAIN",
        "EVENT_PLAN",
        "FINANCE",
        "GROCERY",
        "GOVT",
        "HOTEL",
        "HEALTH",
        "NONPROFIT",
        "PROF_SERVICES",
        "RETAIL",
        "TRAVEL",
        "RESTAURANT",
        "ALCOHOL",
        "ONLINE_GAMBLING",
        "PHYSICAL_GAMBLING",
        "OTC_DRUGS",
    }
)
PROFILE_FIELDS = ("about", "address", "description", "email", "websites", "vertical")
"""The profile's fields a business sets as text (the picture is uploaded)."""
READ_FIELDS = (*PROFILE_FIELDS, "profile_picture_url")
PICTURE_TYPES = frozenset({"image/jpeg", "image/png"})
_LIMITS = {"about": 139, "address": 256, "description": 512, "email": 128}
WEBSITES_MAX = 2
WEBSITE_LENGTH = 256
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def profile_problem(fields: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first field WhatsApp would refuse and why, or None."""
    for name, limit in _LIMITS.items():
        value = fields.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            return name, "text"
        if name == "about" and not value.strip():
            return name, "the about text cannot be empty"
        if len(value) > limit:
            return name, f"at most {limit} characters"
    email = fields.get("email")
    if isinstance(email, str) and email and not _EMAIL.fullmatch(email):
        return "email", "an email address"
    websites = fields.get("websites")
    if websites is not None:
        if not isinstance(websites, list) or len(websites) > WEBSITES_MAX:
            return "websites", f"at most {WEBSITES_MAX} URLs"
        for site in websites:
            if not (isinstance(site, str) and site.startswith(("http://", "https://"))):
                return "websites", "each website starts with http:// or https://"
            if len(site) > WEBSITE_LENGTH:
                return "websites", f"each website has at most {WEBSITE_LENGTH} characters"
    vertical = fields.get("vertical")
    if vertical is not None and vertical not in VERTICALS:
        return "vertical", "one of WhatsApp's industries, e.g. RETAIL, PROF_SERVICES, OTHER"
    return None
