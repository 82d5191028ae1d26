"""The normalizer's application service: an archived delivery in, Parley's events out.

Parsing is the provider's (``domain/normalize`` asks the registry); this layer finds the channel
that holds each account in the channel read model, turns parsed items into events, skips recent
repeats and publishes. ``entrypoints/subscribers.py`` feeds it the raw topic's records.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import orjson
from parley_events import ChannelSnapshot, Event, Provider, WebhookReceived
from parley_shared.channels import KafkaChannelDirectory
from parley_shared.kafka import PermanentError
from parley_shared.logging import get_logger

from parley_ingest import metrics
from parley_ingest.domain.dedupe import RecentIds
from parley_ingest.domain.normalize import (
    SKIP_KINDS,
    ItemFailure,
    MalformedPayload,
    handover_event,
    message_event,
    parse_delivery,
    status_event,
    template_event,
)

log = get_logger(__name__)


class UnprocessableDelivery(PermanentError):
    """The archived delivery cannot be normalized as it is; it goes to the DLQ for a fix and replay."""


Lookup = Callable[[Provider, str], ChannelSnapshot | None]


class Normalizer:
    """Normalize one archived delivery and publish its events, skipping recent repeats."""

    def __init__(
        self,
        directory: KafkaChannelDirectory,
        publish: Callable[[Event, str], Awaitable[None]],
        catch_up_s: float,
        recent: RecentIds,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.directory = directory
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
                event = message_event(parsed, channel, raw.delivery_id)
                await self.emit(event, event.event_id, parsed.provider.value)
        for status in result.statuses:
            channel = await self.channel(self.directory.lookup, status.provider, status.account_id)
            if channel is not None:
                receipt = status_event(status, channel, raw.delivery_id)
                await self.emit(receipt, receipt.event_id, status.provider.value)
        for handover in result.handovers:
            channel = await self.channel(self.directory.lookup, handover.provider, handover.account_id)
            if channel is not None:
                control = handover_event(handover, channel, raw.delivery_id)
                await self.emit(control, control.event_id, handover.provider.value)
        for template in result.templates:
            channel = await self.channel(
                self.directory.lookup_business, Provider.WHATSAPP, template.business_account_id
            )
            if channel is not None:
                update = template_event(template, channel.tenant_id, raw.delivery_id)
                await self.emit(update, update.event_id, Provider.WHATSAPP.value)
        return result.failures
