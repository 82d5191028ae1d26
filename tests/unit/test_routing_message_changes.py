"""Routing applies edits and removals (Page feed comments) to the messages it received: the edited
text replaces the shown one under the message's own id, a removed message stays marked deleted, and
a change of a message routing never received is acknowledged and counted, changing nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from parley_events import (
    Author,
    ChannelRole,
    ConversationEvent,
    ConversationMessageAdded,
    ConversationMessageDeleted,
    ConversationMessageEdited,
    MessageDeleted,
    MessageEdited,
    MessageKind,
)
from parley_routing.domain.access import Actor
from parley_routing.domain.model import Conversation, shown_history
from parley_routing.service import AgentService, ConversationService
from prometheus_client import REGISTRY

from tests.support.fakes.routing import FakeChannelRoles, FakeRepository
from tests.unit.factories import T0, message

pytestmark = pytest.mark.unit

TENANT, CHANNEL = "ten_acme", "chn_1"


def edited(n: int, text: str, *, minutes: int = 5, conversation_id: str = "conv_1") -> MessageEdited:
    return MessageEdited(
        event_id=f"edt_{n}_{minutes}",
        tenant_id=TENANT,
        channel_id=CHANNEL,
        provider=message(n).provider,
        account_id=message(n).account_id,
        conversation_id=conversation_id,
        conversation_key=message(n).conversation_key,
        provider_message_id=f"m_{n}",
        message_event_id=f"msg_conv_1_{n}",
        author=Author(id="7654321098765432"),
        kind=MessageKind.COMMENT,
        provider_timestamp=T0 + timedelta(minutes=minutes),
        delivery_id=f"d_edit_{n}_{minutes}",
        text=text,
    )


def deleted(n: int, *, conversation_id: str = "conv_1") -> MessageDeleted:
    return MessageDeleted(
        event_id=f"del_{n}",
        tenant_id=TENANT,
        channel_id=CHANNEL,
        provider=message(n).provider,
        account_id=message(n).account_id,
        conversation_id=conversation_id,
        conversation_key=message(n).conversation_key,
        provider_message_id=f"m_{n}",
        message_event_id=f"msg_conv_1_{n}",
        provider_timestamp=T0 + timedelta(minutes=30),
        delivery_id=f"d_del_{n}",
    )


def unknown_changes(action: str) -> float:
    labels = {"provider": "messenger", "action": action}
    return REGISTRY.get_sample_value("parley_routing_changes_of_unknown_messages_total", labels) or 0.0


class Harness:
    def __init__(self) -> None:
        self.repository = FakeRepository()
        self.published: list[ConversationEvent] = []
        roles = FakeChannelRoles()
        roles.channels = {CHANNEL: TENANT}
        roles.roles[(TENANT, "agent", CHANNEL)] = ChannelRole.VIEWER

        async def publish(event: ConversationEvent) -> None:
            self.published.append(event)

        self.service = ConversationService(self.repository, publish, lambda: T0)
        self.agents = AgentService(self.service, roles)


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_an_edit_of_a_received_message_keeps_its_id_and_carries_the_new_text() -> None:
    conversation = Conversation.open(message(1))
    conversation.receive(message(1, text="size 38?"))

    [event] = conversation.change_message(edited(1, "size 37?"), known=True)

    assert isinstance(event, ConversationMessageEdited)
    assert (event.message_event_id, event.provider_message_id, event.text) == (
        "msg_conv_1_1",
        "m_1",
        "size 37?",
    )
    assert event.sequence == conversation.sequence == 3  # created, added, edited
    assert conversation.change_message(edited(1, "size 37?"), known=True) == [event]  # idempotent


def test_a_change_of_a_message_never_received_changes_nothing() -> None:
    conversation = Conversation.open(message(1))
    conversation.receive(message(1))

    assert conversation.change_message(deleted(9), known=False) == []
    assert conversation.sequence == 2


async def test_the_history_shows_the_edited_text_then_marks_the_removed_message(h: Harness) -> None:
    await h.service.on_messages([message(1, text="Are these back in size 38?"), message(2, text="thanks")])
    await h.service.on_messages([edited(1, "Are these back in size 37?")])
    await h.service.on_messages([deleted(1)])

    _, history, _ = await h.agents.detail(Actor("agent", TENANT), "conv_1")

    added = [e for e in history if e["type"] == ConversationMessageAdded.event_type]
    assert [e["message_event_id"] for e in added] == ["msg_conv_1_1", "msg_conv_1_2"]  # nothing dropped
    first, second = added
    assert first["content"]["text"] == "Are these back in size 37?"
    assert first["content"]["deleted"] is True
    assert first["edited_at"] and first["deleted_at"]
    assert second["content"] == {**second["content"], "text": "thanks", "deleted": False}
    assert "edited_at" not in second
    assert [e["type"] for e in history][-2:] == [
        ConversationMessageEdited.event_type,
        ConversationMessageDeleted.event_type,
    ]
    assert [type(e) for e in h.published][-2:] == [ConversationMessageEdited, ConversationMessageDeleted]


async def test_the_last_edit_is_the_text_shown(h: Harness) -> None:
    await h.service.on_messages([message(1, text="v1")])
    await h.service.on_messages([edited(1, "v2", minutes=5), edited(1, "v3", minutes=9)])

    _, history, _ = await h.agents.detail(Actor("agent", TENANT), "conv_1")

    assert history[1]["content"]["text"] == "v3"


async def test_an_edit_in_the_same_batch_as_its_message_applies(h: Harness) -> None:
    await h.service.on_messages([message(1, text="v1"), edited(1, "v2")])

    assert [type(e) for e in h.published] == [
        type(h.published[0]),
        ConversationMessageAdded,
        ConversationMessageEdited,
    ]


async def test_a_message_the_document_forgot_is_still_known_through_the_store(h: Harness) -> None:
    await h.service.on_messages([message(1)])
    stored = await h.repository.get("conv_1")
    assert stored is not None
    stored.seen_messages.clear()  # remembered by the store's seen ids only (an older message)
    await h.repository.save(stored)

    await h.service.on_messages([deleted(1)])

    assert isinstance(h.published[-1], ConversationMessageDeleted)


async def test_changes_of_messages_routing_never_saw_are_acknowledged_and_counted(h: Harness) -> None:
    await h.service.on_messages([message(1)])
    before_edit, before_delete = unknown_changes("edited"), unknown_changes("deleted")
    published = len(h.published)

    # a comment written before the channel was connected; a change on a thread routing never saw
    await h.service.on_messages([edited(7, "older comment, edited")])
    await h.service.on_messages([deleted(8, conversation_id="conv_unknown")])
    await h.service.on_messages([deleted(8, conversation_id="conv_unknown")])  # redelivered

    assert len(h.published) == published
    assert await h.repository.get("conv_unknown") is None
    assert unknown_changes("edited") == before_edit + 1
    assert unknown_changes("deleted") == before_delete + 2  # no conversation to remember it by


def test_a_history_without_changes_is_shown_as_it_is() -> None:
    history = [
        {"type": ConversationMessageAdded.event_type, "message_event_id": "m", "content": {"text": "x"}}
    ]

    assert shown_history(history) is history
