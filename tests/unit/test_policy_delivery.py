"""Policy's delivery: transient provider errors are retried for a time budget, not a count.

The provider, the store and the token store are fakes; time is a fake monotonic clock that the
fake sleep moves forward, so the budget's boundaries are exact. The real wait (woken by
``stop``) is used where shutdown is under test.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from parley_events import Event, Provider, ReplyApproved, ReplyFailed, ReplySent, SenderType
from parley_policy.domain.retry import RetryBudget
from parley_policy.service import FAILED_BUDGET, FAILED_PERMANENT, Delivery, DeliveryInterrupted
from parley_providers import ErrorKind, ProviderError
from parley_providers.meta.errors import meta_error
from parley_providers.meta.outbound import MetaSender
from parley_shared.kafka import still_assigned

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
BUDGET = RetryBudget(budget_s=600.0, backoff_s=0.5, backoff_max_s=30.0)


def throttled(retry_after_s: float | None = None) -> ProviderError:
    return meta_error("meta", 429, 4, None, "too many calls", retry_after_s=retry_after_s)


def server_error() -> ProviderError:
    return meta_error("meta", 500, 2, None, "service unavailable")


def revoked() -> ProviderError:
    return meta_error("meta", 400, 190, 460, "token revoked")


def approved(reply_id: str = "rpl_1") -> ReplyApproved:
    return ReplyApproved(
        event_id=f"{reply_id}:approved",
        reply_id=reply_id,
        conversation_id="conv-1",
        tenant_id="tenant-a",
        channel_id="ch-1",
        sender_type=SenderType.HUMAN,
        agent_id="ana",
        occurred_at=NOW,
        provider=Provider.MESSENGER,
        account_id="page-1",
        recipient_id="psid-1",
        kind="direct",
        text="hello",
        messaging_type="RESPONSE",
    )


class Clock:
    """A monotonic clock that only the fake sleep moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Graph:
    """The Send API: the scripted errors first, then ``outage`` until ``recovers_at``, then accepts."""

    errors: list[ProviderError] = field(default_factory=list)
    outage: ProviderError | None = None
    recovers_at: float = float("inf")  # on the clock; only with ``outage``
    calls: list[float] = field(default_factory=list)  # the clock at each call
    clock: Clock | None = None
    sent: int = 0
    called: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event | None = None  # when set, every send waits for it

    async def send_message(self, account_id: str, token: str, payload: dict[str, Any]) -> str:
        assert token == "page-token"
        now = self.clock() if self.clock else time.monotonic()
        self.calls.append(now)
        self.called.set()
        if self.release is not None:
            await self.release.wait()
        if self.errors:
            raise self.errors.pop(0)
        if self.outage is not None and now < self.recovers_at:
            raise self.outage
        self.sent += 1
        return f"m_{self.sent}"

    async def send_private_reply(self, page_id: str, token: str, comment_id: str, text: str) -> str:
        return await self.send_message(page_id, token, {"recipient": {"comment_id": comment_id}})


@dataclass
class Store:
    """Policy's delivery records (provider message id by reply id), shared across restarts."""

    deliveries: dict[str, str] = field(default_factory=dict)
    private_replied: list[tuple[str, str]] = field(default_factory=list)
    released: list[tuple[str, str, str]] = field(default_factory=list)

    async def delivered(self, reply_id: str) -> str | None:
        return self.deliveries.get(reply_id)

    async def record_delivery(self, reply_id: str, provider_message_id: str) -> None:
        self.deliveries.setdefault(reply_id, provider_message_id)

    async def mark_private_replied(self, conversation_id: str, comment_id: str) -> None:
        self.private_replied.append((conversation_id, comment_id))

    async def release_private_reply(self, conversation_id: str, comment_id: str, reply_id: str) -> None:
        self.released.append((conversation_id, comment_id, reply_id))


@dataclass
class Credentials:
    async def get(self, channel_id: str) -> Any:
        @dataclass
        class Credential:
            access_token: str = "page-token"
            expires_at: None = None
            refresh_token: None = None

        return Credential()


@dataclass
class Harness:
    graph: Graph
    store: Store
    clock: Clock
    published: list[Event] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    delivery: Delivery | None = None

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in self.published if isinstance(e, kind)]


def harness(
    graph: Graph,
    budget: RetryBudget = BUDGET,
    store: Store | None = None,
    fake_time: bool = True,
) -> Harness:
    clock = Clock()
    graph.clock = clock if fake_time else None
    h = Harness(graph, store or Store(), clock)

    async def publish(event: Event, event_id: str) -> None:
        h.published.append(event)

    async def sleep(seconds: float) -> None:
        h.waits.append(seconds)
        clock.now += seconds

    h.delivery = Delivery(
        h.store,  # type: ignore[arg-type]
        Credentials(),  # type: ignore[arg-type]
        {Provider.MESSENGER: MetaSender(graph)},  # type: ignore[arg-type]
        publish,
        lambda: NOW,
        budget,
        sleep if fake_time else None,
        clock if fake_time else time.monotonic,
    )
    return h


async def deliver(h: Harness, reply: ReplyApproved | None = None, **kwargs: Any) -> None:
    assert h.delivery is not None
    await h.delivery.deliver(reply or approved(), **kwargs)


# --------------------------------------------------------------------------- the waits


def test_backoff_doubles_from_the_first_wait_up_to_the_cap_with_jitter() -> None:
    top = [BUDGET.backoff(n, rand=lambda: 1.0) for n in range(1, 9)]
    assert top == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    bottom = [BUDGET.backoff(n, rand=lambda: 0.0) for n in range(1, 9)]
    assert bottom == [t / 2 for t in top]  # jitter takes off at most half
    assert BUDGET.backoff(10_000, rand=lambda: 1.0) == 30.0  # no overflow after days of tries


def test_the_wait_is_cut_to_what_is_left_of_the_budget_and_none_once_it_is_spent() -> None:
    one = lambda: 1.0  # noqa: E731
    assert BUDGET.next_wait(7, elapsed_s=500.0, rand=one) == 30.0
    assert BUDGET.next_wait(7, elapsed_s=590.0, rand=one) == pytest.approx(10.0)
    assert BUDGET.next_wait(7, elapsed_s=599.999, rand=one) == pytest.approx(0.001)
    assert BUDGET.next_wait(7, elapsed_s=600.0, rand=one) is None
    assert BUDGET.next_wait(1, elapsed_s=600.5, rand=one) is None


def test_a_provider_wait_is_honoured_beyond_the_backoff_cap_but_not_beyond_the_budget() -> None:
    assert BUDGET.next_wait(1, elapsed_s=0.0, provider_wait_s=120.0) == 120.0
    assert BUDGET.next_wait(1, elapsed_s=550.0, provider_wait_s=120.0) == 50.0
    # "retry now" is not taken literally: the backoff applies
    assert BUDGET.next_wait(3, elapsed_s=0.0, provider_wait_s=0.0, rand=lambda: 1.0) == 2.0


# --------------------------------------------------------------------------- retrying for a time


async def test_transient_errors_are_retried_past_five_attempts_until_the_provider_recovers() -> None:
    errors = [throttled() for _ in range(8)] + [server_error() for _ in range(8)]
    h = harness(Graph(errors=errors))
    await deliver(h)

    assert len(h.graph.calls) == 17  # 16 failures, then the one accepted send
    (sent,) = h.of(ReplySent)
    assert sent.provider_message_id == "m_1"
    assert not h.of(ReplyFailed)
    assert h.store.deliveries == {"rpl_1": "m_1"}
    assert all(0 < w <= 30.0 for w in h.waits)
    assert max(h.waits) > 15.0  # the waits grew to near the cap


async def test_the_last_try_lands_on_the_end_of_the_budget_and_its_success_counts() -> None:
    budget = RetryBudget(budget_s=10.0, backoff_s=4.0, backoff_max_s=4.0)
    start = Clock().now
    h = harness(Graph(outage=server_error(), recovers_at=start + 10.0 - 1e-6), budget)
    await deliver(h)

    calls = h.graph.calls
    assert calls[-1] == pytest.approx(start + 10.0)  # the wait before it was cut to the rest
    assert all(c < start + 10.0 - 1e-6 for c in calls[:-1])
    assert len(calls) >= 3
    assert [e.provider_message_id for e in h.of(ReplySent)] == ["m_1"]
    assert not h.of(ReplyFailed)


async def test_a_provider_recovering_just_after_the_budget_is_too_late() -> None:
    budget = RetryBudget(budget_s=10.0, backoff_s=4.0, backoff_max_s=4.0)
    start = Clock().now
    h = harness(Graph(outage=server_error(), recovers_at=start + 10.0 + 1e-3), budget)
    await deliver(h)

    assert h.graph.calls[-1] == pytest.approx(start + 10.0)
    assert h.graph.sent == 0
    (failed,) = h.of(ReplyFailed)
    assert (failed.reason, failed.error_kind) == (FAILED_BUDGET, "retryable")


async def test_the_reply_fails_with_retry_budget_exhausted_once_the_budget_is_spent() -> None:
    budget = RetryBudget(budget_s=60.0, backoff_s=0.5, backoff_max_s=8.0)
    h = harness(Graph(outage=throttled()), budget)
    await deliver(h)

    calls = h.graph.calls
    assert calls[-1] - calls[0] == pytest.approx(60.0)  # retried for the whole budget, no longer
    assert sum(h.waits) == pytest.approx(60.0)
    (failed,) = h.of(ReplyFailed)
    assert failed.reason == FAILED_BUDGET == "retry_budget_exhausted"
    assert failed.error_kind == "rate_limited"
    assert failed.error.code == 4
    assert failed.attempts == len(calls) > 5
    assert failed.event_id == "rpl_1:failed"
    assert not h.of(ReplySent)
    assert h.store.deliveries == {}


async def test_retry_after_is_honoured_then_cut_to_the_rest_of_the_budget() -> None:
    budget = RetryBudget(budget_s=300.0, backoff_s=0.5, backoff_max_s=30.0)
    # 120 s as asked; then 900 s asked with 180 s left: one more try at the budget's end
    h = harness(Graph(errors=[throttled(120.0)], outage=throttled(900.0)), budget)
    await deliver(h)

    assert h.waits == [120.0, pytest.approx(180.0)]
    assert [c - 1000.0 for c in h.graph.calls] == [0.0, 120.0, pytest.approx(300.0)]
    (failed,) = h.of(ReplyFailed)
    assert (failed.reason, failed.attempts) == (FAILED_BUDGET, 3)


async def test_a_retry_after_within_the_budget_leads_to_the_send() -> None:
    h = harness(Graph(errors=[throttled(45.0), throttled(45.0)]))
    await deliver(h)

    assert h.waits == [45.0, 45.0]
    assert len(h.of(ReplySent)) == 1
    assert h.graph.sent == 1


async def test_permanent_errors_fail_at_once_whatever_the_budget() -> None:
    h = harness(Graph(errors=[revoked()]))
    await deliver(h)

    assert len(h.graph.calls) == 1
    assert h.waits == []
    (failed,) = h.of(ReplyFailed)
    assert (failed.reason, failed.error_kind, failed.attempts) == (FAILED_PERMANENT, "reauth_required", 1)
    assert [type(e).__name__ for e in h.published] == ["ReplyFailed", "ChannelReauthRequired"]
    # Meta's reading of 190/460, the same reason onboarding gives a reconnect prompt
    assert h.published[1].reason == "password_changed"  # type: ignore[attr-defined]


async def test_a_private_reply_that_fails_gives_the_comment_back_and_one_sent_marks_it() -> None:
    private = approved("rpl_p").model_copy(update={"kind": "private_reply", "recipient_id": "c_1"})
    h = harness(Graph(errors=[revoked()]))
    await deliver(h, private)
    assert h.of(ReplyFailed) and h.store.private_replied == []
    assert h.store.released == [("conv-1", "c_1", "rpl_p")]  # another reply may try the comment
    sent = harness(Graph())
    await deliver(sent, private)
    assert sent.of(ReplySent) and sent.store.released == []
    assert sent.store.private_replied == [("conv-1", "c_1")]
    direct = harness(Graph(errors=[revoked()]))
    await deliver(direct)
    assert direct.store.released == []  # only private replies hold a comment


async def test_a_page_restricted_from_sending_fails_at_once_and_announces_the_restriction() -> None:
    restricted = meta_error("meta", 400, 10, 1893063, "(#10) This Page is temporarily restricted")
    h = harness(Graph(errors=[restricted]))
    await deliver(h)

    assert len(h.graph.calls) == 1
    assert h.waits == []
    (failed,) = h.of(ReplyFailed)
    assert (failed.reason, failed.error_kind, failed.attempts) == (FAILED_PERMANENT, "sending_restricted", 1)
    assert (failed.error.code, failed.error.subcode) == (10, 1893063)
    assert [type(e).__name__ for e in h.published] == ["ReplyFailed", "ChannelSendingRestricted"]
    announced = h.published[1]
    assert (announced.channel_id, announced.provider_code, announced.provider_subcode) == (  # type: ignore[attr-defined]
        failed.channel_id,
        10,
        1893063,
    )


async def test_a_permanent_error_after_transient_ones_fails_at_once() -> None:
    window = meta_error("whatsapp", 400, 131047, None, "outside the window")
    h = harness(Graph(errors=[server_error(), server_error(), window]))
    await deliver(h)

    assert len(h.graph.calls) == 3
    (failed,) = h.of(ReplyFailed)
    assert (failed.reason, failed.error_kind, failed.attempts) == (FAILED_PERMANENT, "window_closed", 3)


async def test_no_answer_at_all_is_retried_like_a_server_error() -> None:
    no_answer = ProviderError("meta", 0, None, None, "transport error: ConnectError", ErrorKind.RETRYABLE)
    h = harness(Graph(errors=[no_answer] * 6))
    await deliver(h)

    assert len(h.graph.calls) == 7
    assert len(h.of(ReplySent)) == 1


# --------------------------------------------------------------------------- once, across stops


async def test_a_stop_wakes_a_retry_wait_and_leaves_the_reply_to_be_redelivered() -> None:
    store = Store()
    # real waits: the provider asks for 60 s, far beyond the test
    h = harness(Graph(outage=throttled(60.0)), store=store, fake_time=False)
    assert h.delivery is not None
    task = asyncio.create_task(deliver(h))
    await h.graph.called.wait()
    await asyncio.sleep(0.05)  # in the wait now

    started = time.monotonic()
    await h.delivery.stop(timeout_s=10.0)
    with pytest.raises(DeliveryInterrupted):
        await task
    assert time.monotonic() - started < 1.0
    assert isinstance(DeliveryInterrupted(), asyncio.CancelledError)  # no retry middleware retries it
    assert len(h.graph.calls) == 1
    assert h.published == []  # neither sent nor failed: the record stays uncommitted
    # and a stopping process takes no new reply
    with pytest.raises(DeliveryInterrupted):
        await deliver(h, approved("rpl_2"))
    assert len(h.graph.calls) == 1

    # the successor (same store) gets the redelivered record after the provider recovered
    successor = harness(Graph(), store=store)
    await deliver(successor)
    assert successor.graph.sent == 1
    (sent,) = successor.of(ReplySent)
    # redelivered once more (a crash before the commit): announced again, never sent again
    again = harness(Graph(), store=store)
    await deliver(again)
    assert again.graph.calls == []
    assert [e.provider_message_id for e in again.of(ReplySent)] == [sent.provider_message_id]


async def test_stop_lets_a_send_in_flight_finish_and_cancels_it_after_the_timeout() -> None:
    h = harness(Graph(release=asyncio.Event()), fake_time=False)
    assert h.delivery is not None and h.graph.release is not None
    task = asyncio.create_task(deliver(h))
    await h.graph.called.wait()
    stopping = asyncio.create_task(h.delivery.stop(timeout_s=5.0))
    await asyncio.sleep(0.1)
    assert not stopping.done()  # waits for the send
    h.graph.release.set()
    await stopping
    await task
    assert [e.provider_message_id for e in h.of(ReplySent)] == ["m_1"]

    # a send that never ends is cancelled at the timeout, and nothing is announced
    stuck = harness(Graph(release=asyncio.Event()), fake_time=False)
    assert stuck.delivery is not None
    task = asyncio.create_task(deliver(stuck))
    await stuck.graph.called.wait()
    started = time.monotonic()
    await stuck.delivery.stop(timeout_s=0.3)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 0.25 < time.monotonic() - started < 2.0
    assert stuck.published == []


async def test_a_reply_whose_partition_moved_is_left_to_its_new_owner() -> None:
    owned = [True]
    h = harness(Graph(outage=server_error()))

    async def sleep(seconds: float) -> None:
        h.clock.now += seconds
        owned[0] = False  # a rebalance during the wait

    assert h.delivery is not None
    h.delivery.sleep = sleep
    await deliver(h, owned=lambda: owned[0])

    assert len(h.graph.calls) == 1  # no further try once the partition is another consumer's
    assert h.published == []


def test_the_consumer_owns_the_reply_while_its_partition_is_in_its_assignment() -> None:
    assigned = {TopicPartition("parley.replies.v1", 1)}
    message = SimpleNamespace(consumer=SimpleNamespace(assignment=lambda: set(assigned)))
    owned = still_assigned(message, TopicPartition("parley.replies.v1", 1))  # type: ignore[arg-type]
    assert owned()
    assigned.clear()  # revoked in a rebalance
    assert not owned()
    assigned.add(TopicPartition("parley.replies.v1", 0))  # another partition is no substitute
    assert not owned()
