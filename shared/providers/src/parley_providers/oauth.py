"""An OAuth access token as the providers hand it out, kept out of reprs and logs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["UserToken"]


@dataclass(frozen=True)
class UserToken:
    access_token: str
    expires_at: datetime | None
    refresh_token: str | None = None
    scopes: tuple[str, ...] = ()

    def __repr__(self) -> str:  # keep tokens out of reprs, tracebacks and logs
        return f"UserToken(expires_at={self.expires_at!r}, scopes={self.scopes!r})"
