"""Mark as read and the typing indicator: the Cloud API body, and policy's rules for the call."""

from __future__ import annotations

from datetime import timedelta

import pytest
from parley_events import ChannelRole, ChannelStatus, ConversationReadRequested, Provider
from parley_policy.service import (
    ConversationUnknown,
    NothingToRead,
    NotThreadOwner,
    PolicyService,
    ReadForbidden,
    ReadReceiptsUnsupported,
)
from parley_providers import ErrorKind, ProviderError
from parley_providers.base import ReadRef
from parley_providers.whatsapp.outbound import read_body

from tests.support.fakes.policy import FakePolicyStore
from tests.unit.factories import T0, channel, message

pytestmark = pytest.mark.unit

ROLES = {"ana": ChannelRole.CONTRIBUTOR, "vic": ChannelRole.VIEWER}


def test_the_read_body_names_the_message_and_asks_for_typing_only_when_wanted() -> None:
    assert read_body("wamid.A", typing=False) == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.A",
    }
    assert read_body("wamid.A", typing=True)["typing_indicator"] == {"type": "text"}


class Harness:
    def __init__(self, *, with_receipts: bool = True) -> None:
        self.store = FakePolicyStore()
        self.calls: list[tuple[str, ReadRef, bool]] = []
        snapshot = channel().model_copy(
            update={"provider": Provider.WHATSAPP, "status": ChannelStatus.ACTIVE}
        )

        async def publish(_event: object, _event_id: str) -> None:
            return None

        self.refuse_next = False

        async def send(channel_id: str, ref: ReadRef, typing: bool) -> None:
            self.calls.append((channel_id, ref, typing))
            if self.refuse_next:
                self.refuse_next = False
                raise ProviderError("whatsapp", 500, 1, None, "unavailable", ErrorKind.RETRYABLE)

        self.service = PolicyService(
            self.store,
            lambda cid: snapshot if cid == snapshot.channel_id else None,
            lambda _tenant, user, _cid: ROLES.get(user),
            lambda _cid: {},
            publish,
            lambda: T0 + timedelta(minutes=5),
            send_read_receipt=send if with_receipts else None,
        )

    async def customer_writes(self, n: int) -> None:
        await self.service.on_inbound(
            message(n).model_copy(update={"provider": Provider.WHATSAPP, "provider_message_id": f"wamid.{n}"})
        )

    async def read(self, user: str, typing: bool = False) -> str:
        return await self.service.mark_read("ten_acme", user, False, "conv_1", typing)


async def test_the_last_customer_message_is_marked_read_by_a_contributor() -> None:
    h = Harness()
    await h.customer_writes(1)
    await h.customer_writes(2)
    assert await h.read("ana", typing=True) == "wamid.2"
    assert h.calls == [("chn_1", ReadRef(Provider.WHATSAPP, message(1).account_id, "wamid.2"), True)]


async def test_viewers_strangers_and_empty_conversations_are_refused_before_the_provider() -> None:
    h = Harness()
    with pytest.raises(ConversationUnknown):
        await h.read("ana")  # policy has seen no message of it
    await h.customer_writes(1)
    with pytest.raises(ReadForbidden):
        await h.read("vic")
    with pytest.raises(ConversationUnknown):
        await h.read("stranger")
    assert h.calls == []
    unsupported = Harness(with_receipts=False)
    await unsupported.customer_writes(1)
    with pytest.raises(ReadReceiptsUnsupported):
        await unsupported.read("ana")


async def test_no_typing_where_another_responder_answers_the_thread_but_a_plain_read_goes() -> None:
    h = Harness()
    await h.customer_writes(1)
    await h.store.record_thread_control("conv_1", False, T0 + timedelta(minutes=1))
    with pytest.raises(NotThreadOwner):
        await h.read("ana", typing=True)
    assert await h.read("ana") == "wamid.1"
    assert [typing for *_, typing in h.calls] == [False]


async def test_a_conversation_with_only_a_comment_has_nothing_to_read() -> None:
    h = Harness()
    comment = message(1).model_copy(update={"provider": Provider.WHATSAPP, "kind": "comment"})
    await h.service.on_inbound(comment)
    with pytest.raises(NothingToRead):
        await h.read("ana")


# --- marked read when an agent opens the conversation (routing asks) -------------------------------


def opened(sequence: int, tenant: str = "ten_acme") -> ConversationReadRequested:
    return ConversationReadRequested(
        event_id=f"rdq_conv_1_{sequence}",
        conversation_id="conv_1",
        tenant_id=tenant,
        channel_id="chn_1",
        provider=Provider.WHATSAPP,
        requested_by="ana",
        occurred_at=T0 + timedelta(minutes=5),
    )


async def test_an_open_marks_the_last_customer_message_read_once_per_message() -> None:
    h = Harness()
    await h.customer_writes(1)
    assert await h.service.on_read_requested(opened(1)) is True
    assert await h.service.on_read_requested(opened(1)) is False  # redelivered
    assert await h.service.on_read_requested(opened(2)) is False  # opened again, nothing new
    await h.customer_writes(2)
    assert await h.service.on_read_requested(opened(3)) is True
    assert h.calls == [
        ("chn_1", ReadRef(Provider.WHATSAPP, message(1).account_id, "wamid.1"), False),
        ("chn_1", ReadRef(Provider.WHATSAPP, message(1).account_id, "wamid.2"), False),
    ]


async def test_a_refused_read_on_open_is_logged_not_raised_and_not_asked_again() -> None:
    h = Harness()
    await h.customer_writes(1)
    h.refuse_next = True
    assert await h.service.on_read_requested(opened(1)) is False
    assert await h.service.on_read_requested(opened(2)) is False  # at most once per message
    assert len(h.calls) == 1


async def test_an_open_of_a_conversation_policy_does_not_know_reads_nothing() -> None:
    h = Harness()
    assert await h.service.on_read_requested(opened(1)) is False  # no customer message seen
    await h.customer_writes(1)
    assert await h.service.on_read_requested(opened(1, tenant="ten_other")) is False
    unsupported = Harness(with_receipts=False)
    await unsupported.customer_writes(1)
    assert await unsupported.service.on_read_requested(opened(1)) is False
    assert h.calls == []
