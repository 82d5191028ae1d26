"""The channel directory attributes an account only to the channel that claims it, whatever the order.

The directory is rebuilt from a compacted topic of several partitions keyed by channel id: records
of one channel arrive in order, records of different channels in any interleaving. These tests
feed the records straight to ``apply`` (no broker) in every order.
"""

from __future__ import annotations

import itertools

from parley_events import ChannelSnapshot, ChannelStatus, Provider
from parley_shared.channels import KafkaChannelDirectory

PAGE = "104512345678901"
WABA = "waba-1"


def snap(
    channel_id: str,
    tenant_id: str,
    revision: int,
    status: ChannelStatus = ChannelStatus.ACTIVE,
    *,
    account_id: str = PAGE,
    provider: Provider = Provider.MESSENGER,
    business_account_id: str | None = None,
    display_name: str | None = None,
) -> ChannelSnapshot:
    return ChannelSnapshot(
        channel_id=channel_id,
        tenant_id=tenant_id,
        provider=provider,
        account_id=account_id,
        status=status,
        revision=revision,
        business_account_id=business_account_id,
        display_name=display_name,
    )


def record(snapshot: ChannelSnapshot) -> tuple[bytes, bytes]:
    return snapshot.channel_id.encode(), snapshot.model_dump_json().encode()


def directory_of(records: list[tuple[bytes, bytes | None]]) -> KafkaChannelDirectory:
    directory = KafkaChannelDirectory("127.0.0.1:1", "unused")  # never started: no broker
    for key, value in records:
        directory.apply(key, value)
    return directory


def interleavings(*streams: list[ChannelSnapshot]) -> list[list[ChannelSnapshot]]:
    """Every merge of the streams that keeps each stream's own order (one partition each)."""
    if not any(streams):
        return [[]]
    merged: list[list[ChannelSnapshot]] = []
    for i, stream in enumerate(streams):
        if stream:
            rest = [*streams[:i], stream[1:], *streams[i + 1 :]]
            merged += [[stream[0], *tail] for tail in interleavings(*rest)]
    return merged


# tenant A connects P, disconnects it, then edits its dead channel (a snapshot that still says
# disconnected); tenant B connects P in between
TENANT_A = [
    snap("ch_a", "ten_a", 1),
    snap("ch_a", "ten_a", 2, ChannelStatus.DISCONNECTED),
    snap("ch_a", "ten_a", 3, ChannelStatus.DISCONNECTED, display_name="edited after the disconnect"),
]
TENANT_B = [snap("ch_b", "ten_b", 1), snap("ch_b", "ten_b", 2, display_name="Acme")]


def test_after_a_reconnect_elsewhere_the_account_belongs_to_the_new_tenant_in_every_read_order() -> None:
    orders = interleavings(TENANT_A, TENANT_B)
    assert len(orders) == 10
    for order in orders:
        found = directory_of([record(s) for s in order]).lookup(Provider.MESSENGER, PAGE)
        assert found is not None and found.channel_id == "ch_b", [(s.channel_id, s.revision) for s in order]


def test_after_compaction_any_order_of_the_latest_snapshots_gives_the_same_answer() -> None:
    latest = [TENANT_A[-1], TENANT_B[-1]]
    for order in itertools.permutations(latest):
        directory = directory_of([record(s) for s in order])
        found = directory.lookup(Provider.MESSENGER, PAGE)
        assert found is not None and found.tenant_id == "ten_b"
        # the disconnected channel is still known by id (its conversations exist), it just claims nothing
        assert directory.by_id["ch_a"].status is ChannelStatus.DISCONNECTED


def test_a_disconnected_snapshot_claims_nothing_and_withdraws_its_channel() -> None:
    directory = directory_of([record(snap("ch_a", "ten_a", 1))])
    assert directory.lookup(Provider.MESSENGER, PAGE) is not None
    directory.apply(*record(snap("ch_a", "ten_a", 2, ChannelStatus.DISCONNECTED)))
    assert directory.lookup(Provider.MESSENGER, PAGE) is None
    # an older revision read late changes nothing
    directory.apply(*record(snap("ch_a", "ten_a", 1)))
    assert directory.lookup(Provider.MESSENGER, PAGE) is None
    assert directory_of([record(snap("ch_x", "ten_x", 5, ChannelStatus.DISCONNECTED))]).size() == 1
    assert (
        directory_of([record(snap("ch_x", "ten_x", 5, ChannelStatus.DISCONNECTED))]).lookup(
            Provider.MESSENGER, PAGE
        )
        is None
    )


def test_a_pending_channel_claims_nothing_and_one_waiting_for_a_reconnect_keeps_its_account() -> None:
    assert (
        directory_of([record(snap("ch_a", "ten_a", 1, ChannelStatus.PENDING))]).lookup(
            Provider.MESSENGER, PAGE
        )
        is None
    )
    found = directory_of([record(snap("ch_a", "ten_a", 2, ChannelStatus.REAUTH_REQUIRED))]).lookup(
        Provider.MESSENGER, PAGE
    )
    assert found is not None and found.channel_id == "ch_a"


def test_two_tenants_claiming_one_account_are_attributed_nothing_until_one_lets_go() -> None:
    for order in itertools.permutations([snap("ch_a", "ten_a", 1), snap("ch_b", "ten_b", 1)]):
        directory = directory_of([record(s) for s in order])
        assert directory.lookup(Provider.MESSENGER, PAGE) is None
        directory.apply(*record(snap("ch_a", "ten_a", 2, ChannelStatus.DISCONNECTED)))
        found = directory.lookup(Provider.MESSENGER, PAGE)
        assert found is not None and found.channel_id == "ch_b"


def test_a_tombstone_withdraws_the_channel() -> None:
    directory = directory_of([record(snap("ch_a", "ten_a", 1)), (b"ch_a", None)])
    assert directory.lookup(Provider.MESSENGER, PAGE) is None
    assert "ch_a" not in directory.by_id


def test_business_accounts_follow_the_same_rule() -> None:
    def number(channel_id: str, tenant: str, revision: int, status: ChannelStatus) -> ChannelSnapshot:
        return snap(
            channel_id,
            tenant,
            revision,
            status,
            provider=Provider.WHATSAPP,
            account_id=f"phone-{channel_id}",
            business_account_id=WABA,
        )

    old = [
        number("ch_a", "ten_a", 1, ChannelStatus.ACTIVE),
        number("ch_a", "ten_a", 2, ChannelStatus.DISCONNECTED),
    ]
    new = [number("ch_b", "ten_b", 1, ChannelStatus.ACTIVE)]
    for order in interleavings(old, new):
        found = directory_of([record(s) for s in order]).lookup_business(Provider.WHATSAPP, WABA)
        assert found is not None and found.tenant_id == "ten_b"
    # two numbers of one tenant in one WABA: that tenant, whichever number answers
    same_tenant = [
        number("ch_b", "ten_b", 1, ChannelStatus.ACTIVE),
        number("ch_c", "ten_b", 1, ChannelStatus.ACTIVE),
    ]
    for order in itertools.permutations(same_tenant):
        found = directory_of([record(s) for s in order]).lookup_business(Provider.WHATSAPP, WABA)
        assert found is not None and found.channel_id == "ch_b"
