"""Read models built from onboarding's compacted topics (``parley.channels.v1``, ``parley.teams.v1``).

Every process that needs channels (normalizer, routing, policy) keeps them in memory: no store
round trip per message. The reader has no consumer group: it assigns every partition, reads
from the beginning, and follows the topic. ``catch_up()`` waits until everything published
before the call has been applied, which closes the race between "channel registered" and
"first webhook for it arrives".
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from parley_events import (
    ChannelRole,
    ChannelSnapshot,
    ChannelStatus,
    Event,
    Provider,
    TeamSnapshot,
    TopicSpec,
    topics,
)

from parley_shared.access import access_of, effective_role
from parley_shared.kafka import FROM_THE_BEGINNING
from parley_shared.logging import get_logger

log = get_logger(__name__)


METADATA_ATTEMPTS = 20
METADATA_PAUSE_S = 0.5
"""How long a read model waits for its topic to appear in the metadata (10 s) before it fails."""


class CompactedTopicReader:
    """Reads a compacted topic from the beginning and follows it, applying every record."""

    name = "compacted-topic-reader"

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._task: asyncio.Task[None] | None = None
        self._progress = asyncio.Condition()
        self.loaded = asyncio.Event()

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one record (a tombstone has no value)."""
        raise NotImplementedError

    def size(self) -> int:
        return 0

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            enable_auto_commit=False,
            group_id=None,
            client_id=f"parley-{self.name}",
            auto_offset_reset=FROM_THE_BEGINNING,
        )
        await consumer.start()
        partitions = consumer.partitions_for_topic(self.topic)
        # a topic created a moment ago (topics job, a test's namespace) may not be in the broker's
        # metadata yet: ask again for a few seconds before calling it missing
        for _ in range(METADATA_ATTEMPTS):
            if partitions:
                break
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(self.topic)
            if not partitions:
                await asyncio.sleep(METADATA_PAUSE_S)
        if not partitions:
            await consumer.stop()
            raise RuntimeError(f"topic {self.topic} does not exist: run `parley topics create`")
        self._partitions = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(self._partitions)
        await consumer.seek_to_beginning(*self._partitions)
        self._consumer = consumer
        self._task = asyncio.create_task(self._follow(), name=self.name)
        await self.catch_up(timeout=60)
        self.loaded.set()
        log.info("read model loaded", reader=self.name, topic=self.topic, items=self.size())

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    self.apply(record.key, record.value)
            async with self._progress:
                self._progress.notify_all()

    async def catch_up(self, timeout: float = 5.0) -> None:
        """Return once every record published before this call has been applied."""
        assert self._consumer is not None
        ends = await self._consumer.end_offsets(self._partitions)

        async def reached() -> None:
            assert self._consumer is not None
            async with self._progress:
                while True:
                    positions = [await self._consumer.position(tp) for tp in self._partitions]
                    if all(pos >= ends[tp] for pos, tp in zip(positions, self._partitions, strict=True)):
                        return
                    if self._task is not None and self._task.done():
                        self._task.result()  # surface why following stopped
                    await self._progress.wait()

        await asyncio.wait_for(reached(), timeout=timeout)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except Exception as exc:  # following had already failed: say so, the process is stopping
                log.error("read model stopped with an error", reader=self.name, error=repr(exc))
        if self._consumer is not None:
            await self._consumer.stop()


CLAIMING_STATUSES = frozenset({ChannelStatus.ACTIVE, ChannelStatus.REAUTH_REQUIRED})
"""The statuses in which a channel holds its account: webhooks for the account are attributed to it.

A channel waiting for a reconnect keeps its account (onboarding keeps its claim, nobody else can
connect the account meanwhile); a disconnected or pending channel claims nothing."""


def claims_account(snap: ChannelSnapshot) -> bool:
    """Whether this snapshot's channel is the one webhooks for its account belong to."""
    return snap.status in CLAIMING_STATUSES


class KafkaChannelDirectory(CompactedTopicReader):
    """In-memory channels by id and by (provider, account id), fed by the channels topic.

    ``by_id`` keeps every channel, disconnected ones too (their conversations still exist). Only
    a channel whose status claims its account (:data:`CLAIMING_STATUSES`) is attributed webhooks:
    a disconnected channel's snapshot withdraws it from the account, whatever it says otherwise.
    Onboarding lets one channel at a time claim an account; if two channels of different tenants
    ever claim the same one here (the topic read half-way, a legacy duplicate), the lookup answers
    nobody rather than a winner chosen by the order partitions were read in.
    """

    name = "channel-directory"
    source: ClassVar[TopicSpec] = topics.CHANNELS
    event: ClassVar[type[Event]] = ChannelSnapshot

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        super().__init__(bootstrap_servers, topic)
        self.by_id: dict[str, ChannelSnapshot] = {}
        # (provider, account id) -> the claiming channels, by channel id
        self._claims: dict[tuple[Provider, str], dict[str, ChannelSnapshot]] = {}
        self._business: dict[tuple[Provider, str], dict[str, ChannelSnapshot]] = {}

    def size(self) -> int:
        return len(self.by_id)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one record: a snapshot replaces the channel, a tombstone removes it."""
        if value is None:
            if key is not None:
                old = self.by_id.pop(key.decode(), None)
                if old is not None:
                    self._unindex(old)
            return
        try:
            snap = ChannelSnapshot.model_validate_json(value)
        except ValueError as exc:
            log.error("unreadable channel snapshot skipped", error=str(exc))
            return
        current = self.by_id.get(snap.channel_id)
        if current is not None and current.revision > snap.revision:
            return
        if current is not None:
            self._unindex(current)
        self.by_id[snap.channel_id] = snap
        if claims_account(snap):
            self._claims.setdefault((snap.provider, snap.account_id), {})[snap.channel_id] = snap
            if snap.business_account_id:
                key_ = (snap.provider, snap.business_account_id)
                self._business.setdefault(key_, {})[snap.channel_id] = snap

    def _unindex(self, snap: ChannelSnapshot) -> None:
        for index, key in (
            (self._claims, (snap.provider, snap.account_id)),
            (self._business, (snap.provider, snap.business_account_id or "")),
        ):
            holders = index.get(key)
            if holders is not None and holders.pop(snap.channel_id, None) is not None and not holders:
                del index[key]

    @staticmethod
    def _one_tenant(
        holders: dict[str, ChannelSnapshot] | None, provider: Provider, what: str, account_id: str
    ) -> ChannelSnapshot | None:
        if not holders:
            return None
        tenants = {c.tenant_id for c in holders.values()}
        if len(tenants) > 1:
            log.error(
                "channels of several tenants claim one account; attributed to none",
                provider=provider.value,
                id_kind=what,
                account_id=account_id,
                channels=sorted(holders),
            )
            return None
        return holders[min(holders)]

    def lookup(self, provider: Provider, account_id: str) -> ChannelSnapshot | None:
        """The channel that receives webhooks for this provider account id (None: no claiming channel)."""
        return self._one_tenant(self._claims.get((provider, account_id)), provider, "account", account_id)

    def lookup_business(self, provider: Provider, business_account_id: str) -> ChannelSnapshot | None:
        """A claiming channel of this business account (a WhatsApp WABA id, an Instagram profile's page)."""
        holders = self._business.get((provider, business_account_id))
        return self._one_tenant(holders, provider, "business", business_account_id)

    def channels_of(self, tenant_id: str) -> list[ChannelSnapshot]:
        return [c for c in self.by_id.values() if c.tenant_id == tenant_id]


class KafkaTeamDirectory(CompactedTopicReader):
    """In-memory teams and each user's teams, fed by the teams topic.

    Indexed by (tenant, user): a role lookup reads one entry instead of scanning every tenant's
    teams (security #13 finding 14c).
    """

    name = "team-directory"
    source: ClassVar[TopicSpec] = topics.TEAMS
    event: ClassVar[type[Event]] = TeamSnapshot

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        super().__init__(bootstrap_servers, topic)
        self.by_id: dict[str, TeamSnapshot] = {}
        self._member_of: dict[tuple[str, str], set[str]] = {}

    def size(self) -> int:
        return len(self.by_id)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:
            if key is not None:
                gone = self.by_id.pop(key.decode(), None)
                if gone is not None:
                    self._unindex_team(gone)
            return
        try:
            team = TeamSnapshot.model_validate_json(value)
        except ValueError as exc:
            log.error("unreadable team snapshot skipped", error=str(exc))
            return
        current = self.by_id.get(team.team_id)
        if current is None or current.revision <= team.revision:
            if current is not None:
                self._unindex_team(current)
            self.by_id[team.team_id] = team
            if not team.deleted:
                for user_id in team.members:
                    self._member_of.setdefault((team.tenant_id, user_id), set()).add(team.team_id)

    def _unindex_team(self, team: TeamSnapshot) -> None:
        for user_id in team.members:
            teams = self._member_of.get((team.tenant_id, user_id))
            if teams is not None:
                teams.discard(team.team_id)
                if not teams:
                    del self._member_of[(team.tenant_id, user_id)]

    def teams_of(self, tenant_id: str, user_id: str) -> set[str]:
        """The teams of a tenant the user belongs to."""
        return set(self._member_of.get((tenant_id, user_id), ()))


def role_on_channel(
    channels: KafkaChannelDirectory, teams: KafkaTeamDirectory, tenant_id: str, user_id: str, channel_id: str
) -> ChannelRole | None:
    """A user's effective role on a channel of their tenant, from the read models (None: no access)."""
    channel = channels.by_id.get(channel_id)
    if channel is None or channel.tenant_id != tenant_id:
        return None
    return effective_role(user_id, teams.teams_of(tenant_id, user_id), access_of(channel))


class DirectoryRoles:
    """Channel roles as the channel and team read models give them (the services' ``ChannelRoles``)."""

    def __init__(self, channels: KafkaChannelDirectory, teams: KafkaTeamDirectory) -> None:
        self.channels = channels
        self.teams = teams

    def role_of(self, tenant_id: str, user_id: str, channel_id: str) -> ChannelRole | None:
        return role_on_channel(self.channels, self.teams, tenant_id, user_id, channel_id)

    def channel_ids_of(self, tenant_id: str) -> list[str]:
        return [c.channel_id for c in self.channels.channels_of(tenant_id)]

    def has_channel(self, tenant_id: str, channel_id: str) -> bool:
        channel = self.channels.by_id.get(channel_id)
        return channel is not None and channel.tenant_id == tenant_id
