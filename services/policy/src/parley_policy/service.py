"""Policy's service layer: decide, publish outcomes, deliver, and announce reply windows."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from parley_events import (
    ChannelReauthRequired,
    ChannelRole,
    ChannelSendingRestricted,
    ChannelSnapshot,
    ChannelStatus,
    ChannelTokenRefreshRequested,
    ConversationAwayMessageDue,
    ConversationReadRequested,
    ConversationThreadControlChanged,
    Event,
    HumanAgentWindowClosed,
    MessageReceived,
    MessagingLimitChanged,
    Provider,
    RejectionReason,
    ReplyApproved,
    ReplyFailed,
    ReplyRejected,
    ReplyRequested,
    ReplySent,
    ReplyWindowClosed,
    ReplyWindowClosing,
    ReplyWindowOpened,
    SenderType,
    TemplateRef,
    ThreadControlReleased,
    ThreadControlTaken,
)
from parley_events import (
    ProviderError as ProviderErrorModel,
)
from parley_events.hours import AWAY_MESSAGE_REQUESTER
from parley_providers import ErrorKind, ProviderError, registry
from parley_providers.base import ReadReceipts, ReadRef, Sender, ThreadControl, ThreadRef
from parley_shared.logging import get_logger, redact_value
from parley_shared.vault import Credential, CredentialStore

from parley_policy import metrics
from parley_policy.adapters.stores import PolicyStorePort
from parley_policy.domain.decision import (
    ConversationFacts,
    Decision,
    Reason,
    ReplyRequest,
    TemplateInfo,
    decide,
)
from parley_policy.domain.retry import RetryBudget
from parley_policy.domain.rules import (
    account_send_rate,
    limit_update_scope,
    messaging_limit,
    messaging_limit_period,
    messaging_limit_scope,
    rule_for,
    rules,
    superseded_scope,
)

Publish = Callable[[Event, str], Awaitable[None]]
ReplyEvent = ReplyRequested | ReplyApproved | ReplyRejected
Clock = Callable[[], datetime]
RETRYABLE = {ErrorKind.RATE_LIMITED, ErrorKind.RETRYABLE}

log = get_logger(__name__)


_OUTBOX_TYPES: dict[str, type[ReplyEvent]] = {
    t.event_type: t for t in (ReplyRequested, ReplyApproved, ReplyRejected)
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def reply_id_for(tenant_id: str, user_id: str, key: str) -> str:
    """Deterministic: the same idempotency key from the same user is the same reply."""
    return "rpl_" + hashlib.sha256(f"{tenant_id}\x1f{user_id}\x1f{key}".encode()).hexdigest()[:24]


CARRY_EVERY = timedelta(minutes=1)
"""How often one replica copies a channel's account-scope messaging-limit count into its portfolio's
(a replica whose channel directory had not seen the portfolio yet may still have counted there)."""
LIMIT_CARRIED_AT = datetime(1970, 1, 1, tzinfo=UTC)
"""The time an account's known messaging limit is recorded at for its portfolio: any limit the
provider sets for the portfolio is later and wins."""

PRIVATE_REPLY_TAKEN = Reason("PRIVATE_REPLY_USED", "a comment gets at most one private reply")
"""Another reply claimed the comment's private reply first (the rule's own reason: the decision
saw none sent yet, but a racing request got there first)."""


def _refused(decision: Decision, reason: Reason) -> Decision:
    """The decision refused for ``reason``, its windows and length kept for the answer."""
    return replace(decision, approved=False, reasons=(reason,))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the API answers for a reply request."""

    reply_id: str
    decision: Decision
    retry_after_s: float | None = None


class ConversationUnknown(LookupError):
    """Policy has seen no message of this conversation (or it is not the caller's)."""


class ConversationNotYetKnown(Exception):
    """An away message for a conversation policy has not seen a message of yet: its inbound
    consumer is behind routing's; the record is tried again (the retry middleware)."""


class AutomationScopeRequired(PermissionError):
    """A person's token asked to send as ``automated``: only service principals may."""


class ThreadControlForbidden(PermissionError):
    """Viewers may not take or release threads; Contributors and Supervisors may."""


class ThreadControlUnsupported(LookupError):
    """The conversation's provider routes no threads between apps (or its channel has no token)."""


ChangeThreadControl = Callable[[str, ThreadRef, bool], Awaitable[None]]
"""Take (True) or release (False) a thread for a channel: the delivery side's call."""


class ReadForbidden(PermissionError):
    """Viewers may not mark messages read or show typing; Contributors and Supervisors may."""


class ReadReceiptsUnsupported(LookupError):
    """The conversation's provider takes no read receipts from the business (or its channel has
    no token)."""


class NothingToRead(LookupError):
    """The conversation has no customer message to mark as read."""


class NotThreadOwner(PermissionError):
    """Another responder answers the thread (Conversation Routing): Parley may not show typing."""


SendReadReceipt = Callable[[str, ReadRef, bool], Awaitable[None]]
"""Mark a customer's message read for a channel, with the typing indicator (True) or without."""


class PolicyService:
    """Everything policy does, independent of HTTP and Kafka."""

    def __init__(
        self,
        store: PolicyStorePort,
        channels: Callable[[str], ChannelSnapshot | None],
        role_of: Callable[[str, str, str], ChannelRole | None],
        templates: Callable[[str], dict[tuple[str, str], TemplateInfo]],
        publish: Publish,
        clock: Clock = utcnow,
        whatsapp_throughput: int | None = None,
        messaging_tier: int = 0,
        change_thread_control: ChangeThreadControl | None = None,
        send_read_receipt: SendReadReceipt | None = None,
        business_channel: Callable[[Provider, str], ChannelSnapshot | None] | None = None,
    ) -> None:
        self.change_thread_control = change_thread_control
        self.send_read_receipt = send_read_receipt
        self.store = store
        self.channels = channels
        # a claiming channel of a business account (the channel directory's lookup_business)
        self.business_channel = business_channel or (lambda provider, account: None)
        self.role_of = role_of
        self.templates = templates
        self.publish = publish
        self.clock = clock
        # a deployment's ceiling on every WhatsApp number's rate (unset: each number's own, from
        # its throughput level and coexistence)
        self.whatsapp_throughput = whatsapp_throughput
        self.messaging_tier = messaging_tier
        self._slot_hint: dict[str, int] = {}
        self._full: dict[str, int] = {}  # key -> the window found full
        self._carried: dict[tuple[str, str], datetime] = {}  # (account scope, portfolio scope) -> when

    # --- facts from the streams ---------------------------------------------------------------

    async def on_inbound(self, message: MessageReceived) -> None:
        if message.direction.value != "inbound":
            return
        if await self.store.record_inbound(message):
            rule = rules().get((message.provider, "direct"))
            if rule is not None and rule.window is not None:
                opened = ReplyWindowOpened(
                    event_id=f"win_{message.conversation_id}_{message.event_id}_opened",
                    conversation_id=message.conversation_id,
                    tenant_id=message.tenant_id,
                    channel_id=message.channel_id,
                    provider=message.provider,
                    last_customer_message_at=message.provider_timestamp,
                    closes_at=message.provider_timestamp + rule.window,
                    occurred_at=message.provider_timestamp,
                )
                await self.publish(opened, opened.event_id)

    async def on_thread_control(self, change: ConversationThreadControlChanged) -> None:
        """Routing's word on whether Parley answers the thread (Conversation Routing)."""
        await self.store.record_thread_control(
            change.conversation_id, change.parley_active, change.occurred_at
        )

    async def thread_control(
        self, tenant_id: str, user_id: str, is_admin: bool, conversation_id: str, take: bool
    ) -> bool:
        """Take (``take``) or release the conversation's thread with the provider; the thread's
        state for Parley afterwards. Contributors and Supervisors may; the change is audited
        (``thread_control.taken`` or ``.released``) and applies to replies at once."""
        doc, _ = await self._context(tenant_id, conversation_id)
        role = self._role(tenant_id, user_id, is_admin, doc["channel_id"])
        if role is None:
            raise ConversationUnknown(conversation_id)  # invisible to this user
        if role.rank < ChannelRole.CONTRIBUTOR.rank:
            raise ThreadControlForbidden(conversation_id)
        if self.change_thread_control is None:
            raise ThreadControlUnsupported(conversation_id)
        provider = Provider(doc["provider"])
        thread = ThreadRef(provider, doc["account_id"], doc["recipient_id"])
        await self.change_thread_control(doc["channel_id"], thread, take)  # ProviderError propagates
        now = self.clock()
        await self.store.record_thread_control(conversation_id, take, now)
        kind = ThreadControlTaken if take else ThreadControlReleased
        event = kind(
            event_id="thc_"
            + hashlib.sha256(
                f"{conversation_id}\x1f{user_id}\x1f{now.isoformat()}\x1f{take}".encode()
            ).hexdigest()[:24],
            conversation_id=conversation_id,
            tenant_id=tenant_id,
            channel_id=doc["channel_id"],
            provider=provider,
            actor_id=user_id,
            occurred_at=now,
        )
        await self.publish(event, event.event_id)
        return take

    async def mark_read(
        self, tenant_id: str, user_id: str, is_admin: bool, conversation_id: str, typing: bool
    ) -> str:
        """Mark the conversation's last customer message as read with the provider (which marks
        the earlier ones too) and, with ``typing``, show the customer a typing indicator; the
        message's provider id. Role-gated like replies (Contributor or higher); typing announces a
        reply, so it is refused where another responder answers the thread (``NOT_THREAD_OWNER``)."""
        doc, _ = await self._context(tenant_id, conversation_id)
        role = self._role(tenant_id, user_id, is_admin, doc["channel_id"])
        if role is None:
            raise ConversationUnknown(conversation_id)  # invisible to this user
        if role.rank < ChannelRole.CONTRIBUTOR.rank:
            raise ReadForbidden(conversation_id)
        if self.send_read_receipt is None:
            raise ReadReceiptsUnsupported(conversation_id)
        message_id = doc.get("last_customer_message_id")
        if not message_id:
            raise NothingToRead(conversation_id)
        if typing and not await self.store.parley_active(conversation_id):
            raise NotThreadOwner(conversation_id)
        message = ReadRef(Provider(doc["provider"]), doc["account_id"], message_id)
        await self.send_read_receipt(doc["channel_id"], message, typing)  # ProviderError propagates
        return str(message_id)

    async def on_read_requested(self, request: ConversationReadRequested) -> bool:
        """Routing says an agent who may reply opened the conversation on a channel that marks
        messages read on open: mark the customer's last message read (no typing indicator), at most
        once per message across replicas and redeliveries (claimed before the call). Best effort: a
        provider that refuses is logged and not asked again for that message (the agent's tool can
        still call ``/read``). True when the receipt was sent."""
        if self.send_read_receipt is None:
            return False
        doc = await self.store.conversation(request.conversation_id)
        if doc is None or doc["tenant_id"] != request.tenant_id:
            return False  # policy has seen no customer message of it
        message_id = doc.get("last_customer_message_id")
        if not message_id:
            return False
        if not await self.store.claim_notice(
            f"read_{request.conversation_id}_{message_id}", request.occurred_at
        ):
            return False  # read already, on an earlier open
        message = ReadRef(Provider(doc["provider"]), doc["account_id"], message_id)
        try:
            await self.send_read_receipt(doc["channel_id"], message, False)
        except (ProviderError, ReadReceiptsUnsupported) as exc:
            kind = exc.kind.value if isinstance(exc, ProviderError) else "unsupported"
            log.warning(
                "could not mark the message read on open",
                conversation_id=request.conversation_id,
                error_kind=kind,
            )
            metrics.READS_ON_OPEN.labels(provider=doc["provider"], outcome=kind).inc()
            return False
        metrics.READS_ON_OPEN.labels(provider=doc["provider"], outcome="read").inc()
        return True

    # --- deciding ------------------------------------------------------------------------------

    async def _facts(self, doc: dict[str, Any]) -> ConversationFacts:
        return replace(self.store.facts(doc), parley_active=await self.store.parley_active(doc["_id"]))

    async def _context(
        self, tenant_id: str, conversation_id: str
    ) -> tuple[dict[str, Any], ChannelSnapshot | None]:
        doc = await self.store.conversation(conversation_id)
        if doc is None or doc["tenant_id"] != tenant_id:
            raise ConversationUnknown(conversation_id)
        return doc, self.channels(doc["channel_id"])

    async def _requester(
        self,
        tenant_id: str,
        user_id: str,
        is_admin: bool,
        conversation_id: str,
        request: ReplyRequest,
        automation: bool,
    ) -> tuple[dict[str, Any], ChannelSnapshot | None, ChannelRole | None]:
        """The conversation, its channel and the requester's role, once the requester may see it.

        The automated-sender rule comes first, whatever the conversation, so its 403 says nothing
        about whether the conversation exists; a conversation the requester has no role on is as
        unknown as one that does not exist (the same 404).
        """
        if request.sender_type is SenderType.AUTOMATED and not automation:
            raise AutomationScopeRequired(conversation_id)
        doc, channel = await self._context(tenant_id, conversation_id)
        role = self._role(tenant_id, user_id, is_admin, doc["channel_id"])
        if role is None and not automation:
            raise ConversationUnknown(conversation_id)  # invisible to this user
        return doc, channel, role

    async def send_away_message(self, due: ConversationAwayMessageDue) -> Outcome:
        """The channel's away message, requested as an automation's reply: the same decision as
        any reply (window, length, rate, thread control), stored under the event's id, so a
        redelivered event is the same reply and is sent once."""
        request = ReplyRequest(kind="direct", text=due.text, sender_type=SenderType.AUTOMATED)
        try:
            outcome = await self.request_reply(
                due.tenant_id,
                AWAY_MESSAGE_REQUESTER,
                False,
                due.conversation_id,
                request,
                due.event_id,
                automation=True,
            )
        except ConversationUnknown as exc:
            raise ConversationNotYetKnown(due.conversation_id) from exc
        if not outcome.decision.approved:
            log.info(
                "away message refused",
                conversation_id=due.conversation_id,
                reasons=[r.code for r in outcome.decision.reasons],
            )
        return outcome

    async def check(
        self,
        tenant_id: str,
        user_id: str,
        is_admin: bool,
        conversation_id: str,
        request: ReplyRequest,
        *,
        automation: bool = False,
    ) -> Decision:
        doc, channel, role = await self._requester(
            tenant_id, user_id, is_admin, conversation_id, request, automation
        )
        return decide(
            request,
            await self._facts(doc),
            channel,
            role,
            self.clock(),
            self.templates(doc["channel_id"]),
            automation=automation,
        )

    def _role(self, tenant_id: str, user_id: str, is_admin: bool, channel_id: str) -> ChannelRole | None:
        return ChannelRole.SUPERVISOR if is_admin else self.role_of(tenant_id, user_id, channel_id)

    async def window(
        self, tenant_id: str, user_id: str, is_admin: bool, conversation_id: str, *, automation: bool = False
    ) -> dict[str, Any]:
        # the same visibility rule as a reply's: no role, no conversation (the same 404)
        doc, channel, _ = await self._requester(
            tenant_id, user_id, is_admin, conversation_id, ReplyRequest(text="x"), automation
        )
        decision = decide(
            ReplyRequest(text="x"), await self._facts(doc), channel, ChannelRole.SUPERVISOR, self.clock(), {}
        )
        now = self.clock()
        return {
            "conversation_id": conversation_id,
            "provider": doc["provider"],
            "last_customer_message_at": doc.get("last_customer_message_at"),
            "window_closes_at": decision.window_closes_at,
            "window_open": decision.window_closes_at is not None and now <= decision.window_closes_at,
            "human_agent_window_closes_at": decision.human_agent_window_closes_at,
            "human_agent_tag_enabled": bool(channel and channel.human_agent_tag),
        }

    async def request_reply(
        self,
        tenant_id: str,
        user_id: str,
        is_admin: bool,
        conversation_id: str,
        request: ReplyRequest,
        key: str,
        *,
        automation: bool = False,
    ) -> Outcome:
        """Decide once per idempotency key, publish the outcome, and queue the delivery.

        ``automation``: the requester is a service principal (the ``parley:automation`` scope).
        """
        reply_id = reply_id_for(tenant_id, user_id, key)
        doc, channel, role = await self._requester(
            tenant_id, user_id, is_admin, conversation_id, request, automation
        )
        earlier = await self.store.decision(reply_id)
        if earlier is not None:
            return await self._replay(reply_id, earlier)  # same answer, nothing sent again
        now = self.clock()
        decision = decide(
            request,
            await self._facts(doc),
            channel,
            role,
            now,
            self.templates(doc["channel_id"]),
            automation=automation,
        )
        outside = decision.window_closes_at is None or now > decision.window_closes_at
        business_initiated = decision.approved and decision.messaging_type == "TEMPLATE" and outside
        if decision.approved:
            limited_by = await self._rate_check(doc, channel, request)
            if limited_by is not None:
                retry_after, why = limited_by
                # not recorded under the key: the same request may be retried after Retry-After
                limited = Decision(
                    False,
                    (Reason("RATE_LIMITED", why),),
                    decision.messaging_type,
                    decision.tag,
                    decision.window_closes_at,
                    decision.human_agent_window_closes_at,
                    decision.length,
                    decision.limit,
                )
                metrics.DECISIONS.labels(provider=doc["provider"], outcome="RATE_LIMITED").inc()
                return Outcome(reply_id, limited, retry_after)
        # the comment's one private reply, claimed in the store so that two replicas (or two keys)
        # racing for the same comment cannot both be approved; the same key claims it again
        if (
            decision.approved
            and request.kind == "private_reply"
            and not await self.store.claim_private_reply(doc["_id"], request.comment_id or "", reply_id)
        ):
            decision = _refused(decision, PRIVATE_REPLY_TAKEN)
        # after the rate check (a refusal there takes no place), before the decision is stored: a
        # crash in between counts a customer never reached, which errs on the side of the limit
        if business_initiated and not await self._claim_reach(doc, channel, now):
            decision = Decision(
                False,
                (
                    Reason(
                        "MESSAGING_LIMIT",
                        "the business reached its tier's unique "
                        "customers outside the window in the last 24 hours",
                    ),
                ),
                decision.messaging_type,
                decision.tag,
                decision.window_closes_at,
                decision.human_agent_window_closes_at,
                decision.length,
                decision.limit,
            )
        metrics.DECISIONS.labels(
            provider=doc["provider"], outcome="approved" if decision.approved else decision.reasons[0].code
        ).inc()
        if decision.approved and request.template is not None:
            metrics.TEMPLATE_APPROVALS.labels(quality=decision.template_quality or "NOT_KNOWN").inc()
        connect_path = channel.connect_path if channel is not None else None
        outbox = self._announcements(reply_id, tenant_id, user_id, doc, request, decision, now, connect_path)
        record = {
            "requested_by": user_id,
            "approved": decision.approved,
            "messaging_type": decision.messaging_type,
            "tag": decision.tag,
            "template_quality": decision.template_quality,
            "reasons": [{"code": r.code, "message": r.message} for r in decision.reasons],
            # the events this decision announces, stored with it and marked once published: a
            # retried request publishes them if a crash or a broker timeout came in between
            "outbox": [{"type": e.event_type, "data": e.model_dump(mode="json")} for e in outbox],
            "published": False,
        }
        raced = await self.store.claim_decision(reply_id, record)
        if raced is not None:
            return await self._replay(reply_id, raced)
        await self._publish_outbox(reply_id, record)
        return Outcome(reply_id, decision)

    @staticmethod
    def _announcements(
        reply_id: str,
        tenant_id: str,
        user_id: str,
        doc: dict[str, Any],
        request: ReplyRequest,
        decision: Decision,
        now: datetime,
        connect_path: str | None = None,
    ) -> list[ReplyEvent]:
        """What a decision publishes: requested, then approved (delivery follows) or rejected;
        the approval carries the channel's way of connecting, which chooses the sender's API."""
        base = {
            "reply_id": reply_id,
            "conversation_id": doc["_id"],
            "tenant_id": tenant_id,
            "channel_id": doc["channel_id"],
            "sender_type": request.sender_type,
            "agent_id": user_id if request.sender_type is SenderType.HUMAN else None,
            "requested_by": user_id,  # the person or service principal whose token asked
            "occurred_at": now,
        }
        template = (
            TemplateRef(
                name=request.template.name,
                language=request.template.language,
                parameters=request.template.parameters,
            )
            if request.template
            else None
        )
        requested = ReplyRequested(
            event_id=f"{reply_id}:requested",
            **base,
            kind=request.kind,
            text=request.text,
            template=template,
            tag=request.tag,
        )
        if not decision.approved:
            rejected = ReplyRejected(
                event_id=f"{reply_id}:rejected",
                **base,
                reasons=tuple(RejectionReason(code=r.code, message=r.message) for r in decision.reasons),
            )
            return [requested, rejected]
        recipient = (
            request.comment_id
            if request.kind in ("comment", "private_reply", "mention")
            else doc["recipient_id"]
        )
        approved = ReplyApproved(
            event_id=f"{reply_id}:approved",
            **base,
            provider=Provider(doc["provider"]),
            account_id=doc["account_id"],
            recipient_id=recipient or "",
            kind=request.kind,
            text=request.text,
            template=template,
            messaging_type=decision.messaging_type,
            tag=decision.tag,
            connect_path=connect_path,
            template_quality=decision.template_quality,
        )
        return [requested, approved]

    async def _publish_outbox(self, reply_id: str, record: dict[str, Any]) -> None:
        """Publish a stored decision's events (same ids every time), then mark them published."""
        for entry in record.get("outbox", []):
            event = _OUTBOX_TYPES[entry["type"]].model_validate(entry["data"])
            await self.publish(event, event.event_id)
        await self.store.mark_published(reply_id)

    async def _claim_reach(self, doc: dict[str, Any], channel: ChannelSnapshot | None, now: datetime) -> bool:
        """WhatsApp messaging limits: unique customers reached outside the window per rolling 24 h,
        counted for the whole business (every number of it) and claimed atomically in the store."""
        scope = messaging_limit_scope(doc["channel_id"], channel)
        await self._carry_account_count(channel, scope, now)
        # the limit the provider last set for the business, else the configured tier's
        known = await self.store.messaging_limit(scope)
        limit = known.limit if known is not None else messaging_limit(self.messaging_tier)
        if limit is None:
            return True
        since = now - messaging_limit_period(Provider.WHATSAPP)
        return await self.store.claim_reach(scope, doc["recipient_id"], now, since, limit)

    async def _carry_account_count(self, channel: ChannelSnapshot | None, scope: str, now: datetime) -> None:
        """A channel activated before Parley read business portfolios counted its customers for its
        account (``waba:<id>``) and now counts for its portfolio: the customers recorded for the
        account in the rolling period are counted for the portfolio first (once each: a customer
        in both keeps one place, at the later time), and the account's known limit becomes the
        portfolio's until the provider sets one. Idempotent; done before the claim it precedes,
        then at most every :data:`CARRY_EVERY` per replica."""
        account = superseded_scope(channel)
        if account is None or account == scope:
            return
        last = self._carried.get((account, scope))
        if last is not None and now - last < CARRY_EVERY:
            return
        since = now - messaging_limit_period(Provider.WHATSAPP)
        carried = await self.store.carry_reach(account, scope, since)
        known = await self.store.messaging_limit(account)
        if known is not None:
            await self.store.record_messaging_limit(scope, known.limit, LIMIT_CARRIED_AT)
        self._carried[(account, scope)] = now
        if carried:
            log.info(
                "messaging-limit count carried to the portfolio",
                account=account,
                scope=scope,
                customers=carried,
            )

    async def on_messaging_limit(self, update: MessagingLimitChanged) -> None:
        """The provider set the business's messaging limit: later claims count against it. Meta
        announces it per WhatsApp Business Account; it is recorded for the account's portfolio
        when a channel of the account names one (the limit is the portfolio's)."""
        holder = self.business_channel(Provider.WHATSAPP, update.business_account_id)
        await self.store.record_messaging_limit(
            limit_update_scope(update.business_account_id, holder),
            update.messaging_limit,
            update.provider_timestamp,
        )

    async def _replay(self, reply_id: str, earlier: dict[str, Any]) -> Outcome:
        """A retried request: the same answer, and its events if they never went out."""
        if earlier.get("published") is False:
            await self._publish_outbox(reply_id, earlier)
        reasons = tuple(Reason(r["code"], r["message"]) for r in earlier.get("reasons", []))
        return Outcome(
            reply_id,
            Decision(
                earlier["approved"],
                reasons,
                earlier.get("messaging_type"),
                earlier.get("tag"),
                None,
                None,
                None,
                None,
                template_quality=earlier.get("template_quality"),
            ),
        )

    async def _rate_check(
        self, doc: dict[str, Any], channel: ChannelSnapshot | None, request: ReplyRequest
    ) -> tuple[float, str] | None:
        """The provider's rates for this kind of reply, per account (the channel), shared by every
        policy replica through the store: the second's budget (a WhatsApp number's own throughput),
        then the hour's where the provider counts per hour (Meta's private replies). The wait and
        the reason when one is used up."""
        provider = Provider(doc["provider"])
        rule = rule_for(provider, request.kind)
        ceiling = self.whatsapp_throughput if provider is Provider.WHATSAPP else None
        limit = account_send_rate(provider, request.kind, channel, ceiling)
        now = self.clock().timestamp()
        channel_id = doc["channel_id"]
        if limit is not None:
            second = int(now)
            if not await self._claim_slot(channel_id, second, limit):
                wait = round(1 - (now - second), 3) or 0.001
                return wait, f"the channel's send rate ({limit} per second) is used up for this second"
        if rule.rate_per_hour is not None:
            # clock hours; the window's key is the second it ends, so the sweep that forgets
            # past seconds' slots keeps this hour's until it is over
            hour_end = (int(now) // 3600 + 1) * 3600
            if not await self._claim_slot(f"{channel_id}/{request.kind}/hour", hour_end, rule.rate_per_hour):
                return (
                    max(hour_end - now, 0.001),
                    f"the channel's {request.kind} replies for this hour ({rule.rate_per_hour}) are used up",
                )
        return None

    async def _claim_slot(self, key: str, window: int, limit: int) -> bool:
        """One of ``limit`` slots of ``key``'s window. A window found full stays full (slots are
        never given back), so this replica refuses without asking the store again until it ends."""
        if self._full.get(key) == window:
            return False
        slot = await self.store.take_rate_slot(key, window, limit, self._slot_hint.get(key, 0))
        if slot is None:
            self._full[key] = window
            return False
        self._slot_hint[key] = slot + 1
        return True

    # --- windows --------------------------------------------------------------------------------

    async def sweep_windows(self, closing_lead: timedelta) -> int:
        """Announce windows closing soon, closed, and human-agent windows closed (once each)."""
        now = self.clock()
        announced = 0
        direct = [r for r in rules().values() if r.kind == "direct"]
        windows = [r.window for r in direct if r.window is not None]
        if not windows:
            return 0
        # only windows with something due: the closing notice is the earliest of them, and the
        # longest window (the human-agent tag's) ends the latest; an hour's slack for a late sweep
        shortest = min(windows)
        longest = max([*windows, *(r.human_agent_window for r in direct if r.human_agent_window is not None)])
        oldest = now - longest - timedelta(hours=1)
        for doc in await self.store.windows_due(now - shortest + closing_lead, oldest):
            rule = rules().get((Provider(doc["provider"]), "direct"))
            last = doc.get("last_customer_message_at")
            if rule is None or rule.window is None or last is None:
                continue
            closes = last + rule.window
            notices: list[tuple[str, datetime, type[Any]]] = [
                ("closing", closes - closing_lead, ReplyWindowClosing),
                ("closed", closes, ReplyWindowClosed),
            ]
            if rule.human_agent_window is not None:
                notices.append(("human_closed", last + rule.human_agent_window, HumanAgentWindowClosed))
            for name, due, event_type in notices:
                if due > now:
                    continue
                notice_id = f"win_{doc['_id']}_{int(last.timestamp() * 1000)}_{name}"
                if not await self.store.claim_notice(notice_id, now):
                    continue
                event = event_type(
                    event_id=notice_id,
                    conversation_id=doc["_id"],
                    tenant_id=doc["tenant_id"],
                    channel_id=doc["channel_id"],
                    provider=Provider(doc["provider"]),
                    last_customer_message_at=last,
                    closes_at=last + rule.human_agent_window
                    if name == "human_closed" and rule.human_agent_window
                    else closes,
                    occurred_at=now,
                )
                await self.publish(event, notice_id)
                announced += 1
        return announced


class DeliveryInterrupted(asyncio.CancelledError):
    """Delivery stopped (shutdown) before the reply was settled: its record stays uncommitted.

    A ``CancelledError`` on purpose: the consumer's retry middleware passes it on instead of
    retrying or dead-lettering, and no acknowledgement commits the record, so the partition's
    next owner delivers the reply (and the provider-id record keeps that to one send).
    """


FAILED_PERMANENT = "permanent_error"
FAILED_BUDGET = "retry_budget_exhausted"


class Delivery:
    """Sends approved replies to the providers, at most once per reply.

    Transient provider errors are retried until ``retry`` (a :class:`RetryBudget`) is spent;
    permanent ones fail the reply at once. :meth:`stop` wakes every retry wait on shutdown.
    """

    def __init__(
        self,
        store: PolicyStorePort,
        credentials: CredentialStore,
        senders: Mapping[Provider, Sender],
        publish: Publish,
        clock: Clock = utcnow,
        retry: RetryBudget | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        channel_status: Callable[[str], ChannelStatus | None] = lambda _channel_id: None,
    ) -> None:
        self.store = store
        self.credentials = credentials
        # the channel read model's view: a refresh onboarding could not make marks the channel
        # reauth_required, and a reply waiting for that refresh fails at once with that reason
        self.channel_status = channel_status
        self.senders = senders
        self.publish = publish
        self.clock = clock
        self.retry = retry or RetryBudget()
        self.sleep = sleep or self._wait_unless_stopping
        self.monotonic = monotonic
        self._stopping = asyncio.Event()
        self._busy: set[asyncio.Task[Any]] = set()  # tasks inside deliver()
        self._idle = asyncio.Event()
        self._idle.set()

    async def deliver(self, reply: ReplyApproved, owned: Callable[[], bool] = lambda: True) -> None:
        """Send one approved reply and announce the outcome; ``owned`` says whether the record's
        partition is still this consumer's (after a rebalance its new owner delivers it)."""
        if self._stopping.is_set():
            raise DeliveryInterrupted("policy is stopping")
        task = asyncio.current_task()
        if task is not None:
            self._busy.add(task)
            self._idle.clear()
        try:
            await self._deliver(reply, owned)
        finally:
            if task is not None:
                self._busy.discard(task)
                if not self._busy:
                    self._idle.set()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called: every delivery now ends at once, uncommitted."""
        return self._stopping.is_set()

    async def stop(self, timeout_s: float) -> None:
        """Shutdown: wake retry waits (their records stay uncommitted), let sends in flight end.

        Deliveries still running after ``timeout_s`` are cancelled, as the broker would.
        """
        self._stopping.set()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            for task in list(self._busy):
                task.cancel()

    async def _wait_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _deliver(self, reply: ReplyApproved, owned: Callable[[], bool]) -> None:
        base = {
            "reply_id": reply.reply_id,
            "conversation_id": reply.conversation_id,
            "tenant_id": reply.tenant_id,
            "channel_id": reply.channel_id,
            "sender_type": reply.sender_type,
            "agent_id": reply.agent_id,
            "requested_by": reply.requested_by,
        }
        already = await self.store.delivered(reply.reply_id)
        if already is not None:
            # sent before a crash or a redelivery: announce it again, never send it again
            await self._sent(reply, already)
            return
        credential = await self.credentials.get(reply.channel_id)
        if credential is None:
            await self._failed(
                reply,
                base,
                ProviderError(
                    "parley", 0, None, None, "no credentials for the channel", ErrorKind.REAUTH_REQUIRED
                ),
                0,
                FAILED_PERMANENT,
            )
            return
        provider = reply.provider.value
        attempt = 0
        started = time.perf_counter()
        first_try = self.monotonic()
        refresh_asked = False
        while True:
            attempt += 1
            if attempt > 1:  # after a wait: the token may have been refreshed or reconnected
                credential = await self.credentials.get(reply.channel_id) or credential
            try:
                if self._awaits_refresh(credential):
                    if self.channel_status(reply.channel_id) is ChannelStatus.REAUTH_REQUIRED:
                        raise ProviderError(
                            "parley",
                            0,
                            None,
                            None,
                            "the provider refused to refresh the channel's token: reconnect it",
                            ErrorKind.REAUTH_REQUIRED,
                        )
                    if not refresh_asked:
                        await self._ask_refresh(reply, credential)
                        refresh_asked = True
                    raise ProviderError(
                        "parley", 0, None, None, "the channel's token is being refreshed", ErrorKind.RETRYABLE
                    )
                message_id = await self._send(reply, credential.access_token)
            except ProviderError as exc:
                wait = (
                    self.retry.next_wait(attempt, self.monotonic() - first_try, exc.retry_after_s)
                    if exc.kind in RETRYABLE
                    else None
                )
                if wait is not None:
                    metrics.DELIVERY_RETRIES.labels(provider=provider, error_kind=exc.kind.value).inc()
                    log.warning(
                        "provider send failed, will retry",
                        reply_id=reply.reply_id,
                        channel_id=reply.channel_id,
                        attempt=attempt,
                        error_kind=exc.kind.value,
                        code=exc.code,
                        wait_s=round(wait, 3),
                    )
                    await self.sleep(wait)
                    if self._stopping.is_set():
                        raise DeliveryInterrupted("policy is stopping") from None
                    if not owned():
                        # a rebalance gave the partition to another consumer, which redelivers
                        # the reply: sending it here as well could send it twice
                        log.warning(
                            "partition reassigned, leaving the reply to its new owner",
                            reply_id=reply.reply_id,
                        )
                        return
                    continue
                reason = FAILED_PERMANENT if exc.kind not in RETRYABLE else FAILED_BUDGET
                metrics.DELIVERY_SECONDS.labels(provider=provider).observe(time.perf_counter() - started)
                metrics.DELIVERIES.labels(
                    provider=provider, outcome=FAILED_BUDGET if reason == FAILED_BUDGET else exc.kind.value
                ).inc()
                await self._failed(reply, base, exc, attempt, reason)
                return
            metrics.DELIVERY_SECONDS.labels(provider=provider).observe(time.perf_counter() - started)
            metrics.DELIVERIES.labels(provider=provider, outcome="sent").inc()
            await self.store.record_delivery(reply.reply_id, message_id)
            if reply.kind == "private_reply":
                await self.store.mark_private_replied(reply.conversation_id, reply.recipient_id)
            await self._sent(reply, message_id)
            return

    def _awaits_refresh(self, credential: Credential) -> bool:
        """A token past its stored end that onboarding refreshes (it holds a refresh token): sending
        on it would only be refused. Onboarding alone spends refresh tokens (they work once)."""
        ends = credential.expires_at
        return credential.refresh_token is not None and ends is not None and ends <= self.clock()

    async def _ask_refresh(self, reply: ReplyApproved, credential: Credential) -> None:
        request = ChannelTokenRefreshRequested(
            event_id=f"{reply.reply_id}:refresh",
            channel_id=reply.channel_id,
            tenant_id=reply.tenant_id,
            provider=reply.provider,
            occurred_at=self.clock(),
            reply_id=reply.reply_id,
            expired_at=credential.expires_at,
        )
        await self.publish(request, request.event_id)
        log.info("token past its end; onboarding asked to refresh it", channel_id=reply.channel_id)

    async def _sent(self, reply: ReplyApproved, message_id: str) -> None:
        sent = ReplySent(
            reply_id=reply.reply_id,
            conversation_id=reply.conversation_id,
            tenant_id=reply.tenant_id,
            channel_id=reply.channel_id,
            sender_type=reply.sender_type,
            agent_id=reply.agent_id,
            requested_by=reply.requested_by,
            provider_message_id=message_id,
            text=reply.text,
            sent_at=self.clock(),
        )
        await self.publish(sent, f"{reply.reply_id}:sent")
        charge = registry.reply_charge(reply.provider, reply.kind, reply.text or "")
        if charge is not None:
            metrics.PROVIDER_CHARGES.labels(
                provider=reply.provider.value, channel_id=reply.channel_id, category=charge.category
            ).inc()

    async def _failed(
        self, reply: ReplyApproved, base: dict[str, Any], exc: ProviderError, attempts: int, reason: str
    ) -> None:
        failed = ReplyFailed(
            event_id=f"{reply.reply_id}:failed",
            **base,
            occurred_at=self.clock(),
            error=ProviderErrorModel(
                code=exc.code, subcode=exc.subcode, message=redact_value(str(exc.message))[:500]
            ),
            error_kind=exc.kind.value,
            attempts=attempts,
            reason=reason,
        )
        await self.publish(failed, failed.event_id)
        if reply.kind == "private_reply":
            # nothing was sent: the comment's private reply is free for another attempt
            await self.store.release_private_reply(reply.conversation_id, reply.recipient_id, reply.reply_id)
        if exc.kind is ErrorKind.REAUTH_REQUIRED:
            reason = registry.reauth_reason(reply.provider, exc.code, exc.subcode)
            reauth = ChannelReauthRequired(
                event_id=f"{reply.reply_id}:reauth",
                channel_id=reply.channel_id,
                tenant_id=reply.tenant_id,
                provider=reply.provider,
                occurred_at=self.clock(),
                reason=reason,
                provider_code=exc.code,
                provider_subcode=exc.subcode,
            )
            await self.publish(reauth, reauth.event_id)
        elif exc.kind is ErrorKind.SENDING_RESTRICTED:
            restricted = ChannelSendingRestricted(
                event_id=f"{reply.reply_id}:restricted",
                channel_id=reply.channel_id,
                tenant_id=reply.tenant_id,
                provider=reply.provider,
                occurred_at=self.clock(),
                provider_code=exc.code,
                provider_subcode=exc.subcode,
            )
            await self.publish(restricted, restricted.event_id)

    async def change_thread_control(self, channel_id: str, thread: ThreadRef, take: bool) -> None:
        """Take or release a thread with the channel's token, through its provider's sender."""
        sender = self.senders.get(thread.provider)
        credential = await self.credentials.get(channel_id)
        if not isinstance(sender, ThreadControl) or credential is None:
            raise ThreadControlUnsupported(channel_id)
        if take:
            await sender.take_thread_control(thread, credential.access_token)
        else:
            await sender.release_thread_control(thread, credential.access_token)

    async def send_read_receipt(self, channel_id: str, message: ReadRef, typing: bool) -> None:
        """Mark a customer's message read (and show typing) with the channel's token, through its
        provider's sender."""
        sender = self.senders.get(message.provider)
        credential = await self.credentials.get(channel_id)
        if not isinstance(sender, ReadReceipts) or credential is None:
            raise ReadReceiptsUnsupported(channel_id)
        await sender.mark_read(message, credential.access_token, typing)

    async def _send(self, reply: ReplyApproved, token: str) -> str:
        """Hand the reply to its provider's sender (from the registry's plugins)."""
        sender = self.senders.get(reply.provider)
        if sender is None:
            message = f"{reply.provider.value} is not configured"
            raise ProviderError(reply.provider.value, 0, None, None, message, ErrorKind.INVALID_REQUEST)
        return await sender.send(reply, token)
