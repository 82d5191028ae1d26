"""AgentService: what a caller of the agent API may see and do, without HTTP, broker or store."""

from __future__ import annotations

import pytest
from parley_events import (
    ChannelRole,
    ChannelSnapshot,
    ConversationEvent,
    ConversationOwnerAssigned,
    ConversationReadRequested,
    Provider,
    Queue,
)
from parley_routing.domain.access import Actor, Forbidden
from parley_routing.domain.model import Conversation
from parley_routing.service import AgentService, ConversationNotFound, ConversationService

from tests.support.fakes.routing import FakeChannelRoles, FakeRepository
from tests.unit.factories import T0, channel, message

pytestmark = pytest.mark.unit

TENANT = "ten_acme"
CHANNEL = "chn_1"
OTHER_CHANNEL = "chn_2"


class Harness:
    def __init__(self) -> None:
        self.repository = FakeRepository()
        self.published: list[ConversationEvent] = []
        self.roles = FakeChannelRoles()
        self.roles.channels = {CHANNEL: TENANT, OTHER_CHANNEL: TENANT, "chn_elsewhere": "ten_other"}

        async def publish(event: ConversationEvent) -> None:
            self.published.append(event)

        self.snapshots: dict[str, ChannelSnapshot] = {}
        self.read_requests: list[ConversationReadRequested] = []

        async def request_read(request: ConversationReadRequested) -> None:
            self.read_requests.append(request)

        self.agents = AgentService(
            ConversationService(self.repository, publish, lambda: T0),
            self.roles,
            self.snapshots.get,
            request_read,
        )

    def reads_on_open(self, on: bool, channel_id: str = CHANNEL) -> None:
        """The channel's snapshot, WhatsApp, with ``mark_read_on_open`` set as given."""
        self.snapshots[channel_id] = channel(channel_id=channel_id).model_copy(
            update={"provider": Provider.WHATSAPP, "mark_read_on_open": on}
        )

    def grant(self, user: str, role: ChannelRole, channel: str = CHANNEL) -> Actor:
        self.roles.roles[(TENANT, user, channel)] = role
        return Actor(user, TENANT)

    async def conversation(self, conversation_id: str = "conv_1", channel: str = CHANNEL) -> Conversation:
        first = message(1, conversation_id=conversation_id).model_copy(update={"channel_id": channel})
        conversation = Conversation.open(first)
        conversation.receive(first)
        await self.repository.save(conversation)
        return conversation


@pytest.fixture
def h() -> Harness:
    return Harness()


async def test_a_viewer_sees_the_conversation_with_their_role(h: Harness) -> None:
    await h.conversation()
    found = await h.agents.visible(h.grant("viewer", ChannelRole.VIEWER), "conv_1")
    assert (found.conversation.id, found.role) == ("conv_1", ChannelRole.VIEWER)


async def test_no_role_another_tenant_and_a_missing_conversation_look_the_same(h: Harness) -> None:
    await h.conversation()
    for actor, conversation_id in [
        (Actor("nobody", TENANT), "conv_1"),  # no role on the channel
        (Actor("admin", "ten_other", is_admin=True), "conv_1"),  # another tenant's administrator
        (h.grant("viewer", ChannelRole.VIEWER), "conv_missing"),
    ]:
        with pytest.raises(ConversationNotFound):
            await h.agents.visible(actor, conversation_id)


async def test_a_tenant_administrator_acts_as_supervisor_without_a_role(h: Harness) -> None:
    await h.conversation()
    found = await h.agents.visible(Actor("admin", TENANT, is_admin=True), "conv_1")
    assert found.role is ChannelRole.SUPERVISOR


async def test_the_list_holds_only_channels_the_caller_has_a_role_on(h: Harness) -> None:
    await h.conversation("conv_1", CHANNEL)
    await h.conversation("conv_2", OTHER_CHANNEL)
    actor = h.grant("agent", ChannelRole.CONTRIBUTOR, CHANNEL)
    page = await h.agents.list_visible(actor)
    assert [(v.conversation.id, v.role) for v in page.items] == [("conv_1", ChannelRole.CONTRIBUTOR)]
    # naming a channel without a role does not reveal it
    assert (await h.agents.list_visible(actor, channel_id=OTHER_CHANNEL)).items == []
    h.grant("agent", ChannelRole.VIEWER, OTHER_CHANNEL)
    assert {v.conversation.id for v in (await h.agents.list_visible(actor)).items} == {"conv_1", "conv_2"}


async def test_a_contributor_takes_ownership_but_cannot_give_it_to_someone_else(h: Harness) -> None:
    await h.conversation()
    contributor = h.grant("agent", ChannelRole.CONTRIBUTOR)
    h.grant("colleague", ChannelRole.CONTRIBUTOR)
    with pytest.raises(Forbidden) as refused:
        await h.agents.assign(contributor, "conv_1", "colleague", "k1")
    assert refused.value.code == "ROLE_FORBIDDEN"
    assert (await h.repository.get("conv_1")).owner_id is None  # type: ignore[union-attr]
    done = await h.agents.assign(contributor, "conv_1", "agent", "k2")
    assert done.conversation.owner_id == "agent"
    assert [type(e) for e in done.events] == [ConversationOwnerAssigned]
    assert h.published[-1] == done.events[-1]


async def test_only_someone_who_can_reply_can_be_made_owner(h: Harness) -> None:
    await h.conversation()
    supervisor = h.grant("boss", ChannelRole.SUPERVISOR)
    h.grant("viewer", ChannelRole.VIEWER)
    for target in ("viewer", "stranger"):
        with pytest.raises(Forbidden) as refused:
            await h.agents.assign(supervisor, "conv_1", target, f"k-{target}")
        assert refused.value.code == "OWNER_CANNOT_REPLY"
    h.grant("agent", ChannelRole.CONTRIBUTOR)
    assert (await h.agents.assign(supervisor, "conv_1", "agent", "k")).conversation.owner_id == "agent"


async def test_a_contributor_clears_only_their_own_ownership(h: Harness) -> None:
    await h.conversation()
    supervisor = h.grant("boss", ChannelRole.SUPERVISOR)
    h.grant("agent", ChannelRole.CONTRIBUTOR)
    other = h.grant("other", ChannelRole.CONTRIBUTOR)
    await h.agents.assign(supervisor, "conv_1", "agent", "k1")
    with pytest.raises(Forbidden):
        await h.agents.unassign(other, "conv_1", "k2")
    assert (await h.agents.unassign(Actor("agent", TENANT), "conv_1", "k3")).conversation.owner_id is None


async def test_a_viewer_moves_labels_and_notes_and_a_repeated_key_changes_nothing(h: Harness) -> None:
    await h.conversation()
    viewer = h.grant("viewer", ChannelRole.VIEWER)
    moved = await h.agents.move(viewer, "conv_1", Queue.PENDING, "same-key")
    assert moved.conversation.queue is Queue.PENDING and moved.events
    published = len(h.published)
    again = await h.agents.move(viewer, "conv_1", Queue.PENDING, "same-key")
    assert again.events == moved.events  # the first answer again, and nothing new published
    assert len(h.published) == published
    tagged = await h.agents.change_labels(viewer, "conv_1", "tags", ["vip"], [], "k-tag")
    assert tagged.conversation.tags == ["vip"]
    noted = await h.agents.add_note(viewer, "conv_1", "call back", "k-note")
    assert noted.conversation.note_count == 1
    _found, notes = await h.agents.notes(viewer, "conv_1")
    assert [n.text for n in notes] == ["call back"]


async def test_commands_on_an_invisible_conversation_change_nothing(h: Harness) -> None:
    await h.conversation()
    before = await h.repository.get("conv_1")
    with pytest.raises(ConversationNotFound):
        await h.agents.move(Actor("nobody", TENANT), "conv_1", Queue.RESOLVED, "k")
    assert (await h.repository.get("conv_1")) == before
    assert h.published == []


# --- marking the customer's message read when an agent opens the conversation ------------------


async def test_a_contributor_opening_a_conversation_asks_for_its_read_once_per_state(h: Harness) -> None:
    conversation = await h.conversation()
    h.reads_on_open(True)
    agent = h.grant("ana", ChannelRole.CONTRIBUTOR)

    found, history, _ = await h.agents.open(agent, "conv_1")
    await h.agents.open(agent, "conv_1")  # the tool opens it again: nothing new to read

    assert found.conversation.id == "conv_1" and history == []  # the fake keeps no history
    [request] = h.read_requests
    assert (request.conversation_id, request.channel_id, request.requested_by, request.tenant_id) == (
        "conv_1",
        CHANNEL,
        "ana",
        TENANT,
    )
    assert request.event_id == f"rdq_conv_1_{conversation.sequence}"

    second = message(2).model_copy(update={"channel_id": CHANNEL})
    stored = await h.repository.get("conv_1")
    assert stored is not None
    stored.receive(second)  # the customer wrote again
    await h.repository.save(stored)
    await h.agents.open(agent, "conv_1")
    assert len(h.read_requests) == 2 and h.read_requests[1].event_id != request.event_id


async def test_a_viewer_opening_it_or_a_channel_with_the_setting_off_asks_nothing(h: Harness) -> None:
    await h.conversation()
    h.reads_on_open(True)
    await h.agents.open(h.grant("vic", ChannelRole.VIEWER), "conv_1")
    h.reads_on_open(False)
    await h.agents.open(h.grant("ana", ChannelRole.CONTRIBUTOR), "conv_1")
    assert h.read_requests == []


async def test_reading_a_conversation_never_asks_for_its_read(h: Harness) -> None:
    await h.conversation()
    h.reads_on_open(True)
    await h.agents.detail(h.grant("ana", ChannelRole.CONTRIBUTOR), "conv_1")  # the GET
    assert h.read_requests == []


async def test_opening_a_conversation_the_caller_may_not_see_is_not_found_and_asks_nothing(
    h: Harness,
) -> None:
    await h.conversation()
    h.reads_on_open(True)
    with pytest.raises(ConversationNotFound):
        await h.agents.open(Actor("nobody", TENANT), "conv_1")
    assert h.read_requests == []


async def test_a_conversation_s_history_never_runs_ahead_of_its_state(h: Harness) -> None:
    conversation = await h.conversation()
    # a change committed between the state's read and the history's: its entries are left for the
    # next read, so an agent never sees an owner assigned in the history and none on the conversation
    stale = await h.repository.get("conv_1")
    assert stale is not None
    newer = Conversation.from_document(stale.to_document())
    newer.receive(message(2).model_copy(update={"channel_id": CHANNEL}))
    await h.repository.record_history(newer.unpublished())
    found, history, _notes = await h.agents.detail(h.grant("ana", ChannelRole.CONTRIBUTOR), "conv_1")
    assert found.conversation.sequence == conversation.sequence
    assert history and max(entry["sequence"] for entry in history) == conversation.sequence
