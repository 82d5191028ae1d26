"""The away message: routing finds it due once per conversation per closed period, policy sends it
as an automation's reply (docs/routing.md, "The away message")."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from parley_events import (
    BusinessHours,
    ChannelSnapshot,
    Content,
    ConversationAwayMessageDue,
    ConversationEvent,
    MessageKind,
    MessageReceived,
    ReplyApproved,
    ReplyRejected,
    ReplyRequested,
    SenderType,
)
from parley_events.hours import AWAY_MESSAGE_REQUESTER
from parley_policy.service import ConversationNotYetKnown
from parley_routing.domain.model import Conversation, away_message_for
from parley_routing.service import ConversationService

from tests.support.fakes.routing import FakeRepository
from tests.unit.factories import T0, channel, message
from tests.unit.test_policy_service import Harness

pytestmark = pytest.mark.unit

# T0 is Wednesday 2024-05-01 12:00 UTC
AWAY = "Thanks for writing! We answer from 09:00 to 17:00, Monday to Friday."


def hours(start: str, end: str, **more: Any) -> BusinessHours:
    days = ("mon", "tue", "wed", "thu", "fri")
    return BusinessHours.model_validate(
        {"time_zone": "UTC", "intervals": [{"day": d, "start": start, "end": end} for d in days], **more}
    )


def snapshot(business_hours: BusinessHours | None, away: str | None = AWAY) -> ChannelSnapshot:
    return channel().model_copy(update={"business_hours": business_hours, "away_message": away})


CLOSED = snapshot(hours("13:00", "17:00"))  # T0 is an hour before opening
OPEN = snapshot(hours("09:00", "17:00"))


def at(n: int, minutes: float, **update: Any) -> MessageReceived:
    return message(n, at=T0 + timedelta(minutes=minutes)).model_copy(update=update)


def due(events: list[ConversationEvent]) -> list[ConversationAwayMessageDue]:
    return [e for e in events if isinstance(e, ConversationAwayMessageDue)]


def receive(conversation: Conversation, m: MessageReceived, snap: ChannelSnapshot) -> list[ConversationEvent]:
    return conversation.receive(m, away=away_message_for(snap, m.provider_timestamp))


# --- when it is due ---------------------------------------------------------------------------------


def test_a_message_out_of_hours_asks_for_the_away_message_once_per_closed_period() -> None:
    c = Conversation.open(at(1, 0))
    [first] = due(receive(c, at(1, 0), CLOSED))
    assert (first.text, first.message_event_id) == (AWAY, at(1, 0).event_id)
    assert first.opens_at == T0 + timedelta(hours=1)
    assert first.closed_since == T0 - timedelta(hours=19)  # Tuesday 17:00
    assert due(receive(c, at(2, 20), CLOSED)) == []  # the same closed period
    assert due(receive(c, at(3, 90), CLOSED)) == []  # 13:30: open
    [again] = due(receive(c, at(4, 6 * 60), CLOSED))  # 18:00: the next closed period
    assert again.closed_since == T0 + timedelta(hours=5)


def test_a_message_in_hours_or_on_a_channel_without_a_schedule_or_away_text_asks_for_none() -> None:
    for snap in (OPEN, snapshot(None), snapshot(hours("13:00", "17:00"), away=None)):
        c = Conversation.open(at(1, 0))
        assert due(receive(c, at(1, 0), snap)) == []


def test_a_redelivered_message_asks_again_for_nothing() -> None:
    c = Conversation.open(at(1, 0))
    first = receive(c, at(1, 0), CLOSED)
    assert receive(c, at(1, 0), CLOSED) == first  # the same cause: the same events, no new one
    assert len(due(first)) == 1


def test_comments_reactions_and_standby_messages_get_no_away_message() -> None:
    comment = at(1, 0, kind=MessageKind.COMMENT, conversation_key="post:1")
    reaction = at(2, 0, kind=MessageKind.REACTION)
    for m in (comment, reaction):
        c = Conversation.open(m)
        assert due(receive(c, m, CLOSED)) == []
    c = Conversation.open(at(3, 0))
    assert due(receive(c, at(3, 0, standby=True), CLOSED)) == []  # another app answers this thread


def test_a_schedule_with_no_hours_is_one_closed_period() -> None:
    never = snapshot(BusinessHours(time_zone="UTC"))
    c = Conversation.open(at(1, 0))
    [first] = due(receive(c, at(1, 0), never))
    assert (first.closed_since, first.opens_at) == (None, None)
    assert due(receive(c, at(2, 3 * 24 * 60), never)) == []


def test_the_period_answered_is_kept_with_the_conversation() -> None:
    c = Conversation.open(at(1, 0))
    receive(c, at(1, 0), CLOSED)
    stored = Conversation.from_document(c.to_document())
    assert due(receive(stored, at(2, 20), CLOSED)) == []


async def test_the_service_reads_the_channel_from_its_read_model() -> None:
    published: list[ConversationEvent] = []

    async def publish(event: ConversationEvent) -> None:
        published.append(event)

    channels = {CLOSED.channel_id: CLOSED}
    service = ConversationService(FakeRepository(), publish, lambda: T0, channel_of=channels.get)
    await service.on_messages([at(1, 0), at(2, 5)])
    await service.on_message(at(3, 10))
    assert [e.message_event_id for e in due(published)] == [at(1, 0).event_id]


# --- policy sends it ---------------------------------------------------------------------------------


def away_due(text: str = AWAY) -> ConversationAwayMessageDue:
    return ConversationAwayMessageDue(
        event_id="cev_away",
        conversation_id="conv_1",
        tenant_id="ten_acme",
        channel_id="chn_1",
        sequence=3,
        occurred_at=T0,
        message_event_id="msg_conv_1_1",
        text=text,
    )


async def test_policy_sends_the_away_message_as_an_automations_reply_once() -> None:
    h = Harness()
    await h.service.on_inbound(message(1))
    outcome = await h.service.send_away_message(away_due())
    assert outcome.decision.approved
    [requested], [approved] = h.of(ReplyRequested), h.of(ReplyApproved)
    assert (requested.sender_type, requested.requested_by, requested.text) == (
        SenderType.AUTOMATED,
        AWAY_MESSAGE_REQUESTER,
        AWAY,
    )
    assert approved.agent_id is None
    again = await h.service.send_away_message(away_due())  # the event redelivered
    assert again.reply_id == outcome.reply_id
    assert len(h.of(ReplyApproved)) == 1


async def test_policy_applies_its_rules_to_the_away_message() -> None:
    h = Harness()
    await h.service.on_inbound(message(1))
    outcome = await h.service.send_away_message(away_due("x" * 2001))  # Messenger's text limit: 2,000
    assert not outcome.decision.approved
    [rejected] = h.of(ReplyRejected)
    assert [r.code for r in rejected.reasons] == ["TOO_LONG"]


async def test_an_away_message_for_a_conversation_policy_has_not_seen_yet_is_tried_again() -> None:
    h = Harness()
    with pytest.raises(ConversationNotYetKnown):
        await h.service.send_away_message(away_due())


def test_the_message_content_of_a_deleted_message_asks_for_nothing() -> None:
    deleted = at(1, 0, content=Content(text=None, deleted=True))
    c = Conversation.open(deleted)
    assert due(receive(c, deleted, CLOSED)) == []
