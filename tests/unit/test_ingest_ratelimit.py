"""Ingest's rate limits (pure): a token bucket, and one per client for X's CRC checks."""

from __future__ import annotations

import pytest
from parley_ingest.domain.ratelimit import ClientBuckets, TokenBucket

pytestmark = pytest.mark.unit


def test_every_client_has_its_own_crc_bucket() -> None:
    buckets = ClientBuckets(capacity=2, per_second=1.0)
    assert [buckets.take("flooder", 100.0) for _ in range(3)] == [True, True, False]
    assert buckets.take("x", 100.0)  # X's check is not spent by the flooder's
    assert buckets.take("x", 100.0)
    assert not buckets.take("x", 100.0)
    assert buckets.take("flooder", 101.1)  # each refills at its own rate


def test_the_least_recently_seen_client_is_forgotten_past_the_bound() -> None:
    buckets = ClientBuckets(capacity=1, per_second=0.001, max_clients=3)
    for client in ("a", "b", "c"):
        assert buckets.take(client, 0.0)
    assert not buckets.take("a", 0.0)  # "a" is now the most recently seen, "b" the least
    assert buckets.take("d", 0.0)
    assert len(buckets) == 3
    assert not buckets.take("a", 0.0)  # kept (and still empty)
    assert not buckets.take("c", 0.0)
    assert buckets.take("b", 0.0)  # forgotten: a full bucket again
    assert len(buckets) == 3


def test_the_token_bucket_allows_its_capacity_at_once_then_its_rate() -> None:
    bucket = TokenBucket(capacity=2, per_second=1.0, now=100.0)
    assert [bucket.take(100.0) for _ in range(3)] == [True, True, False]
    assert bucket.retry_after() == 1
    assert not bucket.take(100.5)
    assert bucket.take(101.6)  # refilled by the elapsed time
    assert not bucket.take(101.6)
    assert [bucket.take(1000.0), bucket.take(1000.0), bucket.take(1000.0)] == [True, True, False]
