"""The small protocols every provider package implements, and the values they exchange.

A provider package (``meta``, ``x``, ``whatsapp``) exposes one :class:`ProviderPlugin` through the
``parley.providers`` entry-point group; services find them in :mod:`parley_providers.registry`
and never import a provider's modules for what the plugin offers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

import httpx
from parley_events import Provider, ReplyApproved

from parley_providers.inbound import ContentToFetch, ParseResult
from parley_providers.oauth import UserToken
from parley_providers.rules import Counting, ReplyRule

__all__ = [
    "AccountConnector",
    "AccountLoginStart",
    "ApiVersionStatus",
    "AuthorizedAccount",
    "BusinessProfileManager",
    "Charge",
    "Connector",
    "ConnectorFactory",
    "DeliveryCharge",
    "EmbeddedSignup",
    "GrantedPage",
    "HandshakeAnswer",
    "LoginConnector",
    "LoginSubscriptionCheck",
    "MessageTemplate",
    "NumberConnector",
    "NumberRules",
    "PageConnector",
    "PageGrant",
    "PageLoginStart",
    "PkceLoginStart",
    "PortfolioCheck",
    "ProviderPlugin",
    "RefreshStep",
    "RotatingGrant",
    "Sender",
    "SignedUpNumber",
    "SignupRefusal",
    "SubscriptionCheck",
    "SubscriptionKeeper",
    "SubscriptionOutcome",
    "TemplateManager",
    "TokenCheck",
    "TokenRefusal",
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


@dataclass(frozen=True, slots=True)
class ThreadRef:
    """The thread a thread-control call is about: the channel's account and the customer."""

    provider: Provider
    account_id: str
    recipient_id: str
    metadata: str | None = None


@runtime_checkable
class ThreadControl(Protocol):
    """A sender whose provider routes each thread to one active responder among several apps
    (Meta's Conversation Routing; WhatsApp's has the same verbs): Parley's app can take the
    thread from another app, or release it; raises ProviderError."""

    async def take_thread_control(self, thread: ThreadRef, token: str) -> None: ...

    async def release_thread_control(self, thread: ThreadRef, token: str) -> None: ...


@dataclass(frozen=True, slots=True)
class ReadRef:
    """The customer message a read receipt is about: the channel's account and the message's id."""

    provider: Provider
    account_id: str
    message_id: str


@runtime_checkable
class ReadReceipts(Protocol):
    """A sender whose provider lets the business mark a customer's message as read and, in the
    same call, show a typing indicator (WhatsApp's Cloud API); raises ProviderError."""

    async def mark_read(self, message: ReadRef, token: str, typing: bool) -> None: ...


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


@dataclass(frozen=True)
class FetchedContent:
    """What a provider's API says about a message its webhook named by ids only."""

    text: str | None
    author_name: str | None
    """The author's username, when the provider gives it."""
    link: str | None = None
    """Where people see it (a permalink), when given."""


class ContentLookup(Protocol):
    """Fetches the text and author of a message a webhook names by ids only (Instagram mentions).

    Failures raise :class:`parley_providers.errors.ProviderError` with its kind: the caller
    retries the transient ones a bounded number of times and marks the message otherwise."""

    async def fetch(
        self, account_id: str, what: ContentToFetch, token: str, connect_path: str | None
    ) -> FetchedContent: ...


ContentLookupFactory = Callable[[httpx.AsyncClient, Any], "ContentLookup | None"]
"""Builds a provider's content lookup from the normalizer's settings (None: not configured)."""
"""Builds a provider's sender from a service's settings (each provider reads its own; None: the
provider is not configured there)."""


# --- connect flows: the provider side of connecting an account (onboarding calls them) ----------
#
# A provider's connector implements the flow its accounts are connected by: a person's login that
# grants Pages (PageConnector: Facebook Login), an OAuth authorization per account
# (AccountConnector: X), or a business phone number verified by a code (NumberConnector: WhatsApp).
# Onboarding keeps what is Parley's (claims, channels, stored secrets, the steps); the connector
# makes the calls and knows the provider's codes, limits and names. Errors are ProviderError.


@dataclass(frozen=True)
class TokenRefusal:
    """The provider refuses a channel's token: its error code and subcode, which the plugin's
    ``reauth_reason`` reads."""

    code: int | None
    subcode: int | None


@runtime_checkable
class TokenCheck(Protocol):
    """Asks the provider whether a channel's token still works."""

    async def token_refusal(self, token: str) -> TokenRefusal | None:
        """None while the token works; why it is refused otherwise. A failure that says nothing
        about the token (an outage) raises ProviderError."""
        ...


@runtime_checkable
class SubscriptionCheck(Protocol):
    """Reads and restores an account's webhook subscription (providers that drop subscriptions
    on their own, as Meta does after long delivery failures)."""

    async def missing_subscriptions(self, account_id: str, token: str) -> tuple[str, ...]:
        """What Parley needs and the account's subscription lacks (provider field names, sorted;
        () when nothing is missing). Failures raise ProviderError."""
        ...

    async def restore_subscriptions(self, account_id: str, token: str) -> None:
        """Subscribe the account to everything Parley needs again. Failures raise ProviderError."""
        ...


@runtime_checkable
class LoginSubscriptionCheck(Protocol):
    """A connector whose logged-in accounts (``LoginConnector``) have webhook subscriptions of
    their own, read and restored with the account's token elsewhere than its Pages' (Meta's
    Instagram Login: on graph.instagram.com)."""

    login_subscriptions: SubscriptionCheck
    """The check of such an account's subscription (``account_id``: the account's id)."""


@dataclass(frozen=True)
class GrantedPage:
    """A Page a person granted, with its Page token, the tasks they may perform on it, and the
    Instagram business profile linked to it (if any)."""

    id: str
    name: str
    access_token: str = field(repr=False)
    tasks: tuple[str, ...]
    instagram_id: str | None = None
    instagram_username: str | None = None


@dataclass(frozen=True)
class PageGrant:
    """What one login granted: the permissions, the Pages, and when the person's grant expires."""

    granted: frozenset[str]
    pages: tuple[GrantedPage, ...]
    expires_at: datetime | None


@runtime_checkable
class PageConnector(Protocol):
    """A person logs in and grants Pages, each possibly with a linked Instagram profile; every
    chosen Page is subscribed to the app's webhooks with its Page token (Meta)."""

    required_page_tasks: tuple[str, ...]
    """The tasks on a Page that are enough without full control (for people: what to ask for)."""

    async def grant(self, code: str, redirect_uri: str) -> PageGrant:
        """Trade the login dialog's code for the person's grant."""
        ...

    def missing_permissions(self, granted: Iterable[str], *, instagram: bool) -> list[str]:
        """The permissions Parley needs for Pages (or, ``instagram``, for profiles) that were not
        granted, sorted; [] when none is missing."""
        ...

    def missing_page_tasks(self, tasks: Iterable[str]) -> list[str]:
        """The tasks still needed on a Page with these tasks ([] when they are enough)."""
        ...

    async def subscribe_page(self, page_id: str, page_token: str) -> None: ...

    async def unsubscribe_page(self, page_id: str, page_token: str) -> None: ...


@dataclass(frozen=True)
class AuthorizedAccount:
    """The account an OAuth authorization was given for, and its token."""

    id: str
    display_name: str
    token: UserToken
    username: str | None = None
    """Its public name on the provider (an Instagram username, an X handle without ``@``)."""


@runtime_checkable
class AccountConnector(Protocol):
    """Each account authorizes on its own (OAuth 2.0 with PKCE) and is one channel (X)."""

    async def authorize(self, code: str, redirect_uri: str, code_verifier: str) -> AuthorizedAccount:
        """Trade the authorization code for a token and say whose it is."""
        ...

    async def subscribe(self, account: AuthorizedAccount) -> None:
        """Have the account's events delivered to Parley's webhook."""
        ...


class RefreshStep(StrEnum):
    """What a token refresh job does with one token now (its provider's rule decides)."""

    WAIT = "wait"
    """Not near its end yet, or too young for the provider to refresh: nothing now."""
    REFRESH = "refresh"
    """Refresh it now."""
    REPLACE = "replace"
    """It can no longer be refreshed (expired): only a new login replaces it."""


@runtime_checkable
class LoginConnector(Protocol):
    """An account logs in by itself (OAuth without PKCE), is one channel, and its long-lived
    token is refreshed before its end (Instagram API with Instagram Login: Meta's connector is
    one when an Instagram app is configured, beside being a PageConnector)."""

    async def login(self, code: str, redirect_uri: str) -> AuthorizedAccount:
        """Trade the login's code for the account and its long-lived token (``token.scopes``: the
        permissions granted)."""
        ...

    def missing_login_permissions(self, granted: Iterable[str]) -> list[str]:
        """The permissions Parley needs that were not granted, sorted; [] when none is missing."""
        ...

    async def subscribe_account(self, account_id: str, token: str) -> None:
        """Have the account's events delivered to Parley's webhook."""
        ...

    def refresh_step(self, expires_at: datetime, now: datetime, lead: timedelta) -> RefreshStep:
        """What to do now with a token ending at ``expires_at`` for a job refreshing ``lead``
        before the end."""
        ...

    async def refresh(self, token: str) -> UserToken:
        """The token refreshed (a new token and end). Refusals raise ProviderError."""
        ...


@runtime_checkable
class PageLoginStart(Protocol):
    """Where a browser starts the login that grants Pages (Facebook Login's dialog)."""

    def page_login_url(self, redirect_uri: str, state: str) -> str:
        """The login dialog's URL; it comes back to ``redirect_uri`` with ``code`` and ``state``
        (or ``error``)."""
        ...


@runtime_checkable
class AccountLoginStart(Protocol):
    """Where a browser starts a login that connects one account without a Page (Instagram Login)."""

    def account_login_url(self, redirect_uri: str, state: str) -> str:
        """The authorization page's URL; it comes back to ``redirect_uri`` with ``code`` and
        ``state`` (or ``error``)."""
        ...


@runtime_checkable
class PkceLoginStart(Protocol):
    """Where a browser starts an OAuth 2.0 authorization with PKCE (X)."""

    def authorize_url(self, redirect_uri: str, state: str, code_verifier: str) -> str:
        """The authorization page's URL, with the code challenge the provider takes for
        ``code_verifier`` (kept by the caller: the code the page gives back is traded with it,
        ``AccountConnector.authorize``)."""
        ...


@runtime_checkable
class SignupWindowStart(Protocol):
    """Where a browser starts a provider's self-service signup window (WhatsApp Embedded Signup)
    that comes back to the caller's page by a redirect."""

    def signup_window_url(self, redirect_uri: str, state: str) -> str | None:
        """The window's URL; it comes back to ``redirect_uri`` with ``code``, the account and number
        ids and ``state`` (or ``error``). None when no signup is configured, or where the
        provider's window answers only to its JavaScript SDK in the opening page."""
        ...


@runtime_checkable
class RotatingGrant(Protocol):
    """An account connector whose user tokens live a short while and are renewed with a refresh
    token that works once: each refresh answers the next one (X's OAuth 2.0 with ``offline.access``).
    Spending one refresh token twice fails the second time, so whoever refreshes must be the one
    holder of that refresh token (onboarding claims it in its store first)."""

    def grant_refresh_step(self, expires_at: datetime, now: datetime, lead: timedelta) -> RefreshStep:
        """What to do now with an access token ending at ``expires_at``, refreshing ``lead`` before
        its end (an access token past its end is refreshed too: the refresh token outlives it)."""
        ...

    async def refresh_grant(self, refresh_token: str) -> UserToken:
        """A new access token and the next refresh token (``refresh_token`` is spent). A refused
        refresh token (used, revoked) raises ProviderError with ``ErrorKind.REAUTH_REQUIRED``."""
        ...

    def grant_refusal_reason(self, error_type: str | None) -> str:
        """The reason a refused refresh gives for the reconnect, from the provider's error type (a
        fixed word: never the provider's text)."""
        ...


@dataclass(frozen=True)
class SubscriptionOutcome:
    """What subscribing one account, or checking its subscriptions, found and did."""

    account_id: str
    restored: tuple[str, ...] = ()
    """What was missing and is subscribed now (event types or fields)."""
    missing: tuple[str, ...] = ()
    """What is missing and could not be subscribed."""
    reason: str | None = None
    """Why something is missing: the provider error's kind (``reauth_required``, ...)."""

    @property
    def complete(self) -> bool:
        return not self.missing


@runtime_checkable
class SubscriptionKeeper(Protocol):
    """A connector whose accounts' webhook subscriptions Parley creates, checks and removes, through
    one of several delivery APIs the provider runs side by side (X: Account Activity and Activity)."""

    @property
    def delivery_apis(self) -> tuple[str, ...]:
        """The delivery APIs this deployment can use; the first is the one new accounts get."""
        ...

    async def subscribe_via(self, api: str, account_id: str, token: str) -> SubscriptionOutcome:
        """Subscribe the account through ``api`` (idempotent): what was created, what is missing.
        A failure before anything is known (the provider unreachable) raises ProviderError."""
        ...

    async def unsubscribe_via(self, api: str, account_id: str) -> tuple[str, ...]:
        """Remove the account's subscriptions of ``api``; what was removed (ProviderError if a
        removal failed)."""
        ...

    async def repair(self, api: str, tokens: Mapping[str, str]) -> list[SubscriptionOutcome]:
        """Check every account of ``api`` (account id -> its token) and re-create what each lacks;
        one check per account (an API with nothing to check answers an empty list)."""
        ...


@dataclass(frozen=True)
class NumberRules:
    """What a provider that verifies a business phone number by a code asks of it (WhatsApp)."""

    code_digits: int
    code_validity: timedelta
    pin_digits: int
    display_name_problem: Callable[[str], str | None]
    """Why the provider would refuse a display name (for people), or None; only what can be
    checked without the provider's review."""


@runtime_checkable
class NumberConnector(Protocol):
    """A business phone number of a business account is checked, verified by a code sent by text
    or voice call, and registered for messaging (WhatsApp)."""

    rules: NumberRules

    async def number_ids(self, business_account_id: str, token: str) -> frozenset[str]:
        """The ids of every phone number of the business account this token can manage."""
        ...

    async def request_code(self, number_id: str, token: str, *, voice: bool) -> None:
        """Have a code sent by voice call (``voice``, landlines) or by text."""
        ...

    async def verify_code(self, number_id: str, token: str, code: str) -> bool:
        """Whether the provider accepted the code (False: a wrong code; other failures raise)."""
        ...

    async def register(self, number_id: str, token: str, pin: str) -> None:
        """Register the verified number for messaging with its two-step verification PIN."""
        ...


@dataclass(frozen=True)
class MessageTemplate:
    """A business account's message template as the provider knows it (WhatsApp): its review
    status, its category and how many parameter values a send gives."""

    id: str
    name: str
    language: str
    status: str
    category: str | None
    parameter_count: int
    quality_score: str | None = None
    rejected_reason: str | None = None


@runtime_checkable
class TemplateManager(Protocol):
    """A business account's message templates: submitted for the provider's review, listed with
    their status, deleted (WhatsApp)."""

    def template_problem(
        self, name: str, category: str, components: list[dict[str, Any]], parameter_format: str | None
    ) -> tuple[str, str] | None:
        """The field the provider would refuse at once and why, or None."""
        ...

    async def create_template(
        self,
        business_account_id: str,
        token: str,
        *,
        name: str,
        language: str,
        category: str,
        components: list[dict[str, Any]],
        parameter_format: str | None,
    ) -> MessageTemplate:
        """Submit the template; it comes back with the provider's status (pending review)."""
        ...

    async def templates(self, business_account_id: str, token: str) -> list[MessageTemplate]:
        """Every template of the business account, with its status."""
        ...

    async def delete_template(
        self, business_account_id: str, token: str, name: str, template_id: str | None
    ) -> None:
        """Delete every language of ``name``, or only the template ``template_id`` names."""
        ...


@runtime_checkable
class BusinessProfileManager(Protocol):
    """A business number's public profile: its texts and its picture (WhatsApp)."""

    picture_types: frozenset[str]

    def profile_problem(self, fields: Mapping[str, Any]) -> tuple[str, str] | None:
        """The field the provider would refuse and why, or None."""
        ...

    async def business_profile(self, number_id: str, token: str) -> dict[str, Any]:
        """The profile's fields as the provider gives them."""
        ...

    async def update_business_profile(
        self, number_id: str, token: str, fields: Mapping[str, Any], picture: tuple[bytes, str] | None
    ) -> None:
        """Set the given fields; ``picture`` (bytes, MIME type) is uploaded and set as well."""
        ...


@dataclass(frozen=True, slots=True)
class NumberThroughput:
    """How fast a business number may send, in the provider's words: its throughput level and
    whether another client shares the number (WhatsApp's coexistence with the Business app)."""

    level: str | None
    coexistence: bool


@runtime_checkable
class ThroughputCheck(Protocol):
    """A number connector that can read a number's throughput (WhatsApp's); raises ProviderError."""

    async def throughput(self, number_id: str, token: str) -> NumberThroughput: ...


@runtime_checkable
class PortfolioCheck(Protocol):
    """A number connector that can name the business portfolio owning a business account
    (WhatsApp's: its numbers share the portfolio's messaging limit); raises ProviderError."""

    async def business_portfolio(self, business_account_id: str, token: str) -> str | None: ...


@dataclass(frozen=True)
class SignedUpNumber:
    """A business number a self-service signup granted (WhatsApp's Embedded Signup), as the
    provider confirmed it with the business's own token: its account, its number, and when the
    token ends (None: it does not)."""

    business_account_id: str
    number_id: str
    display_phone_number: str | None
    verified_name: str | None
    token_expires_at: datetime | None
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class SignupRefusal:
    """Why the provider's answers do not confirm what the signup reported: ``reason`` is one of
    ``token_invalid``, ``scopes_missing``, ``account_not_granted``, ``number_not_in_account``;
    ``missing`` names the permissions not granted."""

    reason: str
    detail: str
    missing: tuple[str, ...] = ()


@runtime_checkable
class EmbeddedSignup(Protocol):
    """A number connector with a self-service signup in the provider's own window (WhatsApp's
    Embedded Signup): the window's code becomes the business's token, and what the window
    reported is checked against what that token can see; raises ProviderError."""

    async def exchange_signup_code(self, code: str) -> str:
        """The business token the signup's one-time code stands for."""
        ...

    async def check_signup(
        self, token: str, business_account_id: str, number_id: str
    ) -> SignedUpNumber | SignupRefusal:
        """Confirm the account and number with the provider, or say why not."""
        ...

    async def subscribe_app(self, business_account_id: str, token: str) -> None:
        """Subscribe this app to the business account's webhooks."""
        ...


Connector = PageConnector | AccountConnector | NumberConnector | LoginConnector
"""A provider's connect flow; a connector may also be a :class:`TokenCheck` and a
:class:`SubscriptionCheck`."""

ConnectorFactory = Callable[[httpx.AsyncClient, Any], "Connector | None"]
"""Builds a provider's connector from onboarding's settings (None: not configured there)."""


@dataclass(frozen=True)
class Charge:
    """What the provider bills for one delivered event or one reply: its category (a metric label
    from the provider's fixed set), whether it is billed, and the documented unit price."""

    category: str
    billed: bool
    usd: Decimal | None


@dataclass(frozen=True)
class DeliveryCharge:
    """The charge of one webhook delivery and the account it was delivered for."""

    provider: Provider
    account_id: str
    charge: Charge


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
    make_content_lookup: ContentLookupFactory | None = None
    """How the normalizer fetches what this provider's webhooks name by ids only."""
    """How this provider's replies are sent."""
    make_connector: ConnectorFactory | None = None
    """How this provider's accounts are connected (onboarding's connect flows)."""
    api_versions: Callable[[Any, date], Sequence[ApiVersionStatus]] | None = None
    """The API versions a service's settings configure for this provider, and their end of life."""
    delivery_charge: Callable[[Any], DeliveryCharge | None] | None = None
    """What the provider bills for one delivery to this plugin's webhook (None: not billed per event)."""
    reply_charge: Callable[[str, str], Charge | None] | None = None
    """What the provider bills for sending one reply of a kind with a text (None: not billed per send)."""
    account_url: Callable[[Provider, str, str | None], str | None] | None = None
    """Where a person opens the account on the provider's site, from its id and its public name
    (a username, a handle, a number); None where it has no such address or the name is unknown."""
    account_send_rate: Callable[[str | None, bool], int] | None = None
    """An account's sends per second from its throughput level and whether it is in coexistence
    with another client of the provider (WhatsApp's numbers); None: every account has the rules
    row's rate."""
