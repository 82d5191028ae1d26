"""The topic catalog: every Kafka topic Parley owns, its key, sizing and who reads it.

Public topics are a contract with outside consumers: their names never change within a
major version. A deployment can prefix every name with a namespace (``PARLEY_TOPIC_NAMESPACE``)
to share one cluster between environments or isolate a test run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DAY_MS = 24 * 60 * 60 * 1000

Cleanup = Literal["delete", "compact"]


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic: its name, what its records are keyed by, sizing and ownership."""

    name: str
    key: str
    partitions: int
    cleanup: Cleanup
    retention_ms: int | None
    owner: str
    consumers: tuple[str, ...]
    public: bool
    description: str
    has_dlq: bool = False
    extra_config: dict[str, str] = field(default_factory=dict)
    co_publishers: tuple[str, ...] = ()
    """Other Parley processes that publish some of its event types (the owner keeps the rest)."""

    @property
    def publishers(self) -> tuple[str, ...]:
        """Every Parley process that publishes on it: the owner first."""
        return (self.owner, *self.co_publishers)

    def qualified(self, namespace: str = "") -> str:
        """The topic's name inside a namespace ("" means the plain public name)."""
        return qualify(self.name, namespace)

    def dlq(self) -> TopicSpec:
        """The dead-letter topic for records of this topic that could not be processed."""
        return TopicSpec(
            name=dlq_name(self.name),
            key=self.key,
            partitions=self.partitions,
            cleanup="delete",
            retention_ms=30 * DAY_MS,
            owner=", ".join(self.consumers),
            consumers=("operators (parley dlq)",),
            public=False,
            description=f"Records of {self.name} that failed processing after all retries.",
        )

    def kafka_config(self) -> dict[str, str]:
        """Topic-level configuration to create it with."""
        config = {"cleanup.policy": self.cleanup, **self.extra_config}
        if self.retention_ms is not None:
            config["retention.ms"] = str(self.retention_ms)
        return config


def qualify(name: str, namespace: str = "") -> str:
    """Prefix a topic name with a namespace, if there is one."""
    return f"{namespace}.{name}" if namespace else name


def dlq_name(topic: str) -> str:
    """The DLQ of a topic is ``<topic>.dlq``."""
    return f"{topic}.dlq"


WEBHOOKS_RAW = TopicSpec(
    name="parley.webhooks.raw.v1",
    key="provider account id (page, IG account, phone_number_id, X user id) or delivery id",
    partitions=12,
    cleanup="delete",
    retention_ms=14 * DAY_MS,
    owner="ingest",
    consumers=("normalizer",),
    public=True,
    description="Every verified webhook delivery, archived byte for byte before the 200.",
    has_dlq=True,
)
MESSAGES_INBOUND = TopicSpec(
    name="parley.messages.inbound.v1",
    key="conversation id",
    partitions=12,
    cleanup="delete",
    retention_ms=7 * DAY_MS,
    owner="normalizer",
    consumers=("routing", "policy", "onboarding", "reports"),
    public=True,
    description="Normalized messages and status events, one record per provider event.",
    has_dlq=True,
)
CONVERSATIONS = TopicSpec(
    name="parley.conversations.v1",
    key="conversation id",
    partitions=12,
    cleanup="delete",
    retention_ms=7 * DAY_MS,
    owner="routing",
    consumers=("policy", "reports", "agent tools", "analytics"),
    public=True,
    description="Conversation lifecycle: created, message added, status and owner changes.",
    has_dlq=True,
)
CHANNELS = TopicSpec(
    name="parley.channels.v1",
    key="channel id",
    partitions=3,
    cleanup="compact",
    retention_ms=None,
    owner="onboarding",
    consumers=("normalizer", "routing", "policy", "reports"),
    public=True,
    description="Full channel snapshots (no secrets), compacted: the latest per channel id.",
    has_dlq=False,
    extra_config={"min.cleanable.dirty.ratio": "0.1", "segment.ms": str(DAY_MS)},
)
CHANNEL_EVENTS = TopicSpec(
    name="parley.channel-events.v1",
    key="channel id (or onboarding id before the channel exists)",
    partitions=3,
    cleanup="delete",
    retention_ms=30 * DAY_MS,
    owner="onboarding",
    consumers=("admin tools", "notifications", "policy", "onboarding"),
    public=True,
    description="Channel lifecycle: connected, settings changed, token expiring, reauth required, "
    "reconnected, disconnected, WhatsApp verification steps and template reviews; a send's request "
    "to refresh an expired token.",
    has_dlq=True,
    # policy: reauth_required and sending_restricted when a send is refused, and
    # token_refresh_requested when a send finds the token expired (onboarding refreshes it)
    co_publishers=("policy",),
)
TEAMS = TopicSpec(
    name="parley.teams.v1",
    key="team id",
    partitions=3,
    cleanup="compact",
    retention_ms=None,
    owner="onboarding",
    consumers=("routing", "policy", "reports"),
    public=True,
    description="Teams and their members, compacted: the latest per team id.",
    has_dlq=False,
    extra_config={"min.cleanable.dirty.ratio": "0.1", "segment.ms": str(DAY_MS)},
)
REPLIES = TopicSpec(
    name="parley.replies.v1",
    key="conversation id",
    partitions=12,
    cleanup="delete",
    retention_ms=7 * DAY_MS,
    owner="policy",
    consumers=("routing", "policy", "reports", "agent tools"),
    public=True,
    description="Outbound reply outcomes (requested, approved, rejected, sent, failed) and agents' "
    "thread-control calls (taken, released).",
    has_dlq=True,
)

REPLY_WINDOWS = TopicSpec(
    name="parley.reply-windows.v1",
    key="conversation id",
    partitions=12,
    cleanup="delete",
    retention_ms=7 * DAY_MS,
    owner="policy",
    consumers=("agent tools",),
    public=True,
    description="Reply windows opening, closing soon and closed, for agent countdowns.",
    has_dlq=False,
)

CUSTOMER_ALIASES = TopicSpec(
    name="parley.customer-aliases.v1",
    key="channel id and the alias's thread key",
    partitions=3,
    cleanup="compact",
    retention_ms=None,
    owner="normalizer",
    consumers=("normalizer",),
    public=False,
    description="Which conversation key a customer's other identifier belongs to (a WhatsApp "
    "business-scoped user id, a new phone number), compacted: the latest per alias.",
    has_dlq=False,
    extra_config={"min.cleanable.dirty.ratio": "0.1", "segment.ms": str(DAY_MS)},
)

PRIMARY_TOPICS: tuple[TopicSpec, ...] = (
    WEBHOOKS_RAW,
    MESSAGES_INBOUND,
    CONVERSATIONS,
    CHANNELS,
    CHANNEL_EVENTS,
    TEAMS,
    REPLIES,
    REPLY_WINDOWS,
    CUSTOMER_ALIASES,
)


def all_topics() -> tuple[TopicSpec, ...]:
    """Every topic to create: the primary topics and the DLQs of those that have one."""
    dlqs = tuple(t.dlq() for t in PRIMARY_TOPICS if t.has_dlq)
    return PRIMARY_TOPICS + dlqs
