"""Retry-then-dead-letter consumption, backoff, transient errors and DLQ headers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import aiokafka.errors
import psycopg
import psycopg_pool
import pymongo.errors
import pytest
from parley_shared import kafka
from parley_shared.kafka import (
    RetryPolicy,
    RetryThenDeadLetter,
    TransientError,
    dlq_headers,
    is_transient,
)

pytestmark = pytest.mark.unit


# --- RetryPolicy ---------------------------------------------------------------------------


def test_delay_doubles_per_attempt_until_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka.random, "random", lambda: 1.0)  # the top of the jitter range
    policy = RetryPolicy(backoff_s=0.5, backoff_max_s=3.0)

    delays = [policy.delay(n) for n in range(1, 7)]

    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_delay_jitter_stays_between_half_and_the_full_backoff() -> None:
    policy = RetryPolicy(backoff_s=0.2, backoff_max_s=10.0)
    for attempt in range(1, 12):
        base = min(10.0, 0.2 * 2 ** (attempt - 1))
        for _ in range(50):
            assert base / 2 <= policy.delay(attempt) <= base


def test_delay_never_exceeds_the_cap_even_after_many_attempts() -> None:
    policy = RetryPolicy(backoff_s=0.2, backoff_max_s=10.0)
    assert all(policy.delay(attempt) <= 10.0 for attempt in range(1, 200))


def test_zero_backoff_means_no_delay() -> None:
    assert RetryPolicy(backoff_s=0).delay(5) == 0


# --- is_transient ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        pymongo.errors.ServerSelectionTimeoutError("no servers"),
        pymongo.errors.AutoReconnect("connection reset"),
        pymongo.errors.NetworkTimeout("timed out"),
        aiokafka.errors.KafkaConnectionError("broker down"),
        aiokafka.errors.KafkaTimeoutError(),
        TimeoutError(),
        TransientError("channel directory not caught up"),
        # PostgreSQL stopped or refusing (the store fault of make fault dead-lettered one before)
        psycopg.OperationalError("server closed the connection unexpectedly"),
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg_pool.PoolTimeout("couldn't get a connection after 5.00 sec"),
    ],
)
def test_unreachable_dependencies_are_transient(error: BaseException) -> None:
    assert is_transient(error)


def test_subclasses_of_transient_error_are_transient() -> None:
    class DirectoryNotReady(TransientError):
        pass

    assert is_transient(DirectoryNotReady())


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad data"),
        KeyError("type"),
        RuntimeError("bug"),
        pymongo.errors.DuplicateKeyError("dup"),
        pymongo.errors.OperationFailure("not allowed"),
        psycopg.errors.UniqueViolation("duplicate key"),
        psycopg.errors.InvalidTextRepresentation("bad input"),
    ],
)
def test_failures_of_the_record_itself_are_not_transient(error: BaseException) -> None:
    assert not is_transient(error)


# --- dlq_headers -----------------------------------------------------------------------------


def record(**overrides: Any) -> SimpleNamespace:
    fields: dict[str, Any] = {
        "topic": "ns.parley.messages.inbound.v1",
        "partition": 4,
        "offset": 1234,
        "timestamp": 1_714_564_800_000,
        "key": b"conv_1",
        "value": b'{"event_id":"msg_1"}',
        "headers": [("ce_id", b"msg_1"), ("ce_type", b"parley.message.received.v1"), ("odd", "str")],
    }
    fields.update(overrides)
    return SimpleNamespace(**fields)


def test_dlq_headers_say_why_and_where_the_record_came_from() -> None:
    headers = dlq_headers(record(), ValueError("sequence went backwards"), 3)

    assert headers["parley_dlq_error"] == "ValueError: sequence went backwards"
    assert headers["parley_dlq_attempts"] == "3"
    assert headers["parley_dlq_topic"] == "ns.parley.messages.inbound.v1"
    assert headers["parley_dlq_partition"] == "4"
    assert headers["parley_dlq_offset"] == "1234"
    assert headers["parley_dlq_timestamp_ms"] == "1714564800000"
    assert datetime.fromisoformat(headers["parley_dlq_failed_at"]).utcoffset() is not None


def test_dlq_headers_keep_the_original_headers_decoded() -> None:
    headers = dlq_headers(record(), ValueError("x"), 1)

    assert headers["ce_id"] == "msg_1"
    assert headers["ce_type"] == "parley.message.received.v1"
    assert headers["odd"] == "str"


def test_dlq_headers_of_a_record_without_headers() -> None:
    headers = dlq_headers(record(headers=None), ValueError("x"), 1)
    assert headers["parley_dlq_topic"] == "ns.parley.messages.inbound.v1"


def test_dlq_headers_bound_the_error_text() -> None:
    headers = dlq_headers(record(), ValueError("x" * 10_000), 1)
    assert len(headers["parley_dlq_error"]) <= 2000
    assert headers["parley_dlq_error"].startswith("ValueError: xxx")


# --- the middleware ------------------------------------------------------------------------


class FakeSink:
    """Records what would have been published to the DLQ; can be told to fail."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.calls: list[tuple[Any, BaseException, int]] = []
        self.error = error

    async def __call__(self, rec: Any, error: BaseException, attempts: int) -> None:
        self.calls.append((rec, error, attempts))
        if self.error is not None:
            raise self.error


class FakeSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class ScriptedHandler:
    """Raises the scripted errors in order, then returns ``result``."""

    def __init__(self, *errors: BaseException, result: Any = "handled") -> None:
        self.errors = list(errors)
        self.result = result
        self.calls = 0

    async def __call__(self, msg: Any) -> Any:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.result


class SinkDown(Exception):
    pass


def stream_message() -> SimpleNamespace:
    return SimpleNamespace(raw_message=record())


async def consume(
    handler: Callable[[Any], Awaitable[Any]],
    sink: FakeSink | None,
    sleep: FakeSleep,
    policy: RetryPolicy | None = None,
    msg: SimpleNamespace | None = None,
) -> Any:
    factory = RetryThenDeadLetter(sink, policy or RetryPolicy(max_attempts=3, backoff_s=0), sleep=sleep)
    msg = msg or stream_message()
    middleware = factory(msg, context=None)
    return await middleware.consume_scope(handler, msg)  # type: ignore[arg-type]


async def test_a_record_that_keeps_failing_is_dead_lettered_once_after_all_attempts() -> None:
    sink, sleep = FakeSink(), FakeSleep()
    handler = ScriptedHandler(ValueError("1"), ValueError("2"), ValueError("3"), ValueError("4"))
    msg = stream_message()

    result = await consume(handler, sink, sleep, msg=msg)

    assert result is None
    assert handler.calls == 3
    assert len(sink.calls) == 1
    rec, error, attempts = sink.calls[0]
    assert rec is msg.raw_message
    assert isinstance(error, ValueError)
    assert str(error) == "3"
    assert attempts == 3
    assert len(sleep.delays) == 2  # a pause between attempts, none after the last


async def test_a_record_that_fails_then_succeeds_returns_the_result_and_is_not_dead_lettered() -> None:
    sink, sleep = FakeSink(), FakeSleep()
    handler = ScriptedHandler(ValueError("1"), ValueError("2"), result={"ok": True})

    result = await consume(handler, sink, sleep)

    assert result == {"ok": True}
    assert handler.calls == 3
    assert sink.calls == []


async def test_a_record_that_succeeds_at_once_is_neither_retried_nor_delayed() -> None:
    sink, sleep = FakeSink(), FakeSleep()
    handler = ScriptedHandler(result=42)

    assert await consume(handler, sink, sleep) == 42
    assert handler.calls == 1
    assert sleep.delays == []
    assert sink.calls == []


async def test_a_transient_error_is_retried_beyond_max_attempts_and_never_dead_lettered() -> None:
    sink, sleep = FakeSink(), FakeSleep()
    handler = ScriptedHandler(*(pymongo.errors.AutoReconnect(f"down {i}") for i in range(6)), result="late")

    result = await consume(handler, sink, sleep)

    assert result == "late"
    assert handler.calls == 7
    assert sink.calls == []
    assert len(sleep.delays) == 6


async def test_retries_wait_with_the_policys_growing_backoff() -> None:
    sink, sleep = FakeSink(), FakeSleep()
    policy = RetryPolicy(max_attempts=4, backoff_s=1.0, backoff_max_s=100.0)
    handler = ScriptedHandler(ValueError("1"), ValueError("2"), ValueError("3"))

    await consume(handler, sink, sleep, policy=policy)

    assert len(sleep.delays) == 3
    for attempt, delay in enumerate(sleep.delays, start=1):
        full = 1.0 * 2 ** (attempt - 1)
        assert full / 2 <= delay <= full


async def test_a_failing_sink_makes_consume_scope_raise_so_the_record_is_not_committed() -> None:
    sink, sleep = FakeSink(error=SinkDown("dlq unavailable")), FakeSleep()
    handler = ScriptedHandler(*(ValueError(str(i)) for i in range(5)))

    with pytest.raises(SinkDown, match="dlq unavailable"):
        await consume(handler, sink, sleep)

    assert len(sink.calls) == 1
    assert handler.calls == 3


async def test_a_failing_sink_pauses_before_the_record_comes_back() -> None:
    sink, sleep = FakeSink(error=SinkDown("dlq unavailable")), FakeSleep()
    policy = RetryPolicy(max_attempts=2, backoff_s=1.0, backoff_max_s=100.0)
    handler = ScriptedHandler(ValueError("1"), ValueError("2"))

    with pytest.raises(SinkDown):
        await consume(handler, sink, sleep, policy=policy)

    # one backoff between the two attempts, then a pause so a rewind is not a hot loop
    assert len(sleep.delays) == 2
    assert sleep.delays[-1] > 0


async def test_without_a_sink_a_poison_record_is_not_committed() -> None:
    sleep = FakeSleep()
    handler = ScriptedHandler(*(ValueError(str(i)) for i in range(5)))

    with pytest.raises(RuntimeError, match="no dead-letter sink"):
        await consume(handler, None, sleep)


async def test_the_sink_can_be_set_after_the_factory_is_built() -> None:
    sink, sleep = FakeSink(), FakeSleep()
    factory = RetryThenDeadLetter(None, RetryPolicy(max_attempts=1, backoff_s=0), sleep=sleep)
    factory.sink = sink
    msg = stream_message()

    result = await factory(msg, context=None).consume_scope(ScriptedHandler(ValueError("x")), msg)  # type: ignore[arg-type]

    assert result is None
    assert [attempts for _, _, attempts in sink.calls] == [1]


async def test_cancellation_is_not_retried_nor_dead_lettered() -> None:
    sink, sleep = FakeSink(), FakeSleep()
    handler = ScriptedHandler(asyncio.CancelledError())

    with pytest.raises(asyncio.CancelledError):
        await consume(handler, sink, sleep)

    assert handler.calls == 1
    assert sink.calls == []


async def test_transient_failures_do_not_use_up_the_attempts_of_a_failing_record() -> None:
    sink, sleep = FakeSink(), FakeSleep()
    outage = [pymongo.errors.AutoReconnect(f"down {i}") for i in range(5)]
    handler = ScriptedHandler(*outage, ValueError("1"), ValueError("2"), ValueError("3"))

    await consume(handler, sink, sleep)

    assert handler.calls == 5 + 3  # the outage, then max_attempts real attempts
    [(_, error, attempts)] = sink.calls
    assert isinstance(error, ValueError)
    assert attempts == 3


def test_log_context_of_a_record_comes_from_its_cloudevents_headers() -> None:
    from parley_shared.kafka import record_log_context

    record = SimpleNamespace(
        headers=[
            ("ce_id", b"msg_1"),
            ("ce_tenantid", b"tenant-a"),
            ("ce_subject", b"conv_9"),
            ("other", b"x"),
        ]
    )
    assert record_log_context(record) == {"event_id": "msg_1", "tenant_id": "tenant-a", "subject": "conv_9"}
    assert record_log_context(SimpleNamespace(headers=None)) == {}


async def test_bad_data_is_dead_lettered_at_once_without_retries() -> None:
    import pydantic
    from parley_shared.kafka import PermanentError

    class Model(pydantic.BaseModel):
        n: int

    try:
        Model.model_validate({"n": "not a number"})
    except pydantic.ValidationError as exc:
        invalid = exc
    for error in (invalid, PermanentError("cannot be normalized")):
        sink, sleep = FakeSink(), FakeSleep()
        handler = ScriptedHandler(error, "never reached")
        assert await consume(handler, sink, sleep) is None
        assert handler.calls == 1
        assert [attempts for _, _, attempts in sink.calls] == [1]
