"""WhatsApp's throughput per number: the rule, and policy enforcing each number's own rate."""

from __future__ import annotations

from datetime import timedelta

import pytest
from parley_events import ChannelRole, ChannelSnapshot, ChannelStatus, Provider
from parley_policy.domain.decision import ReplyRequest
from parley_policy.domain.rules import account_send_rate
from parley_policy.service import PolicyService
from parley_providers.whatsapp.rules import throughput_per_s

from tests.support.fakes.policy import FakePolicyStore
from tests.unit.factories import T0, channel, message

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("level", "coexistence", "rate"),
    [
        (None, False, 80),  # not read yet: the default
        ("STANDARD", False, 80),
        ("HIGH", False, 1000),  # Meta's automatic upgrade
        ("high", False, 1000),
        ("SOMETHING_NEW", False, 80),  # a level Parley does not know keeps the default
        (None, True, 20),  # coexistence with the WhatsApp Business app
        ("HIGH", True, 20),  # coexistence fixes the rate whatever the level
    ],
)
def test_a_numbers_throughput_follows_its_level_and_coexistence(
    level: str | None, coexistence: bool, rate: int
) -> None:
    assert throughput_per_s(level, coexistence) == rate


def whatsapp_number(channel_id: str, level: str | None = None, coexistence: bool = False) -> ChannelSnapshot:
    return channel(channel_id=channel_id, account_id=f"pn-{channel_id}").model_copy(
        update={
            "provider": Provider.WHATSAPP,
            "status": ChannelStatus.ACTIVE,
            "throughput_level": level,
            "coexistence": coexistence,
        }
    )


def test_policy_reads_the_rate_from_the_channel_and_a_ceiling_only_lowers_it() -> None:
    assert account_send_rate(Provider.WHATSAPP, "direct", whatsapp_number("a")) == 80
    assert account_send_rate(Provider.WHATSAPP, "direct", whatsapp_number("b", "HIGH")) == 1000
    assert account_send_rate(Provider.WHATSAPP, "direct", whatsapp_number("c", "HIGH", True)) == 20
    assert account_send_rate(Provider.WHATSAPP, "direct", None) == 80  # channel unknown: the row's
    assert account_send_rate(Provider.WHATSAPP, "direct", whatsapp_number("d", "HIGH"), ceiling=200) == 200
    assert account_send_rate(Provider.WHATSAPP, "direct", whatsapp_number("e", None, True), ceiling=200) == 20
    # other providers keep their rows' rates; the channel's WhatsApp fields mean nothing to them
    assert account_send_rate(Provider.INSTAGRAM, "direct", channel()) == 300


async def test_each_number_is_held_to_its_own_rate_within_a_second() -> None:
    numbers = {
        "chn_coex": whatsapp_number("chn_coex", "STANDARD", coexistence=True),
        "chn_std": whatsapp_number("chn_std", "STANDARD"),
    }
    now = T0 + timedelta(minutes=5)

    async def publish(_event: object, _event_id: str) -> None:
        return None

    service = PolicyService(
        FakePolicyStore(),
        numbers.get,
        lambda *_: ChannelRole.CONTRIBUTOR,
        lambda _cid: {},
        publish,
        lambda: now,
    )
    approved: dict[str, int] = {}
    for channel_id in numbers:
        approved[channel_id] = 0
        for n in range(85):
            inbound = message(n, conversation_id=f"conv-{channel_id}-{n}").model_copy(
                update={
                    "provider": Provider.WHATSAPP,
                    "channel_id": channel_id,
                    "conversation_key": f"dm:1555000{n:04d}",
                }
            )
            await service.on_inbound(inbound)
            outcome = await service.request_reply(
                "ten_acme",
                "ana",
                False,
                inbound.conversation_id,
                ReplyRequest(text="hi"),
                f"k-{channel_id}-{n}",
            )
            approved[channel_id] += outcome.decision.approved
    # one clock second: the number in coexistence sends 20, the standard one 80, independently
    assert approved == {"chn_coex": 20, "chn_std": 80}
