"""OAuth plumbing every provider shares: the access token as the providers hand it out (kept out
of reprs and logs), the authorization request's URL, and PKCE (RFC 7636) for the providers that
take it."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

__all__ = ["UserToken", "authorization_url", "code_challenge"]


def authorization_url(base_url: str, path: str, params: Mapping[str, str | None]) -> str:
    """``base_url`` + ``path`` with the query the provider's authorization page takes (parameters
    that are None are left out); the host is a setting so the sandbox can stand in for it."""
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{base_url.rstrip('/')}/{path.lstrip('/')}?{query}"


def code_challenge(verifier: str) -> str:
    """The S256 code challenge of a verifier: BASE64URL(SHA256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class UserToken:
    access_token: str
    expires_at: datetime | None
    refresh_token: str | None = None
    scopes: tuple[str, ...] = ()

    def __repr__(self) -> str:  # keep tokens out of reprs, tracebacks and logs
        return f"UserToken(expires_at={self.expires_at!r}, scopes={self.scopes!r})"
