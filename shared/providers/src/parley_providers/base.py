"""The small protocols every provider package implements, and the values they exchange.

A provider package (``meta``, ``x``, ``whatsapp``) exposes one :class:`ProviderPlugin` through the
``parley.providers`` entry-point group; services find them in :mod:`parley_providers.registry`
and never import a provider's modules for what the plugin offers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

import httpx
from parley_events import Provider, ReplyApproved

from parley_providers.inbound import ParseResult
from parley_providers.rules import Counting, ReplyRule

__all__ = [
    "ApiVersionStatus",
    "HandshakeAnswer",
    "ProviderPlugin",
    "Sender",
    "WebhookEndpoint",
    "WebhookSecrets",
]


@dataclass(frozen=True)
class WebhookSecrets:
    """What a webhook endpoint checks with: every signing secret valid now (the first one answers
    handshakes; several while one is rotated) and, where the provider has one, the verify token."""

    signing: tuple[str, ...]
    verify_token: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:  # secrets stay out of reprs and logs
        return f"WebhookSecrets(signing=<{len(self.signing)} secrets>)"


@dataclass(frozen=True)
class HandshakeAnswer:
    """The answer to a provider's GET: a JSON object, plain text, or an empty body."""

    status: int
    json: Mapping[str, str] | None = None
    text: str | None = None
    refusal: str | None = None
    """A fixed label for a refusal (``missing``, ``malformed``, ``refused``): metrics, never input."""


class WebhookEndpoint(Protocol):
    """One webhook endpoint, ``/webhooks/<name>``: its handshake, its signature, its parser."""

    name: str
    signature_header: str
    rate_limited_code: str | None
    """The error code of a per-client rate-limited handshake; None: the handshake is not limited
    (only a handshake whose answer is a signature, X's CRC, needs it)."""

    def handshake(self, query: Mapping[str, str], secrets: WebhookSecrets) -> HandshakeAnswer: ...

    def verify(self, body: bytes, header: str | None, secrets: WebhookSecrets) -> bool: ...

    def parse(self, payload: Any, now: datetime | None = None) -> ParseResult: ...


class Sender(Protocol):
    """Delivers an approved reply; answers the provider's id of what it sent, raises ProviderError."""

    async def send(self, reply: ReplyApproved, token: str) -> str: ...


@dataclass(frozen=True)
class ApiVersionStatus:
    """The provider API version a process is configured to call, and how long the provider keeps
    answering it."""

    provider: str
    api: str
    """Which of the provider's APIs (``graph`` for Meta's Graph API)."""
    version: str
    ends_on: date | None
    """The last day the provider answers this version; None: not announced, or not known."""
    days_left: int | None
    """Days from today to ``ends_on`` (negative once it has passed)."""
    warning: str | None = None
    """What a process should log at start (the end is near or past, or the version is unknown)."""


SenderFactory = Callable[[httpx.AsyncClient, Any], "Sender | None"]
"""Builds a provider's sender from a service's settings (each provider reads its own; None: the
provider is not configured there)."""


@dataclass(frozen=True)
class ProviderPlugin:
    """Everything one provider package offers the services through the registry."""

    name: str
    webhook: WebhookEndpoint | None
    """None for a provider whose deliveries arrive through another's endpoint (WhatsApp: Meta's)."""
    reply_rules: Mapping[tuple[Provider, str], ReplyRule]
    providers: Sequence[Provider] = ()
    """The conversation providers (``parley_events.Provider``) this package speaks for."""
    reauth_reason: Callable[[int | None, int | None], str] = lambda _code, _subcode: "provider_rejected_token"
    """Why a reconnect is needed, from the provider's error code and subcode (never its text)."""
    length_counters: Mapping[Counting, Callable[[str], int]] = field(default_factory=dict)
    """How this provider counts text where no generic counting fits (X's weighted length)."""
    make_sender: SenderFactory | None = None
    """How this provider's replies are sent."""
    api_versions: Callable[[Any, date], Sequence[ApiVersionStatus]] | None = None
    """The API versions a service's settings configure for this provider, and their end of life."""
