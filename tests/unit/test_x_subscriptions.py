"""The X Activity API subscriptions Parley keeps per handle: the planning, and ensure, remove and
repair over an in-memory stand-in for the X API (the real API's contract is in
tests/providers/x/test_activity_api.py, against the sandbox)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest
from parley_providers.errors import ErrorKind, ProviderError
from parley_providers.x import subscriptions
from parley_providers.x.client import ActivitySubscription
from parley_providers.x.subscriptions import (
    EVENT_TYPES,
    Wanted,
    ensure,
    matches,
    needed,
    orphans,
    owned,
    plan,
    remove,
    repair,
)

pytestmark = pytest.mark.unit

HANDLE = "3000000000000000001"
OTHER = "3000000000000000002"
WEBHOOK = "1900000000000000001"
USER_TOKEN = "user-token"
APP_TOKEN = "app-token"


def sub(
    event_type: str, user_id: str = HANDLE, webhook_id: str | None = WEBHOOK, **extra: str
) -> ActivitySubscription:
    return ActivitySubscription(
        f"s-{event_type}-{user_id}-{webhook_id}", event_type, user_id, webhook_id, **extra
    )


@dataclass
class FakeActivityApi:
    """X's subscription endpoints in memory: create refuses what a rule says, lists everything."""

    existing: list[ActivitySubscription] = field(default_factory=list)
    refuse: dict[str, ProviderError] = field(default_factory=dict)
    racing: set[str] = field(default_factory=set)  # event types a concurrent caller creates first
    calls: list[tuple[str, str]] = field(default_factory=list)
    ids: itertools.count[int] = field(default_factory=itertools.count)

    async def create_activity_subscription(
        self, token: str, event_type: str, user_id: str, webhook_id: str, tag: str | None = None
    ) -> ActivitySubscription:
        self.calls.append(("create", event_type))
        assert token == USER_TOKEN
        if event_type in self.racing:
            self.existing.append(
                ActivitySubscription(f"theirs-{next(self.ids)}", event_type, user_id, webhook_id)
            )
        if event_type in self.refuse:
            raise self.refuse[event_type]
        made = ActivitySubscription(f"new-{next(self.ids)}", event_type, user_id, webhook_id, tag)
        self.existing.append(made)
        return made

    async def activity_subscriptions(self, token: str) -> list[ActivitySubscription]:
        self.calls.append(("list", ""))
        assert token == APP_TOKEN
        return list(self.existing)

    async def delete_activity_subscription(self, token: str, subscription_id: str) -> bool:
        self.calls.append(("delete", subscription_id))
        assert token == APP_TOKEN
        if subscription_id in self.refuse:
            raise self.refuse[subscription_id]
        self.existing = [s for s in self.existing if s.subscription_id != subscription_id]
        return True


def refused(status: int, kind: ErrorKind, message: str = "refused") -> ProviderError:
    return ProviderError("x", status, None, None, message, kind)


# --- planning -------------------------------------------------------------------------------


def test_a_handle_needs_dms_both_ways_mentions_replies_quotes_its_own_posts_and_xchat() -> None:
    assert set(EVENT_TYPES) == {
        "dm.received",
        "dm.sent",
        "post.mention.create",
        "post.reply.create",
        "post.quote.create",
        "post.create",
        "chat.received",
        "chat.sent",
    }
    assert needed(HANDLE, WEBHOOK) == tuple(Wanted(e, HANDLE, WEBHOOK) for e in EVENT_TYPES)


@pytest.mark.parametrize(
    "other",
    [
        sub("dm.sent"),
        sub("dm.received", user_id=OTHER),
        sub("dm.received", webhook_id="1900000000000000009"),
        sub("dm.received", webhook_id=None),
        sub("dm.received", direction="inbound"),
    ],
    ids=["event type", "user", "webhook", "stream only", "direction"],
)
def test_a_subscription_that_differs_in_anything_does_not_match(other: ActivitySubscription) -> None:
    assert matches(sub("dm.received"), Wanted("dm.received", HANDLE, WEBHOOK))
    assert not matches(other, Wanted("dm.received", HANDLE, WEBHOOK))


def test_the_plan_lists_what_the_handle_has_and_what_it_lacks() -> None:
    existing = [sub("dm.received"), sub("post.create"), sub("dm.sent", user_id=OTHER)]

    result = plan(needed(HANDLE, WEBHOOK), existing)

    assert [s.event_type for s in result.present] == ["dm.received", "post.create"]
    assert [w.event_type for w in result.missing] == [
        e for e in EVENT_TYPES if e not in ("dm.received", "post.create")
    ]


def test_owned_are_parleys_event_types_for_the_handle_on_parleys_webhook() -> None:
    mine = [sub(e) for e in EVENT_TYPES]
    existing = [
        *mine,
        sub("like.create"),  # not an event type Parley subscribes to
        sub("dm.received", user_id=OTHER),
        sub("dm.received", webhook_id="1900000000000000009"),
    ]

    assert owned(existing, HANDLE, WEBHOOK) == tuple(mine)


def test_orphans_are_parleys_subscriptions_for_users_no_handle_claims() -> None:
    gone = sub("dm.received", user_id=OTHER)
    existing = [sub("dm.received"), gone, sub("dm.sent", user_id=OTHER, webhook_id="1900000000000000009")]

    assert orphans(existing, [HANDLE], WEBHOOK) == (gone,)


# --- ensure ---------------------------------------------------------------------------------


async def test_ensure_creates_every_missing_subscription_with_the_users_token() -> None:
    api = FakeActivityApi(existing=[sub("dm.received")])

    report = await ensure(api, user_token=USER_TOKEN, app_token=APP_TOKEN, user_id=HANDLE, webhook_id=WEBHOOK)

    assert report.present == ("dm.received",)
    assert report.created == tuple(e for e in EVENT_TYPES if e != "dm.received")
    assert report.complete
    assert {s.event_type for s in owned(api.existing, HANDLE, WEBHOOK)} == set(EVENT_TYPES)
    assert all(s.tag == subscriptions.TAG for s in api.existing if s.subscription_id.startswith("new-"))


async def test_ensure_twice_creates_nothing_the_second_time() -> None:
    api = FakeActivityApi()
    await ensure(api, user_token=USER_TOKEN, app_token=APP_TOKEN, user_id=HANDLE, webhook_id=WEBHOOK)
    api.calls.clear()

    again = await ensure(api, user_token=USER_TOKEN, app_token=APP_TOKEN, user_id=HANDLE, webhook_id=WEBHOOK)

    assert again.created == ()
    assert again.present == EVENT_TYPES
    assert api.calls == [("list", "")]


async def test_a_refused_create_is_reported_with_its_kind_and_the_others_are_still_made() -> None:
    api = FakeActivityApi(
        refuse={"chat.received": refused(403, ErrorKind.PERMISSION_MISSING, "missing dm.read")}
    )

    report = await ensure(api, user_token=USER_TOKEN, app_token=APP_TOKEN, user_id=HANDLE, webhook_id=WEBHOOK)

    assert [(f.subject, f.kind, f.message) for f in report.failed] == [
        ("chat.received", "permission_missing", "missing dm.read")
    ]
    assert not report.complete
    assert "chat.sent" in report.created
    assert report.missing == (*report.created, "chat.received")


async def test_a_create_that_lost_a_race_counts_as_present_once_the_listing_shows_it() -> None:
    api = FakeActivityApi(
        refuse={"dm.sent": refused(400, ErrorKind.INVALID_REQUEST, "undocumented duplicate")},
        racing={"dm.sent"},
    )

    report = await ensure(api, user_token=USER_TOKEN, app_token=APP_TOKEN, user_id=HANDLE, webhook_id=WEBHOOK)

    assert report.failed == ()
    assert "dm.sent" in report.present
    assert "dm.sent" not in report.created


async def test_ensure_raises_when_the_listing_fails() -> None:
    class Down(FakeActivityApi):
        async def activity_subscriptions(self, token: str) -> list[ActivitySubscription]:
            raise refused(503, ErrorKind.RETRYABLE)

    api = Down()
    with pytest.raises(ProviderError):
        await ensure(api, user_token=USER_TOKEN, app_token=APP_TOKEN, user_id=HANDLE, webhook_id=WEBHOOK)
    assert api.calls == []


# --- remove ---------------------------------------------------------------------------------


async def test_remove_deletes_only_parleys_subscriptions_for_the_handle() -> None:
    theirs = [
        sub("like.create"),
        sub("dm.received", user_id=OTHER),
        sub("dm.received", webhook_id="1900000000000000009"),
    ]
    api = FakeActivityApi(existing=[*(sub(e) for e in EVENT_TYPES), *theirs])

    report = await remove(api, app_token=APP_TOKEN, user_id=HANDLE, webhook_id=WEBHOOK)

    assert report.removed == EVENT_TYPES
    assert report.failed == ()
    assert api.existing == theirs


async def test_remove_counts_a_subscription_already_gone_as_removed_and_reports_other_failures() -> None:
    api = FakeActivityApi(
        existing=[sub("dm.received"), sub("dm.sent")],
        refuse={
            sub("dm.received").subscription_id: refused(404, ErrorKind.INVALID_REQUEST),
            sub("dm.sent").subscription_id: refused(503, ErrorKind.RETRYABLE, "over capacity"),
        },
    )

    report = await remove(api, app_token=APP_TOKEN, user_id=HANDLE, webhook_id=WEBHOOK)

    assert report.removed == ("dm.received",)
    assert [(f.subject, f.kind) for f in report.failed] == [(sub("dm.sent").subscription_id, "retryable")]


# --- repair ---------------------------------------------------------------------------------


async def test_repair_recreates_what_each_handle_lacks_from_one_listing_and_reports_orphans() -> None:
    orphan = sub("dm.received", user_id="3000000000000000099")
    api = FakeActivityApi(
        existing=[
            *(sub(e) for e in EVENT_TYPES if e != "post.reply.create"),
            *(sub(e, user_id=OTHER) for e in EVENT_TYPES),
            orphan,
        ]
    )

    report = await repair(
        api, app_token=APP_TOKEN, user_tokens={HANDLE: USER_TOKEN, OTHER: USER_TOKEN}, webhook_id=WEBHOOK
    )

    assert report.recreated == {HANDLE: ("post.reply.create",)}
    assert [r.user_id for r in report.handles] == [HANDLE, OTHER]
    assert report.handles[1].created == ()
    assert report.orphans == (orphan,)
    assert orphan in api.existing  # reported, not deleted
    assert [c for c in api.calls if c[0] == "list"] == [("list", "")]
