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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import orjson
from parley_events import ChannelSnapshot, Event, Provider, WebhookReceived
from parley_providers import registry
from parley_providers.base import ContentLookup
from parley_providers.errors import ProviderError
from parley_shared.channels import KafkaChannelDirectory
from parley_shared.kafka import PermanentError
from parley_shared.logging import get_logger
from parley_shared.vault import Credential, VaultError

from parley_ingest import metrics
from parley_ingest.domain.dedupe import RecentIds
from parley_ingest.domain.normalize import (
    SKIP_KINDS,
    ItemFailure,
    MalformedPayload,
    ParsedMessage,
    alias_event,
    change_event,
    handover_event,
    limit_event,
    message_event,
    message_event_id,
    parse_delivery,
    resolve,
    status_event,
    template_event,
    throughput_event,
)
from parley_ingest.domain.normalize.content import (
    NO_CREDENTIALS,
    NOT_CONFIGURED,
    backoff_s,
    is_transient,
    marked_unavailable,
    unavailable_reason,
    with_fetched,
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

    def forget(self, channel_id: str, alias_key: str) -> None: ...


class ChannelTokens(Protocol):
    """A channel's token, read from the credential vault onboarding writes (read only: the
    normalizer never stores one). ``parley_shared.vault``'s credential stores are this port."""

    async def get(self, channel_id: str) -> Credential | None: ...


@dataclass(frozen=True)
class ContentLookups:
    """How the normalizer fetches what a webhook names by ids only (Instagram mentions): the
    providers' lookups, the channels' tokens, and how often and how long to retry."""

    lookups: Mapping[Provider, ContentLookup] = field(default_factory=dict)
    tokens: ChannelTokens | None = None
    attempts: int = 3
    backoff_s: float = 0.5
    backoff_max_s: float = 5.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


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
        content: ContentLookups | None = None,
        own_app_ids: frozenset[str] = frozenset(),
        settle: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.content = content or ContentLookups()
        self.directory = directory
        # Parley's own app ids: a handover naming one is Parley's own take or pass (Meta tells
        # every subscribed app of a take), not another app's
        self.own_app_ids = own_app_ids
        self.aliases = aliases
        self.publish = publish
        # with ``settle``, ``publish`` may return before the broker acknowledged: ``settle`` then
        # waits for everything published since it last ran
        self._settle = settle
        self._unsettled: list[str] = []
        self._unsettled_aliases: list[tuple[str, str]] = []
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
        if self._settle is not None:
            self._unsettled.append(event_id)
        metrics.NORMALIZED.labels(provider=provider, event_type=event.event_type).inc()

    async def settle(self) -> None:
        """Wait until the broker acknowledged everything published since the last settle.

        On a failure the events' ids, and the customer aliases they recorded, are forgotten again,
        so the records that led to them, handled again, publish them again instead of passing
        them over as repeats (or finding an alias the topic never got)."""
        unsettled, self._unsettled = self._unsettled, []
        aliases, self._unsettled_aliases = self._unsettled_aliases, []
        if self._settle is None:
            return
        try:
            await self._settle()
        except BaseException:
            self.recent.forget(unsettled)
            for channel_id, alias in aliases:
                self.aliases.forget(channel_id, alias)
            raise

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
                if parsed.fetch is not None and message_event_id_of(parsed) not in self.recent:
                    parsed = await self._completed(parsed, channel)
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
        for change in result.changes:
            channel = await self.channel(self.directory.lookup, change.provider, change.account_id)
            if channel is not None:
                edit = change_event(change, channel, raw.delivery_id)
                await self.emit(edit, edit.event_id, change.provider.value)
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

    async def _completed(self, parsed: ParsedMessage, channel: ChannelSnapshot) -> ParsedMessage:
        """The message with the text and author its provider's API gives (transient failures
        retried with backoff, a bounded number of times), or marked unavailable with a reason:
        published either way, so nothing is lost and the partition never waits for ever."""
        assert parsed.fetch is not None
        provider = parsed.provider.value
        lookup = self.content.lookups.get(parsed.provider)
        if lookup is None or self.content.tokens is None:
            return self._unavailable(parsed, NOT_CONFIGURED)
        try:
            # a store outage raises: the record is retried by the consumer, nothing is lost
            credential = await self.content.tokens.get(channel.channel_id)
        except VaultError:
            # the keys do not open it (PARLEY_ENCRYPTION_KEYS differs from onboarding's): no
            # retry can help, and the message must not wait for an operator
            log.error(
                "the channel's token does not decrypt with this process's keys", channel_id=channel.channel_id
            )
            credential = None
        if credential is None:
            return self._unavailable(parsed, NO_CREDENTIALS)
        attempts = max(1, self.content.attempts)
        for attempt in range(1, attempts + 1):
            try:
                fetched = await lookup.fetch(
                    parsed.account_id, parsed.fetch, credential.access_token, channel.connect_path
                )
            except ProviderError as exc:
                if is_transient(exc.kind) and attempt < attempts:
                    metrics.CONTENT_LOOKUP_RETRIES.labels(provider=provider).inc()
                    await self.content.sleep(
                        backoff_s(
                            attempt, self.content.backoff_s, self.content.backoff_max_s, exc.retry_after_s
                        )
                    )
                    continue
                # the error's text names no token (parley_providers.errors); the kind decides
                log.warning(
                    "content lookup failed; published marked unavailable",
                    lookup=parsed.fetch.kind,
                    kind=exc.kind.value,
                    status=exc.status,
                    code=exc.code,
                    attempts=attempt,
                )
                return self._unavailable(parsed, unavailable_reason(exc.kind))
            metrics.CONTENT_LOOKUPS.labels(provider=provider).inc()
            return with_fetched(parsed, fetched)
        raise AssertionError("unreachable: the last attempt returns")  # pragma: no cover

    @staticmethod
    def _unavailable(parsed: ParsedMessage, reason: str) -> ParsedMessage:
        marked = marked_unavailable(parsed, reason)
        metrics.CONTENT_UNAVAILABLE.labels(
            provider=parsed.provider.value, reason=marked.content.unavailable or reason
        ).inc()
        return marked

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
            if self._settle is not None:
                self._unsettled_aliases.append((channel_id, alias))
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


def message_event_id_of(parsed: ParsedMessage) -> str:
    """The id the message's event gets (a repeat within the dedupe window is not looked up again)."""
    return message_event_id(parsed.provider, parsed.account_id, parsed.provider_message_id)
