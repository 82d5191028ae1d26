"""Graph API errors (Facebook, Instagram, WhatsApp Cloud API) and what each number means."""

from __future__ import annotations

from typing import Any

import httpx

from parley_providers.errors import ErrorKind, ProviderError
from parley_providers.http import body_of, int_or_none, retry_after, snippet
from parley_providers.whatsapp.errors import RATE_LIMIT_CODES as WHATSAPP_RATE_LIMIT_CODES
from parley_providers.whatsapp.errors import WINDOW_CLOSED as WHATSAPP_WINDOW_CLOSED

__all__ = [
    "APP_RATE_LIMITED",
    "APP_REMOVED",
    "INVALID_TOKEN",
    "OUTSIDE_WINDOW",
    "PAGE_SENDING_RESTRICTED",
    "PASSWORD_CHANGED",
    "PERMISSION_DENIED",
    "REAUTH_REASONS",
    "SERVICE_UNAVAILABLE",
    "TOKEN_EXPIRED",
    "TOKEN_INVALID",
    "classify_graph_error",
    "graph_error",
    "meta_error",
    "reauth_reason",
]

INVALID_TOKEN = 190
"""Graph's "invalid OAuth access token": the subcode says why (Graph API error handling)."""
APP_REMOVED = 458
PASSWORD_CHANGED = 460
TOKEN_EXPIRED = 463
TOKEN_INVALID = 467
REAUTH_REASONS = {
    APP_REMOVED: "app_removed",
    459: "checkpoint",
    PASSWORD_CHANGED: "password_changed",
    TOKEN_EXPIRED: "token_expired",
    464: "unconfirmed_user",
    TOKEN_INVALID: "token_invalid",
    492: "page_access_lost",
}
"""Code 190's subcodes: what a reconnect prompt should say."""
PERMISSION_DENIED = 10
"""Graph's "permission denied": a lost Page task or permission, or (with a window subcode) a send
outside the messaging window."""
OUTSIDE_WINDOW = 2018278
"""Code 10's subcode for a Messenger send outside the allowed window (Send API errors)."""


def reauth_reason(code: int | None, subcode: int | None) -> str:
    """Why a reconnect is needed, from Graph's error code and subcode (never its text)."""
    if code == INVALID_TOKEN:
        return REAUTH_REASONS.get(subcode or 0, "token_invalid")
    if code == PERMISSION_DENIED and subcode == PAGE_SENDING_RESTRICTED:
        return "sending_restricted"  # no reconnect helps; named so that a prompt never says revoked
    if code == PERMISSION_DENIED or (code is not None and 200 <= code <= 299):
        return "permission_revoked"
    return "provider_rejected_token"


APP_RATE_LIMITED = 4
"""The app's call-rate limit (Graph API rate limiting); the usage headers say how long to wait."""
SERVICE_UNAVAILABLE = 2
"""A temporary Graph fault: the same call may succeed later."""

_REAUTH_CODES = frozenset({102, INVALID_TOKEN})
_RATE_LIMIT_CODES = frozenset(
    {APP_RATE_LIMITED, 17, 32, 613, *WHATSAPP_RATE_LIMIT_CODES, *range(80001, 80010)}
)
_RETRYABLE_CODES = frozenset({1, SERVICE_UNAVAILABLE, 131000, 131016})
_WINDOW_CODES = frozenset({WHATSAPP_WINDOW_CLOSED})
# Messenger and Instagram report a closed 24-hour window as code 10 with these subcodes; without
# this, a closed window would look like a lost permission.
_WINDOW_SUBCODES = frozenset({OUTSIDE_WINDOW, 2534022})
PAGE_SENDING_RESTRICTED = 1893063
"""Code 10's subcode for a Page temporarily restricted from sending messages (Messenger Platform
changelog, 2026-06-25: https://developers.facebook.com/documentation/business-messaging/messenger-platform/changelog/).
Not a lost permission and not transient: every send fails the same until Meta lifts it."""


def classify_graph_error(status: int, code: int | None, subcode: int | None) -> ErrorKind:
    """Classify a Graph API (Facebook, Instagram, WhatsApp Cloud API) error by its numbers."""
    if code is not None:
        if code in _REAUTH_CODES:
            return ErrorKind.REAUTH_REQUIRED
        if code == PERMISSION_DENIED and subcode in _WINDOW_SUBCODES:
            return ErrorKind.WINDOW_CLOSED
        if code == PERMISSION_DENIED and subcode == PAGE_SENDING_RESTRICTED:
            return ErrorKind.SENDING_RESTRICTED
        if code == PERMISSION_DENIED or 200 <= code <= 299:
            return ErrorKind.PERMISSION_MISSING
        if code in _RATE_LIMIT_CODES:
            return ErrorKind.RATE_LIMITED
        if code in _WINDOW_CODES:
            return ErrorKind.WINDOW_CLOSED
        if code in _RETRYABLE_CODES:
            return ErrorKind.RETRYABLE
    if status == 429:
        return ErrorKind.RATE_LIMITED
    if status >= 500:
        return ErrorKind.RETRYABLE
    return ErrorKind.INVALID_REQUEST


def meta_error(
    provider: str, status: int, code: int | None, subcode: int | None, message: str, **details: Any
) -> ProviderError:
    """A :class:`ProviderError` for a Graph answer, its kind read from Graph's numbers."""
    return ProviderError(
        provider, status, code, subcode, message, classify_graph_error(status, code, subcode), **details
    )


def graph_error(provider: str, response: httpx.Response) -> ProviderError:
    """The :class:`ProviderError` for a non-2xx Graph answer."""
    data = body_of(response)
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return ProviderError(
            provider,
            response.status_code,
            None,
            None,
            snippet(response),
            retry_after_s=retry_after(response),
        )
    code = int_or_none(error.get("code"))
    subcode = int_or_none(error.get("error_subcode"))
    message = error.get("error_user_msg") or error.get("message") or f"HTTP {response.status_code}"
    details = error.get("error_data")
    if isinstance(details, dict) and isinstance(details.get("details"), str):
        message = f"{message} ({details['details']})"
    return meta_error(
        provider,
        response.status_code,
        code,
        subcode,
        str(message),
        error_type=str(error["type"]) if error.get("type") is not None else None,
        trace_id=str(error["fbtrace_id"]) if error.get("fbtrace_id") is not None else None,
        retry_after_s=retry_after(response),
    )
