"""The normalizer's WhatsApp side over the recorded-shape fixtures: one customer, one
conversation, whichever identifier a message carries (the pure resolution of
domain/normalize/aliases.py, and the normalizer with its alias read model in memory); and the
business's messaging limit updates."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from parley_events import (
    ChannelSnapshot,
    ChannelStatus,
    CustomerAliasRecorded,
    Event,
    MessageReceived,
    MessageStatusChanged,
    MessagingLimitChanged,
    Provider,
)
from parley_ingest.adapters.aliases import KafkaCustomerAliases
from parley_ingest.domain import deliveries
from parley_ingest.domain.dedupe import RecentIds
from parley_ingest.domain.normalize import conversation_id, resolve
from parley_ingest.service import Normalizer

from tests.support import fixtures
from tests.support.aliases import empty_aliases

pytestmark = pytest.mark.unit

NOW = datetime(2024, 6, 10, 9, 0, tzinfo=UTC)
PHONE, NEW_PHONE = "15550123456", "15550199999"
BSUID, NEW_BSUID = "US.20000000000000000001", "US.20000000000000000002"
CHANNEL = ChannelSnapshot(
    channel_id="chn_wa",
    tenant_id="ten_acme",
    provider=Provider.WHATSAPP,
    account_id="900000000000101",
    status=ChannelStatus.ACTIVE,
    business_account_id="900000000000001",
    revision=1,
)
BEFORE = conversation_id("ten_acme", "chn_wa", f"dm:{PHONE}")


# --- resolution (pure) ------------------------------------------------------------------


def test_without_aliases_the_key_is_the_thread_and_nothing_is_recorded() -> None:
    assert resolve("dm:psid", (), lambda _: None) == ("dm:psid", ())


def test_a_first_message_starts_its_own_conversation_and_records_every_key_it_names() -> None:
    assert resolve("dm:p", ("dm:p", "dm:b"), lambda _: None) == ("dm:p", ("dm:p", "dm:b"))


def test_a_message_naming_a_known_key_joins_that_conversation_and_records_the_rest() -> None:
    known = {"dm:p": "dm:p", "dm:b": "dm:p"}

    assert resolve("dm:b2", ("dm:p", "dm:b", "dm:p2", "dm:b2"), known.get) == ("dm:p", ("dm:b2", "dm:p2"))
    assert resolve("dm:b", ("dm:b",), known.get) == ("dm:p", ())  # nothing new to record


def test_the_message_key_decides_before_its_other_identifiers() -> None:
    known = {"dm:p": "dm:p", "dm:b": "dm:b"}  # the customer was split before Parley knew better

    assert resolve("dm:b", ("dm:b", "dm:p"), known.get) == ("dm:b", ("dm:p",))


# --- the normalizer, with its read model in memory --------------------------------------


class Channels:
    def lookup(self, provider: Provider, account_id: str) -> ChannelSnapshot | None:
        return CHANNEL if account_id == CHANNEL.account_id else None

    def lookup_business(self, provider: Provider, business_account_id: str) -> ChannelSnapshot | None:
        return CHANNEL if business_account_id == CHANNEL.business_account_id else None

    async def catch_up(self, timeout: float) -> None:
        return None


class Harness:
    def __init__(self, aliases: KafkaCustomerAliases | None = None, *, settled: bool = False) -> None:
        self.published: list[Event] = []
        self.aliases = aliases or empty_aliases()
        self.refuse_settle = False
        self.worker = Normalizer(
            Channels(),  # type: ignore[arg-type]
            self.publish,
            0.0,
            RecentIds(100),
            self.aliases,
            clock=lambda: NOW,
            settle=self.settle if settled else None,
        )

    async def settle(self) -> None:
        if self.refuse_settle:
            raise TimeoutError("the broker did not acknowledge in time")

    async def publish(self, event: Event, event_id: str) -> None:
        self.published.append(event)

    async def deliver(self, delivery: dict[str, Any]) -> list[Event]:
        start = len(self.published)
        record = deliveries.archive_record("meta", orjson.dumps(delivery), {}, NOW, delivery)
        assert await self.worker.normalize(record) == ()
        return self.published[start:]

    async def message(self, delivery: dict[str, Any]) -> MessageReceived:
        [message] = [e for e in await self.deliver(delivery) if isinstance(e, MessageReceived)]
        return message


def load(name: str) -> dict[str, Any]:
    return fixtures.load("whatsapp", name)


def withheld(user_id: str, message_id: str) -> dict[str, Any]:
    """A message from ``user_id`` with the phone withheld."""
    delivery = load("bsuid_phone_withheld")
    value = delivery["entry"][0]["changes"][0]["value"]
    value["contacts"][0]["user_id"] = user_id
    value["messages"][0].update(from_user_id=user_id, id=message_id)
    return delivery


def from_number(phone: str, user_id: str, message_id: str) -> dict[str, Any]:
    delivery = load("username_with_phone")
    value = delivery["entry"][0]["changes"][0]["value"]
    value["contacts"][0].update(wa_id=phone, user_id=user_id)
    value["messages"][0].update({"from": phone, "from_user_id": user_id, "id": message_id})
    return delivery


async def test_a_conversation_from_before_bsuids_keeps_its_id_through_a_number_change() -> None:
    h = Harness()
    # created before Meta sent BSUIDs: a phone, nothing else (its id is the phone's, as it always was)
    first = await h.message(load("text"))
    assert first.conversation_id == BEFORE

    seen = await h.message(load("username_with_phone"))  # the same customer, now with a BSUID
    change = await h.message(load("system_user_changed_number"))
    after = await h.message(from_number(NEW_PHONE, NEW_BSUID, "wamid.AFTER0001"))
    withheld_later = await h.message(withheld(NEW_BSUID, "wamid.AFTER0002"))

    assert {m.conversation_id for m in (seen, change, after, withheld_later)} == {BEFORE}
    assert {m.conversation_key for m in (after, withheld_later)} == {f"dm:{PHONE}"}
    assert after.author.phone == NEW_PHONE  # the author keeps what the provider said
    recorded = [
        (e.alias_key, e.conversation_key) for e in h.published if isinstance(e, CustomerAliasRecorded)
    ]
    assert recorded == [
        (f"dm:{PHONE}", f"dm:{PHONE}"),
        (f"dm:{BSUID}", f"dm:{PHONE}"),
        (f"dm:{NEW_PHONE}", f"dm:{PHONE}"),
        (f"dm:{NEW_BSUID}", f"dm:{PHONE}"),
    ]


async def test_a_phone_withheld_message_joins_the_conversation_its_bsuid_was_seen_in() -> None:
    h = Harness()
    before = await h.message(load("username_with_phone"))

    later = await h.message(withheld(BSUID, "wamid.LATER0001"))

    assert later.conversation_id == before.conversation_id == BEFORE


async def test_receipts_and_echoes_to_a_changed_number_land_in_the_old_conversation() -> None:
    h = Harness()
    await h.message(load("username_with_phone"))
    await h.message(load("system_user_changed_number"))
    receipt_delivery = load("status_delivered_pricing_bsuid")
    status = receipt_delivery["entry"][0]["changes"][0]["value"]["statuses"][0]
    del status["recipient_user_id"]
    status["recipient_id"] = NEW_PHONE
    echo_delivery = load("echo_text")
    echo_delivery["entry"][0]["changes"][0]["value"]["message_echoes"][0]["to"] = f"+{NEW_PHONE}"

    [receipt] = [e for e in await h.deliver(receipt_delivery) if isinstance(e, MessageStatusChanged)]
    echo = await h.message(echo_delivery)

    assert receipt.conversation_id == echo.conversation_id == BEFORE


async def test_a_restarted_normalizer_resolves_from_the_records_it_reads_back() -> None:
    first = Harness()
    await first.message(load("username_with_phone"))
    await first.message(load("system_user_changed_number"))
    records = [e for e in first.published if isinstance(e, CustomerAliasRecorded)]

    reread = KafkaCustomerAliases("unused:9092", "parley.customer-aliases.v1")
    for record in records:  # what the topic holds, as the read model applies it
        reread.apply(record.key().encode(), record.model_dump_json().encode())
    reread.loaded.set()
    second = Harness(reread)
    after = await second.message(from_number(NEW_PHONE, NEW_BSUID, "wamid.AFTER0001"))

    assert after.conversation_id == BEFORE
    assert [e for e in second.published if isinstance(e, CustomerAliasRecorded)] == []


async def test_a_redelivered_delivery_records_nothing_new_and_keeps_its_ids() -> None:
    h = Harness()
    once = await h.deliver(load("username_with_phone"))

    again = await h.deliver(load("username_with_phone"))

    assert [type(e) for e in once] == [CustomerAliasRecorded, CustomerAliasRecorded, MessageReceived]
    assert again == []  # the message's id is a recent repeat, and its keys are known


async def test_a_business_messaging_limit_update_is_published_for_the_accounts_tenant() -> None:
    h = Harness()

    [update] = await h.deliver(load("business_capability_update"))

    assert isinstance(update, MessagingLimitChanged)
    assert (update.tenant_id, update.business_account_id, update.key()) == (
        "ten_acme",
        "900000000000001",
        "900000000000001",
    )
    assert (update.tier, update.messaging_limit) == ("TIER_2K", 2_000)


async def test_aliases_of_a_batch_the_broker_did_not_acknowledge_are_recorded_again() -> None:
    h = Harness(settled=True)
    h.refuse_settle = True
    first = await h.deliver(load("username_with_phone"))
    with pytest.raises(TimeoutError):
        await h.worker.settle()
    h.refuse_settle = False

    again = await h.deliver(load("username_with_phone"))  # the uncommitted batch, redelivered
    await h.worker.settle()
    settled = await h.deliver(load("username_with_phone"))

    assert [type(e) for e in first] == [CustomerAliasRecorded, CustomerAliasRecorded, MessageReceived]
    assert again == first  # nothing passed over as known: the topic may never have got it
    assert settled == []  # acknowledged this time, so a repeat
