"""A started Page connection (pure): what a login granted, kept until the admin activates the
Pages and profiles they choose, or until it expires.

The user token is never kept: activation needs only its expiry (the admin's grant, tracked as the
channels' token expiry) and the Page tokens, which the store keeps encrypted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from parley_providers.base import GrantedPage


@dataclass(frozen=True)
class PageConnection:
    """One login's grant, between ``POST /v1/connections/meta`` and its activation."""

    id: str
    tenant_id: str
    actor_id: str
    created_at: datetime
    expires_at: datetime | None
    """None only on connections stored before they carried it (then ``created_at`` + the TTL)."""
    user_token_expires_at: datetime | None
    granted: frozenset[str]
    pages: tuple[GrantedPage, ...]

    def expired(self, now: datetime, ttl: timedelta) -> bool:
        return now > (self.expires_at or self.created_at + ttl)

    def page(self, page_id: str) -> GrantedPage | None:
        return next((p for p in self.pages if p.id == page_id), None)

    def page_of_instagram(self, instagram_id: str) -> GrantedPage | None:
        """The granted Page an Instagram profile is linked to."""
        return next((p for p in self.pages if p.instagram_id and p.instagram_id == instagram_id), None)
