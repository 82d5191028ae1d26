"""The X Activity API subscriptions Parley keeps for each connected X handle.

Connecting a handle calls :func:`ensure`, disconnecting it :func:`remove`, and a periodic check
:func:`repair`. The planning (what one handle needs, what is missing, what belongs to Parley) is
pure and separate from the calls; the calls go through :class:`ActivityApi` (``XClient``).

Tokens, as X asks for them (docs.x.com/x-api/activity/introduction and the OpenAPI security of
each operation): creating a subscription to a private event (DMs, chats, mentions, replies,
quotes) needs the handle's own OAuth 2.0 user token with ``dm.read`` or ``tweet.read``; listing
and deleting take the app's Bearer token (``DELETE /2/activity/subscriptions/{id}`` accepts
nothing else).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from parley_providers.errors import ProviderError
from parley_providers.x import activity
from parley_providers.x.client import ActivitySubscription

TAG = "parley"
"""Tag of every subscription Parley creates: X repeats it in each delivery's ``data.tag``."""

EVENT_TYPES: tuple[str, ...] = (
    activity.DM_RECEIVED,  # a customer's DM
    activity.DM_SENT,  # the business's own DMs, from any app: outbound in the thread
    activity.POST_MENTION,  # a post that @mentions the handle
    activity.POST_REPLY,  # a direct reply to one of the handle's posts (replies to its replies too)
    activity.POST_QUOTE,  # a quote of one of the handle's posts (a reply to it is allowed: X counts
    # a quote as summoning the quoted account)
    activity.POST_CREATE,  # the handle's own posts: its replies written in X's app join the thread
    activity.CHAT_RECEIVED,  # XChat: encrypted, recorded as "an encrypted message arrived"
    activity.CHAT_SENT,
)
"""What one handle needs, in the order they are created."""


@dataclass(frozen=True)
class Wanted:
    """One subscription a handle needs."""

    event_type: str
    user_id: str
    webhook_id: str


@dataclass(frozen=True)
class Plan:
    """What a handle has and lacks among the subscriptions it needs."""

    present: tuple[ActivitySubscription, ...]
    missing: tuple[Wanted, ...]


@dataclass(frozen=True)
class Failure:
    """A call that did not succeed: the event type (or subscription id) and why."""

    subject: str
    kind: str
    message: str


@dataclass(frozen=True)
class SubscriptionReport:
    """What :func:`ensure` or :func:`repair` found and did for one handle."""

    user_id: str
    present: tuple[str, ...]
    """Event types subscribed without this call creating them."""
    created: tuple[str, ...]
    """Event types that were missing and are subscribed now."""
    failed: tuple[Failure, ...] = ()

    @property
    def missing(self) -> tuple[str, ...]:
        """Event types that were missing (created, or failed to be)."""
        return self.created + tuple(f.subject for f in self.failed)

    @property
    def complete(self) -> bool:
        return not self.failed


@dataclass(frozen=True)
class RemovalReport:
    """What :func:`remove` deleted for one handle."""

    user_id: str
    removed: tuple[str, ...]
    """Event types whose subscription was deleted."""
    failed: tuple[Failure, ...] = ()


@dataclass(frozen=True)
class RepairReport:
    """What :func:`repair` found across handles: one report per handle, and the subscriptions
    Parley's event types still have on the webhook for users no handle claims (left alone)."""

    handles: tuple[SubscriptionReport, ...]
    orphans: tuple[ActivitySubscription, ...]

    @property
    def recreated(self) -> dict[str, tuple[str, ...]]:
        """User id -> event types re-created, for the handles that lacked any."""
        return {r.user_id: r.created for r in self.handles if r.created}


class ActivityApi(Protocol):
    """The X Activity API calls this module makes (``XClient`` has them)."""

    async def create_activity_subscription(
        self, token: str, event_type: str, user_id: str, webhook_id: str, tag: str | None = None
    ) -> ActivitySubscription: ...

    async def activity_subscriptions(self, token: str) -> list[ActivitySubscription]: ...

    async def delete_activity_subscription(self, token: str, subscription_id: str) -> bool: ...


# --- planning (pure) ------------------------------------------------------------------------


def needed(user_id: str, webhook_id: str) -> tuple[Wanted, ...]:
    """The subscriptions one handle needs on Parley's webhook."""
    return tuple(Wanted(event_type, user_id, webhook_id) for event_type in EVENT_TYPES)


def matches(subscription: ActivitySubscription, wanted: Wanted) -> bool:
    """An existing subscription delivers what ``wanted`` asks for: same event type, the handle as
    the only filter, Parley's webhook. One filtered on a direction delivers less, so it is not."""
    return (
        subscription.event_type == wanted.event_type
        and subscription.user_id == wanted.user_id
        and subscription.webhook_id == wanted.webhook_id
        and subscription.direction is None
    )


def plan(wanted: Sequence[Wanted], existing: Iterable[ActivitySubscription]) -> Plan:
    """Split what a handle needs into what it has and what it lacks."""
    pool = list(existing)
    present: list[ActivitySubscription] = []
    missing: list[Wanted] = []
    for want in wanted:
        found = next((s for s in pool if matches(s, want)), None)
        if found is None:
            missing.append(want)
        else:
            present.append(found)
    return Plan(tuple(present), tuple(missing))


def owned(
    existing: Iterable[ActivitySubscription], user_id: str, webhook_id: str
) -> tuple[ActivitySubscription, ...]:
    """The subscriptions Parley made for a handle: its event types, the handle, Parley's webhook."""
    return tuple(
        s
        for s in existing
        if s.event_type in EVENT_TYPES and s.user_id == user_id and s.webhook_id == webhook_id
    )


def orphans(
    existing: Iterable[ActivitySubscription], user_ids: Iterable[str], webhook_id: str
) -> tuple[ActivitySubscription, ...]:
    """Subscriptions of Parley's event types on Parley's webhook for users no handle claims."""
    known = set(user_ids)
    return tuple(
        s
        for s in existing
        if s.event_type in EVENT_TYPES and s.webhook_id == webhook_id and s.user_id not in known
    )


# --- the calls ------------------------------------------------------------------------------


async def _create_missing(
    api: ActivityApi, app_token: str, user_token: str, user_id: str, subscription_plan: Plan
) -> SubscriptionReport:
    present = [s.event_type for s in subscription_plan.present]
    created: list[str] = []
    refused: list[tuple[Wanted, ProviderError]] = []
    for want in subscription_plan.missing:
        try:
            await api.create_activity_subscription(
                user_token, want.event_type, want.user_id, want.webhook_id, TAG
            )
        except ProviderError as exc:
            refused.append((want, exc))
            continue
        created.append(want.event_type)
    failed: list[Failure] = []
    if refused:
        # X's answer to a subscription that exists already is not documented for this API (the
        # Account Activity API says DuplicateSubscriptionFailed): a refused create may have lost a
        # race to a concurrent one, so what exists now decides, not the error's wording
        now_there = await api.activity_subscriptions(app_token)
        for want, error in refused:
            if any(matches(s, want) for s in now_there):
                present.append(want.event_type)
            else:
                failed.append(Failure(want.event_type, error.kind.value, error.message))
    return SubscriptionReport(
        user_id=user_id, present=tuple(present), created=tuple(created), failed=tuple(failed)
    )


async def ensure(
    api: ActivityApi, *, user_token: str, app_token: str, user_id: str, webhook_id: str
) -> SubscriptionReport:
    """Create the subscriptions the handle lacks; those it has are left alone (idempotent).

    Listing the app's subscriptions failing raises (nothing is known, nothing is done); a create
    failing is reported in ``failed`` with its error kind (``reauth_required`` when the handle's
    token is dead), and the others are still attempted.
    """
    existing = await api.activity_subscriptions(app_token)
    return await _create_missing(
        api, app_token, user_token, user_id, plan(needed(user_id, webhook_id), existing)
    )


async def remove(api: ActivityApi, *, app_token: str, user_id: str, webhook_id: str) -> RemovalReport:
    """Delete the subscriptions Parley made for the handle (other apps' and other webhooks' stay)."""
    existing = await api.activity_subscriptions(app_token)
    removed: list[str] = []
    failed: list[Failure] = []
    for subscription in owned(existing, user_id, webhook_id):
        try:
            await api.delete_activity_subscription(app_token, subscription.subscription_id)
        except ProviderError as exc:
            if exc.status == 404:
                removed.append(subscription.event_type)  # gone already
                continue
            failed.append(Failure(subscription.subscription_id, exc.kind.value, exc.message))
            continue
        removed.append(subscription.event_type)
    return RemovalReport(user_id=user_id, removed=tuple(removed), failed=tuple(failed))


async def repair(
    api: ActivityApi, *, app_token: str, user_tokens: Mapping[str, str], webhook_id: str
) -> RepairReport:
    """The periodic check: one listing for every handle, then what each lacks is re-created.

    ``user_tokens`` maps each connected handle's user id to its current user token. Subscriptions
    for users no handle claims are reported as orphans, not deleted: the caller knows whether a
    channel is gone or only waiting for its owner to reconnect.
    """
    existing = await api.activity_subscriptions(app_token)
    reports = [
        await _create_missing(api, app_token, token, user_id, plan(needed(user_id, webhook_id), existing))
        for user_id, token in user_tokens.items()
    ]
    return RepairReport(handles=tuple(reports), orphans=orphans(existing, user_tokens, webhook_id))
