"""The sandbox's state: what the imitated providers know (users, Pages, numbers, tokens,
faults, everything sent) and the limits they enforce, which come from Parley's provider packages."""

from __future__ import annotations

import re
import secrets
import string
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from parley_providers.meta.errors import APP_REMOVED, PASSWORD_CHANGED, TOKEN_EXPIRED, TOKEN_INVALID
from parley_providers.meta.rules import SEND_API_TAGS
from parley_providers.rules import DAYS_7, HOURS_24
from parley_providers.whatsapp.inbound import MEDIA_TYPES

SHORT_LIVED_S = 5400  # Login tokens live one to two hours


LONG_LIVED_S = 60 * 86400


CODE_TTL_S = 600
SIGNUP_CODE_TTL_S = 30  # an Embedded Signup code is short-lived: traded at once by the server


X_ACCESS_S = 7200


# the providers' limits are Parley's provider packages' (one place for each fact)
WINDOW_S = HOURS_24.total_seconds()


HUMAN_AGENT_WINDOW_S = DAYS_7.total_seconds()


DEFAULT_META_PERMISSIONS = (
    "public_profile",
    "pages_show_list",
    "pages_messaging",
    "pages_manage_metadata",
    "pages_read_engagement",
    "pages_manage_engagement",
    "instagram_basic",
    "instagram_manage_messages",
    "instagram_manage_comments",
    "business_management",
)


DEFAULT_PAGE_TASKS = ("ADVERTISE", "ANALYZE", "CREATE_CONTENT", "MESSAGING", "MODERATE", "MANAGE")


DEFAULT_X_SCOPES = ("tweet.read", "tweet.write", "users.read", "dm.read", "dm.write", "offline.access")


PAGE_WEBHOOK_FIELDS = frozenset(
    {
        "messages",
        "messaging_postbacks",
        "messaging_optins",
        "messaging_referrals",
        "messaging_handovers",
        "messaging_policy_enforcement",
        "message_deliveries",
        "message_reads",
        "message_echoes",
        "message_reactions",
        "message_edits",
        "messaging_seen",
        "standby",
        "feed",
        "mention",
        "inbox_labels",
    }
)


MESSAGE_TAGS = SEND_API_TAGS


WHATSAPP_TYPES = frozenset(
    {
        "text",
        "template",
        "image",
        "audio",
        "video",
        "document",
        "sticker",
        "interactive",
        "reaction",
        "location",
        "contacts",
    }
)


WHATSAPP_MEDIA = MEDIA_TYPES


_GRAPH_VERSION = re.compile(r"^v\d+\.\d+$")


_ALNUM = string.ascii_letters + string.digits


_REVOKED_MESSAGES = {
    APP_REMOVED: "Error validating access token: The user has not authorized application {app}.",
    PASSWORD_CHANGED: (
        "Error validating access token: The session has been invalidated because the user changed "
        "their password or Facebook has changed the session for security reasons."
    ),
    TOKEN_EXPIRED: "Error validating access token: Session has expired.",
    TOKEN_INVALID: "Error validating access token: The access token is invalid.",
}


_UNKNOWN_OBJECT = (
    "Unsupported post request. Object with ID '{id}' does not exist, cannot be loaded due to missing "
    "permissions, or does not support this operation."
)


Provider = Literal["graph", "instagram", "x"]


@dataclass
class MetaPage:
    id: str
    name: str
    tasks: list[str]
    instagram_id: str | None = None
    instagram_username: str | None = None
    subscribed_fields: list[str] = field(default_factory=list)
    enforce_window: bool = False  # refuse sends outside the 24-hour window (code 10/2018278)
    sending_restricted: bool = False  # Meta holds the Page's sends for a while (code 10/1893063)
    # Conversation Routing: customer id -> the app that answers the thread (absent: idle)
    thread_owners: dict[str, str] = field(default_factory=dict)


@dataclass
class MetaUser:
    id: str
    name: str
    granted: list[str]
    declined: list[str]
    page_ids: list[str]
    """The Pages the person manages."""
    granted_page_ids: list[str] | None = None
    """The Pages the person chose for the app in the Login dialog (None: not asked yet, every
    Page they manage, as the admin API's users have)."""
    granted_instagram_ids: list[str] | None = None
    """The Instagram accounts chosen in the dialog (None: every one linked to a granted Page)."""

    def app_page_ids(self) -> list[str]:
        """The Pages ``/me/accounts`` lists for the app."""
        if self.granted_page_ids is None:
            return list(self.page_ids)
        return [p for p in self.page_ids if p in self.granted_page_ids]


@dataclass
class InstagramAccount:
    """An Instagram professional account that logs in with Business Login for Instagram."""

    id: str
    username: str
    granted: list[str]
    subscribed_fields: list[str] = field(default_factory=list)


@dataclass
class MentionedObject:
    """A media whose caption, or a comment whose text, @mentions an Instagram professional account
    (what Graph's ``mentioned_media`` and ``mentioned_comment`` answer about it)."""

    id: str
    account_id: str
    """The account mentioned."""
    kind: Literal["media", "comment"]
    username: str
    """Its author's username."""
    text: str | None = None
    """The caption (media) or the comment's text."""
    timestamp: str = "2026-11-30T09:00:00+0000"
    media_type: str = "IMAGE"
    permalink: str | None = None
    media_id: str | None = None
    """For a comment: the media it is on."""


@dataclass
class WhatsAppNumber:
    id: str
    display_phone_number: str
    waba_id: str
    token: str
    verified_name: str = "Parley sandbox business"
    verified: bool = False
    registered: bool = False
    pin: str | None = None
    last_code: str | None = None
    code_used: bool = False
    enforce_window: bool = False  # refuse non-template sends outside the window (131047)
    throughput_level: str = "STANDARD"  # HIGH once Meta upgraded the number (1,000 messages/s)
    on_biz_app: bool = False  # coexistence with the WhatsApp Business app (20 messages/s)
    escalation_partner: bool = True  # this app may take threads (Conversation Routing)
    thread_owners: dict[str, str] = field(default_factory=dict)  # customer -> app answering


@dataclass
class WhatsAppTemplate:
    """A message template of a WhatsApp Business Account: PENDING until a test reviews it."""

    id: str
    waba_id: str
    name: str
    language: str
    category: str
    components: list[dict[str, Any]]
    parameter_format: str = "POSITIONAL"
    status: str = "PENDING"
    rejected_reason: str = "NONE"
    quality_score: str = "UNKNOWN"

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "language": self.language,
            "status": self.status,
            "category": self.category,
            "components": self.components,
            "parameter_format": self.parameter_format,
            "quality_score": {"score": self.quality_score},
            "rejected_reason": self.rejected_reason,
        }


@dataclass
class Upload:
    """A Resumable Upload API session, and the handle once its bytes arrived."""

    id: str
    file_name: str
    file_length: int
    file_type: str
    data: bytes = b""
    handle: str | None = None


@dataclass
class XAccount:
    id: str
    username: str
    name: str
    scopes: list[str]
    accepts_dms: bool = True


@dataclass
class XActivitySubscription:
    """An X Activity API subscription: an event type, its filter, the webhook it delivers to."""

    subscription_id: str
    event_type: str
    filter: dict[str, str]
    created_at: str
    webhook_id: str | None = None
    tag: str | None = None

    def view(self) -> dict[str, Any]:
        """As X answers it (docs.x.com/x-api/activity/quickstart)."""
        body: dict[str, Any] = {
            "subscription_id": self.subscription_id,
            "event_type": self.event_type,
            "filter": dict(self.filter),
            "created_at": self.created_at,
            "updated_at": self.created_at,
        }
        if self.tag is not None:
            body["tag"] = self.tag
        if self.webhook_id is not None:
            body["webhook_id"] = self.webhook_id
        return body


@dataclass
class XCrcCheck:
    """One CRC GET the sandbox sent to a webhook, as X re-checks them, and how it was answered."""

    webhook_id: str
    url: str
    at: float
    status: int | None
    valid: bool
    elapsed_s: float
    reason: str


@dataclass
class XDelivery:
    """One webhook POST the sandbox made, in Account Activity (``aaa``) or X Activity (``xaa``) form."""

    api: Literal["aaa", "xaa"]
    webhook_id: str
    url: str
    for_user_id: str
    event_type: str
    status: int | None
    at: float
    subscription_id: str | None = None


@dataclass
class AuthCode:
    code: str
    provider: Literal["meta", "instagram", "x"]
    user_id: str
    expires_at: float
    redirect_uri: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str = "S256"
    used: bool = False
    signup_token: str | None = None  # WhatsApp Embedded Signup: the business token it stands for


@dataclass
class Token:
    """A Meta user/page/system token or an X access token."""

    value: str
    provider: Literal["meta", "x"]
    kind: Literal["user", "page", "system", "x", "instagram"]
    user_id: str | None
    issued_at: float
    expires_at: float | None
    scopes: list[str]
    long_lived: bool = False
    page_id: str | None = None
    waba_ids: list[str] = field(default_factory=list)
    parent: str | None = None  # a page token's user token: revoking that revokes this
    revoked_subcode: int | None = None  # Meta: the 190 subcode calls now fail with
    revoked: bool = False  # X


@dataclass
class XRefreshToken:
    value: str
    user_id: str
    scopes: list[str]
    used: bool = False


@dataclass
class Fault:
    """Answer the next ``times`` matching provider calls with this error."""

    id: str
    path_contains: str
    status: int
    code: int | None = None
    subcode: int | None = None
    message: str | None = None
    times: int = 1
    method: str | None = None
    retry_after_s: float | None = None
    plain: bool = False  # a bare text body (a proxy's error page) instead of the provider's JSON

    def matches(self, method: str, path: str) -> bool:
        return (
            self.times > 0
            and self.path_contains in path
            and (self.method is None or self.method.upper() == method.upper())
        )


@dataclass
class SentRequest:
    """One call to a send endpoint, accepted or not (``status``), without its credentials."""

    provider: Literal["meta", "whatsapp", "x"]
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]
    status: int
    result_id: str | None
    at: float
    version: str | None = None
    """The Graph API version the call named in its path (None: an X call)."""


@dataclass
class Call:
    """Any provider call (sends included): what tests use to check what was asked."""

    method: str
    path: str
    status: int
    at: float
    version: str | None = None
    """The Graph API version the call named in its path (None: an X call)."""


_CREDENTIAL_FIELDS = (
    "meta_app_id",
    "meta_app_secret",
    "instagram_app_id",
    "instagram_app_secret",
    "x_client_id",
    "x_client_secret",
    "x_consumer_secret",
    "x_bearer_token",
    "x_crc_timeout_s",
    "app_name",
    "whatsapp_signup_config_id",
)


@dataclass
class SandboxState:
    """Everything the sandbox knows; tests may read and change it directly."""

    # the development values of scripts/devenv.py, so a laptop stack works without flags
    meta_app_id: str = "dev-meta-app"
    meta_app_secret: str = "dev-meta-app-secret"  # noqa: S105 - a fake credential of the fake provider
    # the Instagram app of Business Login for Instagram (its own id and secret, not the Meta app's)
    instagram_app_id: str = "dev-instagram-app"
    instagram_app_secret: str = "dev-instagram-app-secret"  # noqa: S105 - a fake credential of the fake provider
    x_client_id: str = "dev-x-client"
    x_client_secret: str = "dev-x-client-secret"  # noqa: S105 - a fake credential of the fake provider
    # signs X's webhook deliveries and CRC answers (ingest's PARLEY_X_CONSUMER_SECRETS)
    x_consumer_secret: str = "dev-x-consumer-secret"  # noqa: S105 - a fake credential of the fake provider
    # the app-only Bearer token X's developer portal gives (X Activity API listing and deleting)
    x_bearer_token: str = "dev-x-bearer-token"  # noqa: S105 - a fake credential of the fake provider
    # how long the sandbox waits for a CRC answer before calling the check failed
    x_crc_timeout_s: float = 3.0
    app_name: str = "Parley sandbox"
    # the app's Facebook Login for Business configuration made from the WhatsApp Embedded Signup
    # template (PARLEY_WHATSAPP_EMBEDDED_SIGNUP_CONFIG_ID): the Login dialog opened with it is the
    # signup window (login.py)
    whatsapp_signup_config_id: str = "dev-whatsapp-signup"
    clock_offset_s: float = 0.0
    meta_users: dict[str, MetaUser] = field(default_factory=dict)
    pages: dict[str, MetaPage] = field(default_factory=dict)
    instagram_accounts: dict[str, InstagramAccount] = field(default_factory=dict)
    codes: dict[str, AuthCode] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    page_tokens: dict[tuple[str, str], str] = field(default_factory=dict)
    whatsapp_numbers: dict[str, WhatsAppNumber] = field(default_factory=dict)
    whatsapp_templates: dict[str, WhatsAppTemplate] = field(default_factory=dict)  # by template id
    # the business portfolio owning each WhatsApp Business Account (unset: one of its own)
    waba_owners: dict[str, str] = field(default_factory=dict)
    whatsapp_profiles: dict[str, dict[str, Any]] = field(default_factory=dict)  # by phone number id
    # apps subscribed to each WhatsApp Business Account's webhooks (POST /{waba-id}/subscribed_apps)
    waba_subscriptions: dict[str, set[str]] = field(default_factory=dict)
    uploads: dict[str, Upload] = field(default_factory=dict)  # by session id ("upload:...")
    upload_handles: dict[str, Upload] = field(default_factory=dict)  # by handle
    # the Meta app's webhook callback URL (App Dashboard > Webhooks): WhatsApp Business Account
    # deliveries the sandbox makes (template reviews) go there, signed with the app secret
    meta_webhook_url: str | None = None
    x_users: dict[str, XAccount] = field(default_factory=dict)
    x_refresh_tokens: dict[str, XRefreshToken] = field(default_factory=dict)
    x_webhooks: dict[str, list[str]] = field(default_factory=dict)  # webhook id -> subscribed users
    x_webhook_urls: dict[str, str] = field(default_factory=dict)  # webhook id -> its URL
    x_webhook_valid: dict[str, bool] = field(default_factory=dict)  # after its last CRC check
    x_activity: dict[str, XActivitySubscription] = field(default_factory=dict)  # by subscription id
    x_crc_checks: list[XCrcCheck] = field(default_factory=list)
    x_deliveries: list[XDelivery] = field(default_factory=list)
    x_posts: list[dict[str, str]] = field(default_factory=list)
    private_replies: set[str] = field(default_factory=set)
    mentioned: dict[str, MentionedObject] = field(default_factory=dict)  # by media or comment id
    windows: dict[tuple[str, str], float] = field(default_factory=dict)  # (account, customer) -> last in
    sent: list[SentRequest] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    id_counter: int = 0

    def waba_owner(self, waba_id: str) -> str:
        """The business portfolio owning a WhatsApp Business Account: the one set, else the
        account's own (``business-{waba_id}``)."""
        return self.waba_owners.get(waba_id) or f"business-{waba_id}"

    def now(self) -> float:
        return time.time() + self.clock_offset_s

    def advance(self, seconds: float) -> None:
        self.clock_offset_s += seconds

    def next_id(self) -> str:
        """A unique, snowflake-sized numeric id."""
        self.id_counter += 1
        return str(1_850_000_000_000_000_000 + self.id_counter * 4096 + secrets.randbelow(4096))

    def reset(self) -> None:
        """Forget everything but the app's configuration: credentials and registered webhooks.

        The webhooks stay registered (with their URLs), without subscriptions.
        """
        fresh = SandboxState(**{name: getattr(self, name) for name in _CREDENTIAL_FIELDS})
        fresh.x_webhooks = {webhook_id: [] for webhook_id in self.x_webhooks}
        fresh.x_webhook_urls = dict(self.x_webhook_urls)
        fresh.meta_webhook_url = self.meta_webhook_url
        self.__dict__.update(fresh.__dict__)

    def take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, path):
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def open_window(self, account_id: str, customer_id: str, ago_s: float = 0.0) -> None:
        """Record an inbound message from ``customer_id`` (a PSID/IGSID or wa_id)."""
        self.windows[(account_id, customer_id)] = self.now() - ago_s
