"""Parley's wire contracts: one pydantic model per event type, each with a versioned type name.

Rules for changing them (checked by tests/unit/test_schema_compatibility.py against the
committed JSON Schemas in docs/schemas/): add optional fields only; removing or retyping a
field, or adding a required one, needs a new type version (``...v2``) and a new model.
Consumers ignore fields they do not know, so producers may grow ahead of them.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from parley_events import topics
from parley_events.hours import BusinessHours


class Event(BaseModel):
    """Base of every event: frozen, tolerant of unknown fields, with a type and a topic."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_type: ClassVar[str]
    topic: ClassVar[topics.TopicSpec]

    def key(self) -> str:
        """The Kafka record key (partitioning and ordering unit)."""
        raise NotImplementedError

    def subject(self) -> str:
        """The CloudEvents subject; the record key by default."""
        return self.key()


class Provider(StrEnum):
    """The provider a channel or message belongs to."""

    MESSENGER = "messenger"
    INSTAGRAM = "instagram"
    WHATSAPP = "whatsapp"
    X = "x"


class Direction(StrEnum):
    """Who wrote a message: the customer (inbound) or the business itself (an echo)."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


class MessageKind(StrEnum):
    """Where a message was written: privately, or in public."""

    DIRECT = "direct"
    COMMENT = "comment"
    MENTION = "mention"
    POSTBACK = "postback"
    REACTION = "reaction"


class Queue(StrEnum):
    """A conversation's queue."""

    NEW = "new"
    PENDING = "pending"
    RESOLVED = "resolved"


# --- ingest ---------------------------------------------------------------------------


class WebhookReceived(Event):
    """A verified webhook delivery, archived byte for byte before the provider got its 200."""

    event_type: ClassVar[str] = "parley.webhook.received.v1"
    topic: ClassVar[topics.TopicSpec] = topics.WEBHOOKS_RAW

    delivery_id: str = Field(
        description="Deterministic id of the delivery: sha256 of provider and body.",
        examples=["3f1c0a7e5b..."],
    )
    provider: str = Field(description="Which webhook endpoint received it: meta or x.", examples=["meta"])
    received_at: datetime = Field(description="When ingest received it (UTC).")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Request headers that matter for replay; signatures are removed.",
        examples=[{"content-type": "application/json"}],
    )
    body_b64: str = Field(description="The raw request body, base64 encoded.")
    partition_key: str = Field(
        description="Record key: the first provider account id in the body, or the delivery id."
    )

    def key(self) -> str:
        return self.partition_key


class Author(BaseModel):
    """Who wrote a message, as the provider identifies them."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str = Field(
        description="Provider user id (PSID, IGSID, X user id; WhatsApp: the wa_id, or the "
        "business-scoped user id when the customer's phone number is withheld)."
    )
    name: str | None = Field(default=None, description="Display name or username when given.")
    phone: str | None = Field(
        default=None,
        description="WhatsApp: the customer's phone number (wa_id), when the provider shares it.",
        examples=["15550123456"],
    )
    user_id: str | None = Field(
        default=None,
        description="WhatsApp: the business-scoped user id (BSUID) the provider gives the customer.",
        examples=["US.13491208655302741918"],
    )
    username: str | None = Field(
        default=None, description="WhatsApp: the customer's username, when they adopted one."
    )


class Attachment(BaseModel):
    """A media or file attachment."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    type: str = Field(
        examples=["image", "video", "audio", "file", "sticker", "ig_post", "ig_reel", "story_mention"]
    )
    url: str | None = None
    media_id: str | None = Field(
        default=None, description="The provider's id of the media: a shared post's or reel's media id."
    )
    title: str | None = Field(default=None, description="A shared post's or reel's caption, when given.")
    sticker_id: str | None = Field(default=None, description="The provider's sticker id (type sticker).")


class Location(BaseModel):
    """A shared location."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None


class SharedContact(BaseModel):
    """A contact card the customer shared (WhatsApp)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str | None = None
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()


class Choice(BaseModel):
    """A button, quick reply, list row or postback the customer picked."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: str = Field(examples=["quick_reply", "postback", "button", "button_reply", "list_reply"])
    payload: str | None = Field(default=None, description="The developer-defined payload or id.")
    title: str | None = Field(default=None, description="What the customer saw and tapped.")


class Reaction(BaseModel):
    """A reaction to an earlier message."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    emoji: str | None = Field(default=None, description="Empty or None when removed.")
    action: str = Field(default="react", examples=["react", "unreact"])
    target_message_id: str | None = None


class StoryRef(BaseModel):
    """An Instagram story the message mentions or replies to."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: str = Field(examples=["mention", "reply"])
    story_id: str | None = None
    url: str | None = None


class Referral(BaseModel):
    """How the customer came to the conversation: an ad, or a link with a ``ref`` parameter."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    source: str | None = Field(default=None, examples=["ADS", "SHORTLINK"])
    type: str | None = Field(default=None, examples=["OPEN_THREAD"])
    ref: str | None = Field(default=None, description="The ref parameter of the link or the ad.")
    ad_id: str | None = Field(default=None, description="The ad the customer clicked.")
    ad_title: str | None = None


class IdentityChange(BaseModel):
    """The provider says a customer's identifiers changed (WhatsApp system messages)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: str = Field(examples=["user_changed_number", "user_changed_user_id"])
    phone: str | None = Field(default=None, description="The new phone number (wa_id), when shared.")
    user_id: str | None = Field(default=None, description="The new business-scoped user id.")
    previous_user_id: str | None = Field(default=None, description="The business-scoped user id before.")
    text: str | None = Field(default=None, description="The provider's sentence about the change.")


class Content(BaseModel):
    """What a message carries. Every field is optional; providers fill what they have."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    text: str | None = Field(default=None, examples=["Where is my order?"])
    attachments: tuple[Attachment, ...] = ()
    location: Location | None = None
    contacts: tuple[SharedContact, ...] = ()
    choice: Choice | None = None
    reaction: Reaction | None = None
    story: StoryRef | None = None
    reply_to: str | None = Field(
        default=None, description="Provider id of the message or comment this one answers."
    )
    deleted: bool = Field(default=False, description="The customer deleted the message.")
    referral: Referral | None = Field(
        default=None, description="The customer arrived through an ad or a link (alone or with a message)."
    )
    unsupported: bool = Field(
        default=False,
        description="The customer sent something the provider's API cannot show (Instagram "
        "is_unsupported): the agent sees that a message arrived and can ask for it again.",
    )
    encrypted: bool = Field(
        default=False,
        description=(
            "The message is end-to-end encrypted (X's XChat) and Parley cannot read it: no text or "
            "attachments, only that it arrived. Agents answer it in the provider's own app."
        ),
    )
    identity_change: IdentityChange | None = Field(
        default=None,
        description="The customer's phone number or business-scoped user id changed (WhatsApp): "
        "the conversation keeps its id, the new identifiers are aliases of the customer.",
    )
    unavailable: str | None = Field(
        default=None,
        description="The provider's webhook named the message by ids only and Parley could not "
        "fetch its text and author (Instagram mentions): the message is kept, marked with why, "
        "from a fixed set: no_credentials, reauth_required, permission_missing, not_found, "
        "rate_limited, provider_unavailable, not_configured. Null: the content is complete.",
        examples=["not_found"],
    )


class MessageReceived(Event):
    """One provider message, normalized: the unit every downstream service consumes."""

    event_type: ClassVar[str] = "parley.message.received.v1"
    topic: ClassVar[topics.TopicSpec] = topics.MESSAGES_INBOUND

    event_id: str = Field(
        description="Deterministic: derived from provider and provider message id.",
        examples=["msg_6a3e0c3e1c2f5b1d9a7e4f20"],
    )
    tenant_id: str
    channel_id: str
    provider: Provider
    account_id: str = Field(description="The business account: page id, IG id, phone id, X id.")
    conversation_id: str = Field(
        description="Deterministic id of the conversation (tenant, channel and thread key)."
    )
    conversation_key: str = Field(
        description="The thread: one per customer for DMs, one per post for comments.",
        examples=["dm:1234567890"],
    )
    direction: Direction
    author: Author
    content: Content
    provider_message_id: str = Field(examples=["m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM"])
    provider_timestamp: datetime = Field(description="The provider's own timestamp, UTC.")
    delivery_id: str = Field(description="The archived delivery this came from.")
    kind: MessageKind = Field(
        default=MessageKind.DIRECT, description="Private message, public comment, mention, ..."
    )
    standby: bool | None = Field(
        default=None,
        description="Conversation Routing: true when delivered while another app is the thread's "
        "active responder (Meta's standby list: Parley records it but may not answer until it has "
        "the thread); false when delivered to the active responder (Meta's messaging list); null "
        "when the provider's delivery says nothing about who answers.",
    )

    def key(self) -> str:
        return self.conversation_id


class MessageChangeEvent(Event):
    """Fields of an event about a message the customer wrote before (edited or removed)."""

    topic: ClassVar[topics.TopicSpec] = topics.MESSAGES_INBOUND

    event_id: str = Field(description="Deterministic: the change's provider, message, kind and time.")
    tenant_id: str
    channel_id: str
    provider: Provider
    account_id: str
    conversation_id: str
    conversation_key: str = Field(examples=["post:381920475610238_122109876543210987"])
    provider_message_id: str = Field(
        description="The provider's id of the message changed (a comment id, or a post id).",
        examples=["122109876543210987_990011223344556"],
    )
    message_event_id: str = Field(
        description="The event id the message got when it was received (message.received), so "
        "consumers find it without the provider's id."
    )
    author: Author | None = Field(default=None, description="Who changed it, when the provider says.")
    kind: MessageKind = MessageKind.COMMENT
    provider_timestamp: datetime = Field(description="When the provider says the change happened.")
    delivery_id: str

    def key(self) -> str:
        return self.conversation_id


class MessageEdited(MessageChangeEvent):
    """The customer edited a message (a Page comment or post): the new text replaces the old."""

    event_type: ClassVar[str] = "parley.message.edited.v1"

    text: str | None = Field(default=None, description="The text after the edit.")


class MessageDeleted(MessageChangeEvent):
    """The customer (or the provider) removed a message (a Page comment or post)."""

    event_type: ClassVar[str] = "parley.message.deleted.v1"


class ThreadControlAction(StrEnum):
    """What a provider's handover notification says happened to a thread's control."""

    PASS = "pass"  # noqa: S105 (an action, not a password)
    TAKE = "take"
    REQUEST = "request"


class HandoverReceived(Event):
    """A provider said which app answers a thread (Meta's ``messaging_handovers``), normalized.

    ``parley_active`` is what the notification means for Parley's app: Meta sends
    ``pass_thread_control`` to the app that gets the thread (true) and ``take_thread_control``
    to the app that loses it (false); ``request_thread_control`` (another app asks the owner for
    the thread) changes nothing yet (null).
    """

    event_type: ClassVar[str] = "parley.handover.received.v1"
    topic: ClassVar[topics.TopicSpec] = topics.MESSAGES_INBOUND

    event_id: str = Field(description="Deterministic: provider, account, thread, action and time.")
    tenant_id: str
    channel_id: str
    provider: Provider
    account_id: str
    conversation_id: str
    conversation_key: str = Field(examples=["dm:1234567890"])
    action: ThreadControlAction
    parley_active: bool | None = Field(
        description="Whether Parley's app is the active responder after this; null: unchanged."
    )
    new_owner_app_id: str | None = Field(default=None, description="The app that answers now.")
    previous_owner_app_id: str | None = Field(
        default=None, description="The app that answered before (null: the thread was idle)."
    )
    requested_owner_app_id: str | None = Field(
        default=None, description="For a request: the app asking for the thread."
    )
    metadata: str | None = Field(default=None, description="The caller's free text, as Meta passed it.")
    provider_timestamp: datetime
    delivery_id: str

    def key(self) -> str:
        return self.conversation_id


class CustomerAliasRecorded(Event):
    """A customer's other identifier belongs to the conversation key they were first seen under.

    The normalizer's own record (it reads the topic back as a read model): a WhatsApp customer
    seen with a phone number and a business-scoped user id, or whose number or user id changed,
    keeps one conversation whichever identifier a later message carries.
    """

    event_type: ClassVar[str] = "parley.customer.alias_recorded.v1"
    topic: ClassVar[topics.TopicSpec] = topics.CUSTOMER_ALIASES

    event_id: str = Field(description="Deterministic: channel and alias.")
    tenant_id: str
    channel_id: str
    provider: Provider
    alias_key: str = Field(
        description="The thread key the other identifier would give.", examples=["dm:US.13491208655302741918"]
    )
    conversation_key: str = Field(
        description="The thread key the customer's conversation has.", examples=["dm:15550123456"]
    )
    recorded_at: datetime = Field(description="The provider time of the message that showed the alias.")

    def key(self) -> str:
        return f"{self.channel_id}|{self.alias_key}"


class DeliveryStatus(StrEnum):
    """What the provider says happened to a message the business sent."""

    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


class ProviderError(BaseModel):
    """An error the provider reported, by code (never matched by text)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    code: int | None = None
    subcode: int | None = None
    title: str | None = None
    message: str | None = None


class Pricing(BaseModel):
    """What the provider says a message costs (WhatsApp statuses)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    billable: bool | None = Field(default=None, description="Whether the provider bills the message.")
    category: str | None = Field(
        default=None,
        description="The provider's pricing category.",
        examples=["marketing", "utility", "authentication", "service"],
    )
    pricing_model: str | None = Field(default=None, examples=["PMP"])
    type: str | None = Field(default=None, examples=["regular", "free_customer_service", "free_entry_point"])


class MessageStatusChanged(Event):
    """Delivery or read receipt for the business's messages (Messenger watermarks, WhatsApp)."""

    event_type: ClassVar[str] = "parley.message.status_changed.v1"
    topic: ClassVar[topics.TopicSpec] = topics.MESSAGES_INBOUND

    event_id: str = Field(description="Deterministic: provider, account, message ids, status, time.")
    tenant_id: str
    channel_id: str
    provider: Provider
    account_id: str
    conversation_id: str
    conversation_key: str
    status: DeliveryStatus
    provider_message_ids: tuple[str, ...] = Field(
        default=(), description="The messages concerned; empty for a watermark-only receipt."
    )
    watermark: datetime | None = Field(
        default=None, description="Messenger: every message sent before this time is covered."
    )
    errors: tuple[ProviderError, ...] = ()
    provider_timestamp: datetime
    delivery_id: str
    pricing: Pricing | None = Field(
        default=None, description="WhatsApp: the provider's pricing of the message (billable, category)."
    )

    def key(self) -> str:
        return self.conversation_id


class TemplateStatusChanged(Event):
    """Meta approved, rejected, paused or disabled a WhatsApp message template."""

    event_type: ClassVar[str] = "parley.template.status_changed.v1"
    topic: ClassVar[topics.TopicSpec] = topics.MESSAGES_INBOUND

    event_id: str
    tenant_id: str
    business_account_id: str = Field(description="The WhatsApp Business Account (WABA) id.")
    template_id: str | None = None
    template_name: str | None = None
    language: str | None = None
    status: str = Field(examples=["APPROVED", "REJECTED", "PAUSED", "DISABLED"])
    reason: str | None = None
    provider_timestamp: datetime
    delivery_id: str
    category: str | None = Field(
        default=None,
        description="The template's category as the update gives it.",
        examples=["UTILITY", "MARKETING", "AUTHENTICATION"],
    )

    def key(self) -> str:
        return self.business_account_id


class TemplateCategoryChanged(Event):
    """Meta changed a WhatsApp template's category (``template_category_update``)."""

    event_type: ClassVar[str] = "parley.template.category_changed.v1"
    topic: ClassVar[topics.TopicSpec] = topics.MESSAGES_INBOUND

    event_id: str
    tenant_id: str
    business_account_id: str = Field(description="The WhatsApp Business Account (WABA) id.")
    template_id: str | None = None
    template_name: str | None = None
    language: str | None = None
    previous_category: str | None = Field(default=None, examples=["UTILITY"])
    new_category: str = Field(examples=["MARKETING"])
    provider_timestamp: datetime
    delivery_id: str

    def key(self) -> str:
        return self.business_account_id


class TemplateQualityChanged(Event):
    """Meta rated a WhatsApp template's quality anew (``message_template_quality_update``)."""

    event_type: ClassVar[str] = "parley.template.quality_changed.v1"
    topic: ClassVar[topics.TopicSpec] = topics.MESSAGES_INBOUND

    event_id: str
    tenant_id: str
    business_account_id: str = Field(description="The WhatsApp Business Account (WABA) id.")
    template_id: str | None = None
    template_name: str | None = None
    language: str | None = None
    previous_quality_score: str | None = Field(default=None, examples=["GREEN"])
    new_quality_score: str = Field(examples=["GREEN", "YELLOW", "RED", "UNKNOWN"])
    provider_timestamp: datetime
    delivery_id: str

    def key(self) -> str:
        return self.business_account_id


class MessagingLimitChanged(Event):
    """The provider set a business's messaging limit (WhatsApp: per business portfolio)."""

    event_type: ClassVar[str] = "parley.messaging_limit.changed.v1"
    topic: ClassVar[topics.TopicSpec] = topics.MESSAGES_INBOUND

    event_id: str = Field(description="Deterministic: account, tier and time.")
    tenant_id: str
    business_account_id: str = Field(description="The WhatsApp Business Account the update came for.")
    tier: str = Field(description="The provider's name of the limit.", examples=["TIER_2K", "TIER_UNLIMITED"])
    messaging_limit: int | None = Field(
        description="Unique customers the business may reach outside the window per rolling 24 "
        "hours; null when unlimited.",
        examples=[2000],
    )
    provider_timestamp: datetime
    delivery_id: str

    def key(self) -> str:
        return self.business_account_id


class NumberThroughputChanged(Event):
    """The provider changed a business number's throughput level (WhatsApp's
    ``phone_number_quality_update`` with a throughput event)."""

    event_type: ClassVar[str] = "parley.number_throughput.changed.v1"
    topic: ClassVar[topics.TopicSpec] = topics.MESSAGES_INBOUND

    event_id: str = Field(description="Deterministic: account, number, event and time.")
    tenant_id: str
    business_account_id: str = Field(description="The WhatsApp Business Account of the number.")
    display_phone_number: str = Field(
        description="The number as the provider names it in this webhook (not its id).",
        examples=["15550783881"],
    )
    event: str = Field(description="The provider's name of the change.", examples=["THROUGHPUT_UPGRADE"])
    provider_timestamp: datetime
    delivery_id: str

    def key(self) -> str:
        return self.business_account_id


# --- onboarding ---------------------------------------------------------------------------


class ChannelRole(StrEnum):
    """A user's role on a channel, lowest first."""

    VIEWER = "viewer"
    CONTRIBUTOR = "contributor"
    SUPERVISOR = "supervisor"

    @property
    def rank(self) -> int:
        return ("viewer", "contributor", "supervisor").index(self.value) + 1


class ChannelStatus(StrEnum):
    """Where a channel is in its life."""

    ACTIVE = "active"
    PENDING = "pending"
    REAUTH_REQUIRED = "reauth_required"
    DISCONNECTED = "disconnected"


class ChannelSnapshot(Event):
    """The full current state of a channel, secrets excluded; compacted by channel id."""

    event_type: ClassVar[str] = "parley.channel.snapshot.v1"
    topic: ClassVar[topics.TopicSpec] = topics.CHANNELS

    channel_id: str
    tenant_id: str
    provider: Provider
    account_id: str = Field(
        description="The id webhooks are addressed to: page id, IG business account id, "
        "WhatsApp phone_number_id or X user id.",
        examples=["104512345678901"],
    )
    status: ChannelStatus
    display_name: str | None = Field(default=None, max_length=255)
    auto_ownership: bool = True
    business_account_id: str | None = Field(
        default=None,
        description="WhatsApp: the WABA id; Instagram: the linked Facebook Page id.",
    )
    business_portfolio_id: str | None = Field(
        default=None,
        max_length=64,
        description="Since 2026-11. WhatsApp: the business portfolio that owns the WABA (Graph's "
        "`owner_business_info.id`); all numbers of all WABAs of one portfolio share one messaging "
        "limit. Null: not known, the limit is counted per WABA.",
    )
    connect_path: str | None = Field(
        default=None,
        description="How an Instagram profile is connected: `page` (through its Facebook Page) or "
        "`instagram_login` (Instagram Login, no Page); none where a provider has one way.",
        examples=["page", "instagram_login"],
    )
    revision: int = Field(ge=1, description="Increases by one with every change.")
    auto_resolve_new_s: int | None = Field(
        default=30 * 24 * 3600,
        ge=1,
        description="Seconds of inactivity after which New conversations are resolved; null is off.",
    )
    auto_resolve_pending_s: int | None = Field(
        default=30 * 24 * 3600,
        ge=1,
        description="Seconds of inactivity after which Pending conversations are resolved; null is off.",
    )
    user_access: dict[str, ChannelRole] = Field(
        default_factory=dict, description="User id -> the role given to that user directly."
    )
    team_access: dict[str, ChannelRole] = Field(
        default_factory=dict, description="Team id -> the role every member of that team gets."
    )
    all_users_role: ChannelRole | None = Field(
        default=None, description="The role every user of the tenant gets (the 'All Users' toggle)."
    )
    all_teams_role: ChannelRole | None = Field(
        default=None, description="The role every member of any team gets (the 'All Teams' toggle)."
    )
    human_agent_tag: bool = Field(
        default=False, description="Messenger/Instagram: human agents may use the 7-day HUMAN_AGENT tag."
    )
    text_limit: int | None = Field(
        default=None, ge=1, description="A stricter per-channel text limit than the provider's."
    )
    throughput_level: str | None = Field(
        default=None,
        max_length=64,
        description="Since 2026-11. WhatsApp: the number's throughput level as Meta names it "
        "(`STANDARD`, 80 messages/s; `HIGH`, 1,000 after Meta's upgrade); null: not read, the "
        "provider's default applies.",
        examples=["STANDARD", "HIGH"],
    )
    coexistence: bool = Field(
        default=False,
        description="Since 2026-11. WhatsApp: the number is also used in the WhatsApp Business app "
        "(coexistence), which fixes its throughput at 20 messages/s.",
    )
    business_hours: BusinessHours | None = Field(
        default=None,
        description="Since 2026-11. The schedule in force: the channel's own, else its team's "
        "(docs/onboarding.md). Null: no schedule, always open (business time is wall time); a "
        "schedule with no intervals is never open.",
    )
    away_message: str | None = Field(
        default=None,
        max_length=4096,
        description="Since 2026-11. Sent once per conversation per closed period as an automated "
        "reply to a customer who writes outside business hours; null: none.",
    )
    mark_read_on_open: bool = Field(
        default=False,
        description="Since 2026-11. WhatsApp: when an agent who may reply opens a conversation "
        "(routing's `POST /v1/conversations/{id}/open`), its last customer message is marked read.",
    )

    def key(self) -> str:
        return self.channel_id


class TeamSnapshot(Event):
    """A team and its members; compacted by team id (a tombstone deletes it)."""

    event_type: ClassVar[str] = "parley.team.snapshot.v1"
    topic: ClassVar[topics.TopicSpec] = topics.TEAMS

    team_id: str
    tenant_id: str
    name: str
    members: tuple[str, ...] = Field(default=(), description="User ids; a user may be in several teams.")
    revision: int = Field(ge=1)
    deleted: bool = Field(default=False, description="The team was deleted; it grants nothing.")

    def key(self) -> str:
        return self.team_id


class ChannelLifecycleEvent(Event):
    """Fields every channel lifecycle event carries."""

    topic: ClassVar[topics.TopicSpec] = topics.CHANNEL_EVENTS

    event_id: str = Field(description="Deterministic: channel id and revision (or step).")
    channel_id: str
    tenant_id: str
    provider: Provider
    occurred_at: datetime
    actor_id: str | None = Field(default=None, description="The admin who acted, if a person did.")

    def key(self) -> str:
        return self.channel_id


class ChannelConnected(ChannelLifecycleEvent):
    """A channel was activated (OAuth, X authorization, WhatsApp verification or the ops CLI)."""

    event_type: ClassVar[str] = "parley.channel.connected.v1"

    account_id: str
    display_name: str | None = None


class ChannelSettingsChanged(ChannelLifecycleEvent):
    """Settings or access changed; ``changed`` names the fields (the snapshot has the values)."""

    event_type: ClassVar[str] = "parley.channel.settings_changed.v1"

    changed: tuple[str, ...]


class ChannelTokenExpiring(ChannelLifecycleEvent):
    """The channel's access token expires soon: an admin should reconnect it."""

    event_type: ClassVar[str] = "parley.channel.token_expiring.v1"

    expires_at: datetime


class ChannelReauthRequired(ChannelLifecycleEvent):
    """The provider rejected the token, or the connecting admin lost access: reconnect needed."""

    event_type: ClassVar[str] = "parley.channel.reauth_required.v1"

    reason: str = Field(examples=["token_expired", "password_changed", "app_removed", "page_access_lost"])
    provider_code: int | None = None
    provider_subcode: int | None = None


class ChannelReconnected(ChannelLifecycleEvent):
    """A reconnect restored the channel, settings and history intact."""

    event_type: ClassVar[str] = "parley.channel.reconnected.v1"


class ChannelDisconnected(ChannelLifecycleEvent):
    """An admin removed the channel."""

    event_type: ClassVar[str] = "parley.channel.disconnected.v1"


class ChannelSubscriptionRepaired(ChannelLifecycleEvent):
    """A periodic check found the channel's webhook subscriptions incomplete and restored them."""

    event_type: ClassVar[str] = "parley.channel.subscription_repaired.v1"

    restored: list[str] = Field(
        description="What was missing and is subscribed again: provider field or event type names.",
        examples=[["messages", "feed"], ["dm.received"]],
    )


class ChannelSubscriptionLost(ChannelLifecycleEvent):
    """The channel's webhook subscriptions are incomplete and could not be restored: until an
    admin acts (often a reconnect), the missing kinds of messages do not reach Parley."""

    event_type: ClassVar[str] = "parley.channel.subscription_lost.v1"

    missing: list[str] = Field(
        description="What is not subscribed: provider field or event type names.", examples=[["messages"]]
    )
    reason: str = Field(examples=["provider_refused", "token_invalid"])
    provider_code: int | None = None
    provider_subcode: int | None = None


class ChannelSendingRestricted(ChannelLifecycleEvent):
    """The provider refused a send because the account may not send for now (Meta's 10/1893063:
    the Page is temporarily restricted); replies fail with that reason until it lifts."""

    event_type: ClassVar[str] = "parley.channel.sending_restricted.v1"

    provider_code: int | None = None
    provider_subcode: int | None = None


class ChannelTokenRefreshRequested(ChannelLifecycleEvent):
    """A send found the channel's token past its end while the channel holds a refresh token
    (X's user tokens live two hours): onboarding, the one service that spends refresh tokens,
    refreshes it now, and policy tries the reply again on the new token."""

    event_type: ClassVar[str] = "parley.channel.token_refresh_requested.v1"

    reply_id: str | None = Field(default=None, description="The reply that found the token expired.")
    expired_at: datetime | None = Field(default=None, description="When the stored token ended.")


class ChannelHoursChanged(ChannelLifecycleEvent):
    """The channel's business hours opened or closed (at a schedule's boundary, or because a new
    schedule changed the state)."""

    event_type: ClassVar[str] = "parley.channel.hours_changed.v1"

    open: bool = Field(description="True: the channel is in business hours from ``occurred_at``.")
    next_change_at: datetime | None = Field(
        default=None, description="When it next closes (or opens); null: not within a year."
    )


class WhatsAppStepChanged(Event):
    """A WhatsApp onboarding moved to its next step."""

    event_type: ClassVar[str] = "parley.whatsapp.step_changed.v1"
    topic: ClassVar[topics.TopicSpec] = topics.CHANNEL_EVENTS

    event_id: str
    onboarding_id: str
    tenant_id: str
    step: str = Field(
        examples=[
            "details_submitted",
            "code_sent",
            "phone_verified",
            "embedded_signup_completed",
            "activated",
        ]
    )
    next_actor: str = Field(examples=["customer", "platform", "meta", "none"])
    expected_wait: str | None = Field(default=None, examples=["24-48 hours"])
    occurred_at: datetime
    channel_id: str | None = None

    def key(self) -> str:
        return self.channel_id or self.onboarding_id


class ChannelTemplateStatusChanged(ChannelLifecycleEvent):
    """A WhatsApp template of the channel was approved, rejected, paused or disabled."""

    event_type: ClassVar[str] = "parley.channel.template_status_changed.v1"

    template_name: str | None = None
    language: str | None = None
    status: str = Field(
        description="The provider's review status; DELETED when the template was deleted through Parley.",
        examples=["PENDING", "APPROVED", "REJECTED", "PAUSED", "DISABLED", "DELETED"],
    )
    reason: str | None = None
    template_id: str | None = None
    category: str | None = Field(
        default=None,
        description="The template's category, when known (AUTHENTICATION templates need a phone number).",
        examples=["UTILITY", "MARKETING", "AUTHENTICATION"],
    )
    parameter_count: int | None = Field(
        default=None,
        description="Values a send of the template gives (its header and body parameters), read from "
        "its components when it was created or listed through Parley; null when not known.",
        examples=[2],
    )
    quality: str | None = Field(
        default=None,
        description="The template's quality rating when the update gives it (a listing through "
        "Parley does; Meta's review webhooks do not): GREEN, YELLOW, RED or UNKNOWN.",
        examples=["GREEN"],
    )


class ChannelTemplateCategoryChanged(ChannelLifecycleEvent):
    """Meta changed the category of a WhatsApp template of the channel."""

    event_type: ClassVar[str] = "parley.channel.template_category_changed.v1"

    template_name: str | None = None
    language: str | None = None
    template_id: str | None = None
    category: str = Field(examples=["MARKETING"])
    previous_category: str | None = None


class ChannelTemplateQualityChanged(ChannelLifecycleEvent):
    """Meta rated a WhatsApp template of the channel anew (``message_template_quality_update``)."""

    event_type: ClassVar[str] = "parley.channel.template_quality_changed.v1"

    template_name: str | None = None
    language: str | None = None
    template_id: str | None = None
    quality: str = Field(
        description="Meta's rating: GREEN (high), YELLOW (medium), RED (low) or UNKNOWN (pending). "
        "Every one of them may still be sent; Meta pauses a template on sustained low quality, "
        "and that arrives as a status change (PAUSED).",
        examples=["GREEN", "YELLOW", "RED", "UNKNOWN"],
    )
    previous_quality: str | None = Field(default=None, examples=["GREEN"])


# --- policy ----------------------------------------------------------------------------


class SenderType(StrEnum):
    """Who sent a reply: a person, or an automation (bots never get the human-agent tag)."""

    HUMAN = "human"
    AUTOMATED = "automated"


class TemplateRef(BaseModel):
    """A WhatsApp template and the values of its parameters."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    language: str
    parameters: tuple[str, ...] = ()


class ReplyEvent(Event):
    """Fields every reply outcome carries."""

    topic: ClassVar[topics.TopicSpec] = topics.REPLIES

    event_id: str = Field(description="Deterministic: reply id and outcome.")
    reply_id: str
    conversation_id: str
    tenant_id: str
    channel_id: str
    sender_type: SenderType
    agent_id: str | None = None
    requested_by: str | None = Field(
        default=None,
        description="Who asked for the reply: the user id of the person or service principal whose "
        "token made the request (also for automated replies, which have no agent).",
    )
    occurred_at: datetime

    def key(self) -> str:
        return self.conversation_id


class ReplyRequested(ReplyEvent):
    """Someone asked to send a reply."""

    event_type: ClassVar[str] = "parley.reply.requested.v1"

    kind: str = Field(examples=["direct", "comment", "private_reply", "mention"])
    text: str | None = None
    template: TemplateRef | None = None
    tag: str | None = None


class ReplyApproved(ReplyEvent):
    """Policy approved the reply; delivery follows."""

    event_type: ClassVar[str] = "parley.reply.approved.v1"

    provider: Provider
    account_id: str
    recipient_id: str = Field(description="Who receives it: PSID, IGSID, wa_id, X user id or a comment id.")
    kind: str
    text: str | None = None
    template: TemplateRef | None = None
    messaging_type: str | None = Field(default=None, examples=["RESPONSE", "MESSAGE_TAG", "TEMPLATE"])
    tag: str | None = None
    connect_path: str | None = Field(
        default=None,
        description="The channel's way of connecting (its snapshot's): which API the sender uses, "
        "e.g. graph.instagram.com for `instagram_login`.",
        examples=["page", "instagram_login"],
    )
    template_quality: str | None = Field(
        default=None,
        description="A WhatsApp template's quality rating when policy approved it (GREEN, YELLOW, "
        "RED, UNKNOWN; null when not known or not a template): low quality does not stop a send.",
        examples=["GREEN", "RED"],
    )


class RejectionReason(BaseModel):
    """Why a reply may not be sent, as a stable code and a sentence."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    code: str = Field(examples=["WINDOW_CLOSED", "TOO_LONG", "ROLE_FORBIDDEN"])
    message: str


class ReplyRejected(ReplyEvent):
    """Policy refused the reply; the reasons say why."""

    event_type: ClassVar[str] = "parley.reply.rejected.v1"

    reasons: tuple[RejectionReason, ...]


class ReplyFailed(ReplyEvent):
    """The provider did not accept the reply (after retries for temporary errors)."""

    event_type: ClassVar[str] = "parley.reply.failed.v1"

    error: ProviderError
    error_kind: str = Field(examples=["rate_limited", "window_closed", "reauth_required", "retryable"])
    attempts: int
    reason: str | None = Field(
        default=None,
        description="Why delivery gave up: permanent_error (the provider refused the reply for good), "
        "or retry_budget_exhausted (transient errors outlasted the delivery retry budget).",
        examples=["permanent_error", "retry_budget_exhausted"],
    )


class ThreadControlCommandEvent(Event):
    """An agent took or released a thread through Parley (Conversation Routing), after the
    provider accepted the call: the audit record, and routing's cue to update the conversation."""

    topic: ClassVar[topics.TopicSpec] = topics.REPLIES

    event_id: str = Field(description="Unique per call.")
    conversation_id: str
    tenant_id: str
    channel_id: str
    provider: Provider
    actor_id: str = Field(description="The person (or service principal) who asked.")
    occurred_at: datetime

    def key(self) -> str:
        return self.conversation_id


class ThreadControlTaken(ThreadControlCommandEvent):
    """Parley's app took the thread from another app: Parley answers it now."""

    event_type: ClassVar[str] = "parley.thread_control.taken.v1"


class ThreadControlReleased(ThreadControlCommandEvent):
    """Parley's app released the thread: the provider routes the customer's next message."""

    event_type: ClassVar[str] = "parley.thread_control.released.v1"


class ReplyWindowEvent(Event):
    """A reply window changed; agent tools show countdowns from these."""

    topic: ClassVar[topics.TopicSpec] = topics.REPLY_WINDOWS

    event_id: str
    conversation_id: str
    tenant_id: str
    channel_id: str
    provider: Provider
    last_customer_message_at: datetime
    closes_at: datetime
    occurred_at: datetime

    def key(self) -> str:
        return self.conversation_id


class ReplyWindowOpened(ReplyWindowEvent):
    """A customer message opened (or restarted) the standard reply window."""

    event_type: ClassVar[str] = "parley.reply_window.opened.v1"


class ReplyWindowClosing(ReplyWindowEvent):
    """The standard window closes within the configured lead time."""

    event_type: ClassVar[str] = "parley.reply_window.closing.v1"


class ReplyWindowClosed(ReplyWindowEvent):
    """The standard window closed: only tags or templates now."""

    event_type: ClassVar[str] = "parley.reply_window.closed.v1"


class HumanAgentWindowClosed(ReplyWindowEvent):
    """The 7-day human agent window closed too."""

    event_type: ClassVar[str] = "parley.human_agent_window.closed.v1"


class ReplySent(Event):
    """The provider accepted an outbound reply."""

    event_type: ClassVar[str] = "parley.reply.sent.v1"
    topic: ClassVar[topics.TopicSpec] = topics.REPLIES

    reply_id: str = Field(description="Policy's id of the reply (the decision id).")
    conversation_id: str
    tenant_id: str
    channel_id: str
    sender_type: SenderType
    agent_id: str | None = Field(default=None, description="The user who wrote it, for human replies.")
    requested_by: str | None = Field(
        default=None,
        description="Who asked for the reply: the user id of the person or service principal whose "
        "token made the request.",
    )
    provider_message_id: str
    text: str | None = None
    sent_at: datetime

    def key(self) -> str:
        return self.conversation_id


# --- routing ---------------------------------------------------------------------------


class ConversationEvent(Event):
    """Fields every conversation event carries, in order of the per-conversation sequence."""

    topic: ClassVar[topics.TopicSpec] = topics.CONVERSATIONS

    event_id: str = Field(description="Deterministic: conversation id and sequence number.")
    conversation_id: str
    tenant_id: str
    channel_id: str
    sequence: int = Field(
        ge=1, description="Increases by exactly one per conversation: order and detect gaps."
    )
    occurred_at: datetime

    def key(self) -> str:
        return self.conversation_id


class ConversationCreated(ConversationEvent):
    """A customer's first message opened a conversation."""

    event_type: ClassVar[str] = "parley.conversation.created.v1"

    provider: Provider
    conversation_key: str
    queue: Queue = Field(description="Always new for a fresh conversation.")


class ConversationMessageAdded(ConversationEvent):
    """A message (inbound or an outbound echo) joined the conversation."""

    event_type: ClassVar[str] = "parley.conversation.message_added.v1"

    message_event_id: str = Field(description="The MessageReceived event this came from.")
    direction: Direction
    author: Author
    content: Content
    provider_message_id: str
    provider_timestamp: datetime
    standby: bool = Field(
        default=False,
        description="Received while another app was the thread's active responder (history only).",
    )


class ConversationMessageEdited(ConversationEvent):
    """A message of the conversation was edited by its author: the text shown is the new one; the
    message keeps its id (``message_event_id``, the one its ``message_added`` carried)."""

    event_type: ClassVar[str] = "parley.conversation.message_edited.v1"

    message_event_id: str = Field(description="The message changed: its message_added's message_event_id.")
    provider_message_id: str
    text: str | None = Field(default=None, description="The text after the edit.")
    provider_timestamp: datetime


class ConversationMessageDeleted(ConversationEvent):
    """A message of the conversation was removed at the provider: it stays in the history,
    marked deleted (agents see that something was said and removed)."""

    event_type: ClassVar[str] = "parley.conversation.message_deleted.v1"

    message_event_id: str = Field(description="The message removed: its message_added's message_event_id.")
    provider_message_id: str
    provider_timestamp: datetime


class StatusChangeReason(StrEnum):
    """Why a conversation changed queue."""

    AGENT = "agent"
    AUTO_RESOLVE = "auto_resolve"
    REOPENED = "reopened"


class ConversationStatusChanged(ConversationEvent):
    """The conversation moved between New, Pending and Resolved."""

    event_type: ClassVar[str] = "parley.conversation.status_changed.v1"

    from_queue: Queue
    to_queue: Queue
    reason: StatusChangeReason
    actor_id: str | None = Field(default=None, description="The agent, for reason agent.")


class OwnerChangeReason(StrEnum):
    """Why ownership changed."""

    AUTO_OWNERSHIP = "auto_ownership"
    ASSIGNED = "assigned"
    UNASSIGNED = "unassigned"
    RESOLVED = "resolved"


class ConversationOwnerAssigned(ConversationEvent):
    """The conversation has a new owner."""

    event_type: ClassVar[str] = "parley.conversation.owner_assigned.v1"

    owner_id: str
    previous_owner_id: str | None = None
    reason: OwnerChangeReason
    actor_id: str | None = None


class ConversationOwnerCleared(ConversationEvent):
    """The conversation has no owner any more."""

    event_type: ClassVar[str] = "parley.conversation.owner_cleared.v1"

    previous_owner_id: str
    reason: OwnerChangeReason
    actor_id: str | None = None


class ConversationLabelsChanged(ConversationEvent):
    """Tags or topics were added or removed; carries the full set after the change."""

    event_type: ClassVar[str] = "parley.conversation.labels_changed.v1"

    kind: str = Field(examples=["tags", "topics"])
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    current: tuple[str, ...] = ()
    actor_id: str | None = None


class ConversationNoteAdded(ConversationEvent):
    """An agent added an internal note (never sent to the customer)."""

    event_type: ClassVar[str] = "parley.conversation.note_added.v1"

    note_id: str
    text: str
    author_id: str


class ThreadControlReason(StrEnum):
    """Why routing changed its view of who answers a thread."""

    PASSED = "passed"
    """The provider passed the thread to Parley's app."""
    TAKEN = "taken"
    """Another app took the thread from Parley's app."""
    STANDBY_MESSAGE = "standby_message"
    """A message arrived on the standby channel: another app answers the thread."""
    MESSAGE = "message"
    """A customer message arrived for Parley's app itself: Parley answers the thread."""
    AGENT_TAKE = "agent_take"
    """An agent took the thread through Parley's API."""
    AGENT_RELEASE = "agent_release"
    """An agent released the thread through Parley's API."""


class ConversationThreadControlChanged(ConversationEvent):
    """Parley became, or stopped being, the thread's active responder (Conversation Routing)."""

    event_type: ClassVar[str] = "parley.conversation.thread_control_changed.v1"

    parley_active: bool = Field(description="Whether Parley's app may answer the thread now.")
    reason: ThreadControlReason
    active_app_id: str | None = Field(
        default=None, description="The provider's id of the app that answers now, when it says."
    )
    actor_id: str | None = Field(default=None, description="The agent, for agent_take and agent_release.")


class ConversationAwayMessageDue(ConversationEvent):
    """A customer wrote while the channel was out of business hours, and the conversation has had
    no away message in this closed period: policy sends the channel's away message as an
    automated reply (its windows, lengths and rates apply; it may refuse it)."""

    event_type: ClassVar[str] = "parley.conversation.away_message_due.v1"

    message_event_id: str = Field(description="The customer message that found the channel closed.")
    text: str = Field(max_length=4096, description="The channel's away message.")
    closed_since: datetime | None = Field(
        default=None, description="When the closed period began (null: the schedule never opens)."
    )
    opens_at: datetime | None = Field(
        default=None, description="When the channel opens next (null: not within a year)."
    )


class ConversationReadRequested(Event):
    """An agent who may reply opened a conversation on a channel that marks messages read on open:
    the conversation's last customer message is to be marked read with the provider (policy, which
    knows that message and holds the token, sends the receipt, at most once per message). Not part
    of the conversation's sequence."""

    event_type: ClassVar[str] = "parley.conversation.read_requested.v1"
    topic: ClassVar[topics.TopicSpec] = topics.CONVERSATIONS

    event_id: str = Field(
        description="Deterministic: conversation id and the sequence the agent saw (the same open "
        "of the same state is the same request)."
    )
    conversation_id: str
    tenant_id: str
    channel_id: str
    provider: Provider
    requested_by: str = Field(description="The agent who opened the conversation.")
    occurred_at: datetime

    def key(self) -> str:
        return self.conversation_id


EVENT_TYPES: tuple[type[Event], ...] = (
    WebhookReceived,
    MessageReceived,
    MessageEdited,
    MessageDeleted,
    CustomerAliasRecorded,
    MessageStatusChanged,
    HandoverReceived,
    TemplateStatusChanged,
    TemplateCategoryChanged,
    TemplateQualityChanged,
    MessagingLimitChanged,
    NumberThroughputChanged,
    ChannelSnapshot,
    ChannelConnected,
    ChannelSettingsChanged,
    ChannelTokenExpiring,
    ChannelReauthRequired,
    ChannelReconnected,
    ChannelDisconnected,
    ChannelSubscriptionRepaired,
    ChannelSubscriptionLost,
    ChannelSendingRestricted,
    ChannelTokenRefreshRequested,
    ChannelHoursChanged,
    ChannelTemplateStatusChanged,
    ChannelTemplateCategoryChanged,
    ChannelTemplateQualityChanged,
    WhatsAppStepChanged,
    TeamSnapshot,
    ReplyRequested,
    ReplyApproved,
    ReplyRejected,
    ReplySent,
    ReplyFailed,
    ThreadControlTaken,
    ThreadControlReleased,
    ReplyWindowOpened,
    ReplyWindowClosing,
    ReplyWindowClosed,
    HumanAgentWindowClosed,
    ConversationCreated,
    ConversationMessageAdded,
    ConversationMessageEdited,
    ConversationMessageDeleted,
    ConversationStatusChanged,
    ConversationOwnerAssigned,
    ConversationOwnerCleared,
    ConversationLabelsChanged,
    ConversationNoteAdded,
    ConversationThreadControlChanged,
    ConversationAwayMessageDue,
    ConversationReadRequested,
)


_MODELS: dict[str, type[Event]] = {model.event_type: model for model in EVENT_TYPES}


def model_for(event_type: str) -> type[Event]:
    """The model of a versioned event type name; KeyError if Parley does not know it."""
    return _MODELS[event_type]
