"""Messages a webhook names by ids only (Instagram mentions), completed or marked (pure).

The normalizer asks the provider's API for the text and author (its content lookup); what it
gets is put into the message here, and a lookup that did not succeed marks the message with a
reason from a fixed set, so the message is published either way and a metric label stays bounded.
"""

from __future__ import annotations

import dataclasses

from parley_events import Author
from parley_providers.base import FetchedContent
from parley_providers.errors import ErrorKind
from parley_providers.inbound import ParsedMessage

NOT_CONFIGURED = "not_configured"
"""The normalizer has no lookup for the provider, or no access to the credential vault."""
NO_CREDENTIALS = "no_credentials"
"""The channel has no token in the vault."""
PROVIDER_UNAVAILABLE = "provider_unavailable"
"""The provider did not answer, or answered a transient failure, on every attempt."""

UNAVAILABLE_REASONS = frozenset(
    {
        NOT_CONFIGURED,
        NO_CREDENTIALS,
        PROVIDER_UNAVAILABLE,
        "reauth_required",
        "permission_missing",
        "not_found",
        "rate_limited",
    }
)
"""Every value of ``Content.unavailable`` (and of the metric's ``reason`` label)."""

_BY_KIND = {
    ErrorKind.REAUTH_REQUIRED: "reauth_required",
    ErrorKind.PERMISSION_MISSING: "permission_missing",
    ErrorKind.RATE_LIMITED: "rate_limited",
    ErrorKind.RETRYABLE: PROVIDER_UNAVAILABLE,
    # the provider refuses the request as it is: the media or comment is gone (deleted, made
    # private, comments turned off) or was never readable
    ErrorKind.INVALID_REQUEST: "not_found",
}


def is_transient(kind: ErrorKind) -> bool:
    """Whether the same lookup may succeed if asked again shortly."""
    return kind in (ErrorKind.RETRYABLE, ErrorKind.RATE_LIMITED)


def unavailable_reason(kind: ErrorKind) -> str:
    """The reason label of a lookup that failed with an error of this kind."""
    return _BY_KIND.get(kind, PROVIDER_UNAVAILABLE)


def backoff_s(attempt: int, base_s: float, max_s: float, retry_after_s: float | None = None) -> float:
    """The wait before attempt ``attempt + 1``: doubling from ``base_s``, or the provider's
    Retry-After, never more than ``max_s`` (the partition waits meanwhile)."""
    wait = retry_after_s if retry_after_s is not None else base_s * 2 ** (attempt - 1)
    return max(0.0, min(wait, max_s))


def with_fetched(parsed: ParsedMessage, fetched: FetchedContent) -> ParsedMessage:
    """The message with the text and author's username the provider's API gave."""
    author = parsed.author
    if fetched.author_name:
        author = Author(id=author.id, name=fetched.author_name, username=fetched.author_name)
    content = parsed.content.model_copy(update={"text": fetched.text, "unavailable": None})
    return dataclasses.replace(parsed, author=author, content=content, fetch=None)


def marked_unavailable(parsed: ParsedMessage, reason: str) -> ParsedMessage:
    """The message as the webhook gave it, marked: its content could not be fetched, and why."""
    label = reason if reason in UNAVAILABLE_REASONS else PROVIDER_UNAVAILABLE
    content = parsed.content.model_copy(update={"unavailable": label})
    return dataclasses.replace(parsed, content=content, fetch=None)
