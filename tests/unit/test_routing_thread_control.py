"""Thread control (Conversation Routing): routing's view of whether Parley answers a thread."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from parley_events import (
    ConversationEvent,
    ConversationMessageAdded,
    ConversationThreadControlChanged,
    Direction,
    HandoverReceived,
    MessageReceived,
    Provider,
    ThreadControlAction,
    ThreadControlReason,
    ThreadControlReleased,
    ThreadControlTaken,
)
from parley_routing.domain.model import Conversation
from parley_routing.service import ConversationService

from tests.support.fakes.routing import FakeRepository
from tests.unit.factories import CUSTOMER_ID, PAGE_ID, T0, message

pytestmark = pytest.mark.unit

PAGE_INBOX = "263902037430900"
PARLEY_APP = "540118273645091"


def standby(n: int, *, direction: Direction = Direction.INBOUND) -> MessageReceived:
    return message(n, direction=direction).model_copy(update={"standby": True})


def delivered(n: int, *, direction: Direction = Direction.INBOUND) -> MessageReceived:
    """A message the provider delivered to the thread's active responder (Meta's messaging list)."""
    return message(n, direction=direction).model_copy(update={"standby": False})


def handover(
    n: int, action: ThreadControlAction, parley_active: bool | None, *, at: datetime | None = None
) -> HandoverReceived:
    return HandoverReceived(
        event_id=f"hnd_{n}",
        tenant_id="ten_acme",
        channel_id="chn_1",
        provider=Provider.MESSENGER,
        account_id=PAGE_ID,
        conversation_id="conv_1",
        conversation_key=f"dm:{CUSTOMER_ID}",
        action=action,
        parley_active=parley_active,
        new_owner_app_id=PARLEY_APP if parley_active else PAGE_INBOX,
        provider_timestamp=at if at is not None else T0 + timedelta(seconds=n),
        delivery_id=f"delivery_h{n}",
    )


def changes(events: list[ConversationEvent]) -> list[ConversationThreadControlChanged]:
    return [e for e in events if isinstance(e, ConversationThreadControlChanged)]


def opened() -> Conversation:
    conversation = Conversation.open(message(1))
    conversation.receive(message(1))
    return conversation


def test_parley_answers_a_thread_until_a_provider_says_otherwise() -> None:
    assert opened().parley_active is True


def test_a_standby_message_is_history_marked_standby_and_hands_the_thread_to_another_app() -> None:
    conversation = opened()

    events = conversation.receive(standby(2))

    [added] = [e for e in events if isinstance(e, ConversationMessageAdded)]
    assert added.standby is True
    assert added.content.text == "message 2"
    [change] = changes(events)
    assert change.parley_active is False
    assert change.reason is ThreadControlReason.STANDBY_MESSAGE
    assert conversation.parley_active is False


def test_further_standby_messages_announce_nothing_new() -> None:
    conversation = opened()
    conversation.receive(standby(2))

    events = conversation.receive(standby(3))

    assert changes(events) == []
    assert len([e for e in events if isinstance(e, ConversationMessageAdded)]) == 1


def test_a_customer_message_delivered_to_parley_gives_it_the_thread_back() -> None:
    conversation = opened()
    conversation.receive(standby(2))

    [change] = changes(conversation.receive(delivered(3)))

    assert change.parley_active is True
    assert change.reason is ThreadControlReason.MESSAGE
    assert conversation.parley_active is True


def test_a_message_whose_provider_says_nothing_of_thread_control_decides_nothing() -> None:
    conversation = opened()
    conversation.receive(standby(2))

    assert changes(conversation.receive(message(3))) == []  # standby None: WhatsApp, X
    assert conversation.parley_active is False


def test_an_echo_delivered_to_parley_does_not_decide_who_answers() -> None:
    conversation = opened()
    conversation.receive(standby(2))

    assert changes(conversation.receive(delivered(3, direction=Direction.OUTBOUND))) == []
    assert conversation.parley_active is False


def test_a_thread_taken_from_parley_and_passed_back() -> None:
    conversation = opened()

    [taken] = changes(conversation.handover(handover(2, ThreadControlAction.TAKE, False)))
    assert taken.parley_active is False
    assert taken.reason is ThreadControlReason.TAKEN
    assert taken.active_app_id == PAGE_INBOX
    assert conversation.active_app_id == PAGE_INBOX

    [passed] = changes(conversation.handover(handover(3, ThreadControlAction.PASS, True)))
    assert passed.parley_active is True
    assert passed.reason is ThreadControlReason.PASSED
    assert passed.active_app_id == PARLEY_APP
    assert passed.sequence == taken.sequence + 1


def test_a_request_for_the_thread_changes_nothing() -> None:
    conversation = opened()

    assert conversation.handover(handover(2, ThreadControlAction.REQUEST, None)) == []
    assert conversation.parley_active is True


def test_a_handover_applied_twice_announces_once() -> None:
    conversation = opened()
    first = conversation.handover(handover(2, ThreadControlAction.TAKE, False))

    again = conversation.handover(handover(2, ThreadControlAction.TAKE, False))

    assert again == first
    assert conversation.sequence == first[-1].sequence


def test_a_signal_older_than_the_last_change_is_ignored() -> None:
    conversation = opened()
    conversation.handover(handover(10, ThreadControlAction.TAKE, False))

    # a customer message sent before the take, delivered late, is recorded but decides nothing
    events = conversation.receive(delivered(5))

    assert changes(events) == []
    assert [e for e in events if isinstance(e, ConversationMessageAdded)]
    assert conversation.parley_active is False


def test_an_agent_take_and_release_name_the_agent() -> None:
    conversation = opened()
    conversation.receive(standby(2))
    at = T0 + timedelta(minutes=5)

    [took] = changes(conversation.change_thread_control(True, "agent_a", "cmd:take", at))
    [released] = changes(conversation.change_thread_control(False, "agent_a", "cmd:release", at))

    assert (took.parley_active, took.reason, took.actor_id) == (
        True,
        ThreadControlReason.AGENT_TAKE,
        "agent_a",
    )
    assert (released.parley_active, released.reason) == (False, ThreadControlReason.AGENT_RELEASE)
    assert conversation.change_thread_control(False, "agent_a", "cmd:release", at) == [released]


def test_thread_control_survives_the_document() -> None:
    conversation = opened()
    conversation.handover(handover(2, ThreadControlAction.TAKE, False))

    again = Conversation.from_document(conversation.to_document())

    assert again.parley_active is False
    assert again.active_app_id == PAGE_INBOX
    assert again.thread_control_at == T0 + timedelta(seconds=2)


def test_a_document_written_before_thread_control_means_parley_answers() -> None:
    doc = opened().to_document()
    for key in ("parley_active", "active_app_id", "thread_control_at"):
        del doc[key]

    assert Conversation.from_document(doc).parley_active is True


async def test_a_batch_applies_messages_and_handovers_in_order_and_skips_unknown_threads() -> None:
    repository = FakeRepository()
    published: list[ConversationEvent] = []

    async def publish(event: ConversationEvent) -> None:
        published.append(event)

    service = ConversationService(repository, publish)
    unknown = handover(1, ThreadControlAction.PASS, True).model_copy(update={"conversation_id": "conv_9"})

    await service.on_messages([unknown, message(1), standby(2), handover(3, ThreadControlAction.PASS, True)])

    assert [(e.parley_active, e.reason) for e in changes(published)] == [
        (False, ThreadControlReason.STANDBY_MESSAGE),
        (True, ThreadControlReason.PASSED),
    ]
    assert await repository.get("conv_9") is None
    stored = await repository.get("conv_1")
    assert stored is not None and stored.parley_active is True


async def test_an_agents_take_and_release_through_policy_reach_the_conversation() -> None:
    repository = FakeRepository()
    published: list[ConversationEvent] = []

    async def publish(event: ConversationEvent) -> None:
        published.append(event)

    service = ConversationService(repository, publish)
    await service.on_messages([message(1), standby(2)])
    base = {
        "conversation_id": "conv_1",
        "tenant_id": "ten_acme",
        "channel_id": "chn_1",
        "provider": Provider.MESSENGER,
        "actor_id": "ana",
    }
    taken = ThreadControlTaken(event_id="thc_1", occurred_at=T0 + timedelta(minutes=1), **base)
    released = ThreadControlReleased(event_id="thc_2", occurred_at=T0 + timedelta(minutes=2), **base)

    await service.on_thread_control_call(taken, parley_active=True)
    await service.on_thread_control_call(taken, parley_active=True)  # redelivered
    await service.on_thread_control_call(released, parley_active=False)

    assert [(e.parley_active, e.reason, e.actor_id) for e in changes(published)][1:] == [
        (True, ThreadControlReason.AGENT_TAKE, "ana"),
        (False, ThreadControlReason.AGENT_RELEASE, "ana"),
    ]
    unknown = taken.model_copy(update={"conversation_id": "conv_9"})
    assert await service.on_thread_control_call(unknown, parley_active=True) == []
