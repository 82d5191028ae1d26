"""The reply decision (pure): may this reply be sent now, and how?

Inputs are what policy knows from the streams (the customer's last message time, the channel's
settings, approved templates, the caller's role); the output is a decision with machine-readable
reasons, the windows' closing times, and the messaging type or tag a send would use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from parley_events import ChannelRole, ChannelSnapshot, ChannelStatus, Provider, SenderType

from parley_policy.domain.length import MAX_TEXT_CHARACTERS, measure
from parley_policy.domain.rules import ReplyRule, rule_for


@dataclass(frozen=True, slots=True)
class Template:
    """A WhatsApp template reply."""

    name: str
    language: str
    parameters: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    """What policy knows about a template: Meta's review status and, if registered, its parameters,
    category and quality rating."""

    status: str
    parameter_count: int | None = None
    category: str | None = None
    quality: str | None = None  # Meta's rating (GREEN, YELLOW, RED, UNKNOWN): shown, never refused


@dataclass(frozen=True, slots=True)
class KnownLimit:
    """A business's messaging limit as the provider last set it (None: unlimited)."""

    limit: int | None


@dataclass(frozen=True, slots=True)
class ReplyRequest:
    """An agent's (or an automation's) reply to a conversation."""

    kind: str = "direct"  # direct, comment (public reply), private_reply (to a comment), mention (X)
    text: str | None = None
    template: Template | None = None
    tag: str | None = None
    sender_type: SenderType = SenderType.HUMAN
    comment_id: str | None = None


@dataclass(frozen=True, slots=True)
class ConversationFacts:
    """What the streams say about the conversation."""

    provider: Provider
    last_customer_message_at: datetime | None
    private_replied_comments: frozenset[str] = frozenset()
    comment_times: Mapping[str, datetime] = field(default_factory=dict)
    mention_ids: frozenset[str] = frozenset()
    """The customers' posts of this conversation that mention the account (X, Instagram)."""
    recipient_id: str | None = None
    """Where a direct reply goes (WhatsApp: a phone number, or a business-scoped user id when the
    customer's phone is not on record)."""
    parley_active: bool = True
    """Whether Parley's app is the thread's active responder (Conversation Routing: routing's
    ``thread_control_changed``, or a take or release through policy's own API)."""

    def has_item(self, item_id: str) -> bool:
        """Is this comment or post one of the conversation's own (a public reply may answer it)?"""
        return item_id in self.comment_times or item_id in self.mention_ids


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome, with everything an agent tool needs to explain it."""

    approved: bool
    reasons: tuple[Reason, ...]
    messaging_type: str | None
    tag: str | None
    window_closes_at: datetime | None
    human_agent_window_closes_at: datetime | None
    length: int | None
    limit: int | None
    template_quality: str | None = None  # an approved template's rating, for the answer and the event


ANSWERS_A_POST = frozenset({"comment", "mention"})
"""Public replies: to a comment (Facebook, Instagram) or a post (X), named by ``comment_id``."""


def _names_an_item(item_id: str | None) -> bool:
    """A provider's id for a comment or post: not blank, and never "." or ".." (a path, not a name)."""
    return item_id is not None and item_id.strip() not in ("", ".", "..")


AUTOMATION_SCOPE_REQUIRED = Reason(
    "AUTOMATION_SCOPE_REQUIRED", "automated replies are sent by service principals (parley:automation)"
)


def may_reply(role: ChannelRole | None, automation: bool, sender_type: SenderType = SenderType.HUMAN) -> bool:
    """Contributors and Supervisors reply; service principals send automated replies on their
    tenant's channels. A human reply needs the role whoever asks: the scope does not let a bot
    pass for a person (nor reach the human-agent tag)."""
    if sender_type is SenderType.AUTOMATED:
        return automation
    return role is not None and role.rank >= ChannelRole.CONTRIBUTOR.rank


def _needs_phone(info: TemplateInfo, facts: ConversationFacts, rule: ReplyRule) -> bool:
    """The template's category goes only to phone numbers, and the customer has none on record."""
    if info.category is None or info.category.upper() not in rule.phone_only_template_categories:
        return False
    return rule.is_phone_address is not None and not rule.is_phone_address(facts.recipient_id or "")


def window_closes(facts: ConversationFacts, rule: ReplyRule) -> tuple[datetime | None, datetime | None]:
    last = facts.last_customer_message_at
    if last is None or rule.window is None:
        return None, None
    human = last + rule.human_agent_window if rule.human_agent_window else None
    return last + rule.window, human


def decide(
    request: ReplyRequest,
    facts: ConversationFacts,
    channel: ChannelSnapshot | None,
    role: ChannelRole | None,
    now: datetime,
    templates: Mapping[tuple[str, str], TemplateInfo] | None = None,
    *,
    automation: bool = False,
) -> Decision:
    """``role`` is the requester's role on the channel; ``automation`` says whether the requester
    is a service principal (the ``parley:automation`` scope), the only one who may send as
    ``automated``. Who may reply is settled before any work on the content."""
    reasons: list[Reason] = []
    try:
        rule = rule_for(facts.provider, request.kind)
    except ValueError:
        return Decision(
            False,
            (Reason("UNSUPPORTED_REPLY", f"{facts.provider.value} has no {request.kind} replies"),),
            None,
            None,
            None,
            None,
            None,
            None,
        )
    closes, human_closes = window_closes(facts, rule)

    if channel is None or channel.status is not ChannelStatus.ACTIVE:
        reasons.append(Reason("CHANNEL_INACTIVE", "the channel is not active (reconnect it?)"))
    if request.sender_type is SenderType.AUTOMATED and not automation:
        reasons.append(AUTOMATION_SCOPE_REQUIRED)
    elif not may_reply(role, automation, request.sender_type):
        reasons.append(Reason("ROLE_FORBIDDEN", "Viewers cannot reply; Contributors and Supervisors can"))
    if reasons and reasons[-1].code in ("AUTOMATION_SCOPE_REQUIRED", "ROLE_FORBIDDEN"):
        # a requester who may not reply learns only that: the content is not even measured
        return Decision(False, tuple(reasons), None, None, closes, human_closes, None, None)

    # content
    length: int | None = None
    limit = rule.text_limit
    if channel is not None and channel.text_limit is not None:
        limit = min(limit, channel.text_limit)
    if request.template is None:
        if not request.text or not request.text.strip():
            reasons.append(Reason("EMPTY", "a reply needs text or a template"))
        elif len(request.text) > MAX_TEXT_CHARACTERS:
            # past every provider's limit: refused without counting it (the API refuses it sooner)
            reasons.append(Reason("TOO_LONG", f"over {MAX_TEXT_CHARACTERS} characters, every limit"))
        else:
            length = measure(request.text, rule.counting)
            if length > limit:
                reasons.append(
                    Reason("TOO_LONG", f"{length} {rule.counting.value} over the limit of {limit}")
                )
    elif facts.provider is not Provider.WHATSAPP:
        reasons.append(Reason("TEMPLATE_UNSUPPORTED", "templates are for WhatsApp"))
    else:
        info = (templates or {}).get((request.template.name, request.template.language))
        if info is None or info.status != "APPROVED":
            reasons.append(
                Reason("TEMPLATE_NOT_APPROVED", f"template {request.template.name} is not approved")
            )
        else:
            if info.parameter_count is not None and info.parameter_count != len(request.template.parameters):
                reasons.append(
                    Reason(
                        "TEMPLATE_PARAMETERS",
                        f"template {request.template.name} takes {info.parameter_count} parameters, "
                        f"got {len(request.template.parameters)}",
                    )
                )
            if _needs_phone(info, facts, rule):
                reasons.append(
                    Reason(
                        "TEMPLATE_NEEDS_PHONE",
                        f"{(info.category or '').lower()} templates are sent to a phone number; this "
                        "customer is known only by a business-scoped user id",
                    )
                )

    # windows and tags
    # Meta sends every rating (GREEN, YELLOW, RED, UNKNOWN) and pauses a template itself on
    # sustained low quality (a PAUSED status, refused above): the rating is told, not enforced
    template_quality = None
    if request.template is not None and facts.provider is Provider.WHATSAPP:
        known = (templates or {}).get((request.template.name, request.template.language))
        template_quality = known.quality if known is not None else None

    messaging_type: str | None = None
    tag: str | None = None
    if request.kind == "direct" and not facts.parley_active:
        # Conversation Routing: another app answers this thread; the provider would refuse the send
        reasons.append(
            Reason(
                "NOT_THREAD_OWNER",
                "another app is this thread's active responder: take thread control to reply",
            )
        )
    if request.kind in ANSWERS_A_POST:
        if not _names_an_item(request.comment_id):
            reasons.append(
                Reason("COMMENT_REQUIRED", f"a {request.kind} reply names the comment or post in comment_id")
            )
        elif not facts.has_item(request.comment_id or ""):
            # the brand answers only what was said in this conversation, never any post it can name
            reasons.append(
                Reason("COMMENT_NOT_FOUND", "a public reply answers a comment or post of this conversation")
            )
    if request.kind == "private_reply":
        comment_at = facts.comment_times.get(request.comment_id or "")
        if request.comment_id is None or comment_at is None:
            reasons.append(
                Reason("COMMENT_NOT_FOUND", "a private reply names a comment of this conversation")
            )
        elif request.comment_id in facts.private_replied_comments:
            reasons.append(Reason("PRIVATE_REPLY_USED", "a comment gets at most one private reply"))
        elif rule.window is not None and now > comment_at + rule.window:
            reasons.append(Reason("PRIVATE_REPLY_EXPIRED", "private replies are possible for 7 days"))
        messaging_type = "RESPONSE"
    elif rule.window is not None:
        in_window = closes is not None and now <= closes
        refused_tag = _tag_refusals(request.tag, rule) if request.tag is not None else []
        reasons.extend(refused_tag)
        human_agent = request.tag is not None and request.tag == rule.human_agent_tag
        if facts.last_customer_message_at is None:
            if request.template is None or not rule.template_outside_window:
                reasons.append(Reason("NO_CUSTOMER_MESSAGE", "the business cannot start this conversation"))
            else:
                messaging_type = "TEMPLATE"  # WhatsApp: a template may open a conversation
        elif request.template is not None and rule.template_outside_window:
            messaging_type = "TEMPLATE"
        elif in_window:
            # inside the window no tag is ever sent, whatever the channel allows: a tag asked for
            # here is dropped (the provider's tags are for replies after the window only)
            if human_agent and request.sender_type is not SenderType.HUMAN:
                reasons.append(HUMAN_AGENT_FOR_HUMANS_ONLY)
            messaging_type = "RESPONSE" if not refused_tag else None
        elif human_agent:
            messaging_type, tag = "MESSAGE_TAG", request.tag
            reasons.extend(_human_agent_problems(request, channel, human_closes, now))
        elif rule.template_outside_window:
            reasons.append(
                Reason("TEMPLATE_REQUIRED", "outside the 24-hour window only an approved template")
            )
        else:
            reasons.append(
                Reason(
                    "WINDOW_CLOSED",
                    "the 24-hour window closed; a human agent may use the "
                    f"{rule.human_agent_tag or 'human agent'} tag within 7 days where the channel "
                    "allows it",
                )
            )
    else:
        messaging_type = "RESPONSE" if facts.provider is not Provider.X else None

    return Decision(
        approved=not reasons,
        reasons=tuple(reasons),
        messaging_type=messaging_type,
        tag=tag,
        window_closes_at=closes,
        human_agent_window_closes_at=human_closes,
        length=length,
        limit=limit,
        template_quality=template_quality,
    )


HUMAN_AGENT_FOR_HUMANS_ONLY = Reason(
    "HUMAN_AGENT_FOR_HUMANS_ONLY", "automated senders never use the HUMAN_AGENT tag"
)


def _tag_refusals(tag: str, rule: ReplyRule) -> list[Reason]:
    """A tag the provider retired or never had; the human-agent tag itself is never refused here."""
    if tag == rule.human_agent_tag:
        return []
    retired = rule.retired_tags.get(tag)
    if retired is not None:
        remains = f"; only {rule.human_agent_tag} remains" if rule.human_agent_tag else ""
        return [Reason("TAG_RETIRED", f"the {tag} tag was retired on {retired.isoformat()}{remains}")]
    if rule.human_agent_tag is None:
        return [Reason("TAG_NOT_ALLOWED", f"{rule.provider.value} has no message tags")]
    return [Reason("TAG_NOT_ALLOWED", f"{tag} is not a tag Parley sends (only {rule.human_agent_tag})")]


def _human_agent_problems(
    request: ReplyRequest, channel: ChannelSnapshot | None, human_closes: datetime | None, now: datetime
) -> list[Reason]:
    """The human-agent tag after the window: a person, a channel that allows it, within its window."""
    problems = []
    if request.sender_type is not SenderType.HUMAN:
        problems.append(HUMAN_AGENT_FOR_HUMANS_ONLY)
    if channel is None or not channel.human_agent_tag:
        problems.append(Reason("HUMAN_AGENT_NOT_ENABLED", "this channel does not allow the HUMAN_AGENT tag"))
    if human_closes is None or now > human_closes:
        problems.append(Reason("WINDOW_CLOSED", "the 7-day human agent window closed too"))
    return problems
