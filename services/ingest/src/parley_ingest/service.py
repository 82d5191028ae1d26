"""The normalizer's application service: an archived delivery in, Parley's events out.

Parsing is the provider's (``domain/normalize`` asks the registry); this layer finds the channel
that holds each account in the channel read model, turns parsed items into events, skips recent
repeats and publishes. ``entrypoints/subscribers.py`` feeds it the raw topic's records.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

import orjson
from parley_events import ChannelSnapshot, Event, Provider, WebhookReceived
from parley_providers import registry
from parley_shared.channels import KafkaChannelDirectory
from parley_shared.kafka import PermanentError
from parley_shared.logging import get_logger

from parley_ingest import metrics
from parley_ingest.domain.dedupe import RecentIds
from parley_ingest.domain.normalize import (
    SKIP_KINDS,
    ItemFailure,
    MalformedPayload,
    ParsedMessage,
    alias_event,
    handover_event,
    limit_event,
    message_event,
    parse_delivery,
    resolve,
    status_event,
    template_event,
    throughput_event,
)

log = get_logger(__name__)


class UnprocessableDelivery(PermanentError):
    """The archived delivery cannot be normalized as it is; it goes to the DLQ for a fix and replay."""


Lookup = Callable[[Provider, str], ChannelSnapshot | None]


class CustomerAliases(Protocol):
    """Which conversation key a customer's identifier leads to, per channel (a read model)."""

    loaded: asyncio.Event
    """Set once the map was read whole: the broker starts consuming before the read models load."""

    def root(self, channel_id: str, alias_key: str) -> str | None: ...

    def remember(self, channel_id: str, alias_key: str, conversation_key: str) -> None: ...


UNATTRIBUTED = "unattributed"
"""The channel label of a billed delivery for an account no channel holds."""


class Normalizer:
    """Normalize one archived delivery and publish its events, skipping recent repeats."""

    def __init__(
        self,
        directory: KafkaChannelDirectory,
        publish: Callable[[Event, str], Awaitable[None]],
        catch_up_s: float,
        recent: RecentIds,
        aliases: CustomerAliases,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        own_app_ids: frozenset[str] = frozenset(),
    ) -> None:
        self.directory = directory
        # Parley's own app ids: a handover naming one is Parley's own take or pass (Meta tells
        # every subscribed app of a take), not another app's
        self.own_app_ids = own_app_ids
        self.aliases = aliases
        self.publish = publish
        self.catch_up_s = catch_up_s
        self.recent = recent
        self.clock = clock

    async def channel(self, lookup: Lookup, provider: Provider, account_id: str) -> ChannelSnapshot | None:
        found = lookup(provider, account_id)
        if found is None:
            # it may have been registered a moment ago: read the channels topic up to now
            await self.directory.catch_up(timeout=self.catch_up_s)
            found = lookup(provider, account_id)
        if found is None:
            metrics.UNKNOWN_ACCOUNTS.labels(provider=provider.value).inc()
            log.warning(
                "no channel claims this account; archived, not normalized",
                provider=provider.value,
                account_id=account_id,
            )
        return found

    async def emit(self, event: Event, event_id: str, provider: str) -> None:
        if event_id in self.recent:
            metrics.DUPLICATES.labels(provider=provider).inc()
            return
        await self.publish(event, event_id)
        self.recent.add(event_id)
        metrics.NORMALIZED.labels(provider=provider, event_type=event.event_type).inc()

    async def normalize(self, raw: WebhookReceived) -> tuple[ItemFailure, ...]:
        """Publish the delivery's events; return the items that could not be normalized.

        A delivery that is not the endpoint's shape at all raises :class:`UnprocessableDelivery`.
        """
        try:
            payload = orjson.loads(base64.b64decode(raw.body_b64, validate=True))
            result = parse_delivery(raw.provider, payload, self.clock())
        except (MalformedPayload, orjson.JSONDecodeError, binascii.Error) as exc:
            metrics.NORMALIZATION_FAILURES.labels(provider=raw.provider).inc()
            raise UnprocessableDelivery(f"{raw.provider} delivery {raw.delivery_id}: {exc}") from exc
        for kind, count in Counter(result.skipped).items():
            # the domain names kinds from a fixed set; the label is checked against it all the same
            metrics.SKIPPED.labels(kind=kind if kind in SKIP_KINDS else "other").inc(count)
        if result.failures:
            metrics.ITEM_FAILURES.labels(provider=raw.provider).inc(len(result.failures))
            for failure in result.failures:
                log.warning(
                    "item not normalized, dead-lettering it alone",
                    position=failure.position,
                    reason=failure.reason,
                )
        for parsed in result.messages:
            channel = await self.channel(self.directory.lookup, parsed.provider, parsed.account_id)
            if channel is not None:
                parsed = await self._one_conversation(parsed, channel)
                event = message_event(parsed, channel, raw.delivery_id)
                await self.emit(event, event.event_id, parsed.provider.value)
        for status in result.statuses:
            channel = await self.channel(self.directory.lookup, status.provider, status.account_id)
            if channel is not None:
                if status.aliases:
                    await self.aliases.loaded.wait()
                    root = self.aliases.root(channel.channel_id, status.conversation_key)
                    if root is not None:
                        status = dataclasses.replace(status, conversation_key=root)
                receipt = status_event(status, channel, raw.delivery_id)
                await self.emit(receipt, receipt.event_id, status.provider.value)
        for handover in result.handovers:
            channel = await self.channel(self.directory.lookup, handover.provider, handover.account_id)
            if channel is not None:
                if handover.provider is Provider.WHATSAPP:
                    # a WhatsApp customer known by several identifiers has one conversation
                    await self.aliases.loaded.wait()
                    root = self.aliases.root(channel.channel_id, handover.conversation_key)
                    if root is not None:
                        handover = dataclasses.replace(handover, conversation_key=root)
                control = handover_event(handover.seen_by(self.own_app_ids), channel, raw.delivery_id)
                await self.emit(control, control.event_id, handover.provider.value)
        for template in result.templates:
            channel = await self.channel(
                self.directory.lookup_business, Provider.WHATSAPP, template.business_account_id
            )
            if channel is not None:
                update = template_event(template, channel.tenant_id, raw.delivery_id)
                await self.emit(update, update.event_id, Provider.WHATSAPP.value)
        for limit in result.limits:
            channel = await self.channel(
                self.directory.lookup_business, Provider.WHATSAPP, limit.business_account_id
            )
            if channel is not None:
                changed = limit_event(limit, channel.tenant_id, raw.delivery_id)
                await self.emit(changed, changed.event_id, Provider.WHATSAPP.value)
        for throughput in result.throughputs:
            channel = await self.channel(
                self.directory.lookup_business, Provider.WHATSAPP, throughput.business_account_id
            )
            if channel is not None:
                upgraded = throughput_event(throughput, channel.tenant_id, raw.delivery_id)
                await self.emit(upgraded, upgraded.event_id, Provider.WHATSAPP.value)
        self.count_charge(raw, payload)
        return result.failures

    async def _one_conversation(self, parsed: ParsedMessage, channel: ChannelSnapshot) -> ParsedMessage:
        """The message on the conversation its customer already has, whichever identifier it
        carries; the identifiers not yet leading there are recorded first (a crash in between
        redelivers the delivery, which resolves the same way)."""
        if not parsed.aliases:
            return parsed
        await self.aliases.loaded.wait()  # a message resolved before the map is read could split
        channel_id = channel.channel_id
        root, fresh = resolve(
            parsed.conversation_key, parsed.aliases, lambda alias: self.aliases.root(channel_id, alias)
        )
        for alias in fresh:
            recorded = alias_event(channel, parsed.provider, alias, root, parsed.provider_timestamp)
            await self.publish(recorded, recorded.event_id)
            self.aliases.remember(channel_id, alias, root)
        if root == parsed.conversation_key:
            return parsed
        return dataclasses.replace(parsed, conversation_key=root)

    def count_charge(self, raw: WebhookReceived, payload: object) -> None:
        """Count what the provider bills for this delivery, per channel and category, once per
        delivery (a redelivered record, or the same bytes sent again, is billed once)."""
        charged = registry.delivery_charge(raw.provider, payload)
        key = f"charge:{raw.delivery_id}"
        if charged is None or key in self.recent:
            return
        channel = self.directory.lookup(charged.provider, charged.account_id)
        metrics.PROVIDER_CHARGES.labels(
            provider=charged.provider.value,
            channel_id=channel.channel_id if channel is not None else UNATTRIBUTED,
            category=charged.charge.category,
        ).inc()
        self.recent.add(key)
