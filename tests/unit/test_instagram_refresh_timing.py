"""When an Instagram-login token is refreshed: at least 24 hours old (Instagram refuses younger
tokens), within the job's lead time of its end, and not yet expired. Each boundary on both sides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from parley_providers.meta.instagram import (
    LONG_LIVED_VALIDITY,
    MIN_REFRESH_AGE,
    RefreshTiming,
    refresh_timing,
)

pytestmark = pytest.mark.unit

ISSUED = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
EXPIRES = ISSUED + LONG_LIVED_VALIDITY
LEAD = timedelta(days=10)
TICK = timedelta(microseconds=1)


def test_the_documented_figures() -> None:
    assert timedelta(hours=24) == MIN_REFRESH_AGE
    assert timedelta(days=60) == LONG_LIVED_VALIDITY


@pytest.mark.parametrize(
    ("now", "timing"),
    [
        (ISSUED, RefreshTiming.NOT_YET),
        (EXPIRES - LEAD - TICK, RefreshTiming.NOT_YET),  # just outside the lead time
        (EXPIRES - LEAD, RefreshTiming.DUE),  # exactly the lead time before the end
        (EXPIRES - TICK, RefreshTiming.DUE),
        (EXPIRES, RefreshTiming.EXPIRED),  # at its end it is gone
        (EXPIRES + timedelta(days=1), RefreshTiming.EXPIRED),
    ],
)
def test_the_lead_time_and_the_end(now: datetime, timing: RefreshTiming) -> None:
    assert refresh_timing(ISSUED, EXPIRES, now, LEAD) is timing


@pytest.mark.parametrize(
    ("age", "timing"),
    [
        (timedelta(0), RefreshTiming.TOO_YOUNG),
        (MIN_REFRESH_AGE - TICK, RefreshTiming.TOO_YOUNG),
        (MIN_REFRESH_AGE, RefreshTiming.DUE),  # "at least 24 hours old"
        (MIN_REFRESH_AGE + TICK, RefreshTiming.DUE),
    ],
)
def test_the_24_hour_age(age: timedelta, timing: RefreshTiming) -> None:
    # a lead longer than the token's life puts every moment inside it: only the age decides
    now = ISSUED + age
    assert refresh_timing(ISSUED, EXPIRES, now, LONG_LIVED_VALIDITY + timedelta(days=1)) is timing


def test_a_token_refreshed_late_in_its_life_is_judged_from_its_refresh() -> None:
    refreshed_at = EXPIRES - timedelta(days=5)
    new_end = refreshed_at + LONG_LIVED_VALIDITY
    assert (
        refresh_timing(refreshed_at, new_end, refreshed_at + timedelta(hours=1), LEAD)
        is RefreshTiming.NOT_YET
    )
    assert refresh_timing(refreshed_at, new_end, new_end - LEAD, LEAD) is RefreshTiming.DUE


def test_an_empty_host_setting_means_instagrams_own_hosts() -> None:
    """The services name no Instagram host: an empty setting is the provider package's."""
    from types import SimpleNamespace

    import httpx
    from parley_providers.meta.instagram import (
        INSTAGRAM_GRAPH_BASE_URL,
        INSTAGRAM_OAUTH_BASE_URL,
        instagram_client,
        instagram_sender_client,
    )
    from pydantic import SecretStr

    http = httpx.AsyncClient()
    sender = instagram_sender_client(http, SimpleNamespace(instagram_graph_base_url="", graph_api_version=""))
    assert sender._graph == INSTAGRAM_GRAPH_BASE_URL
    login = instagram_client(
        http,
        SimpleNamespace(
            instagram_oauth_base_url="",
            instagram_graph_base_url="http://127.0.0.1:9/instagram",
            graph_api_version="",
            instagram_app_id="app",
            instagram_app_secret=SecretStr("secret"),
        ),
    )
    assert login is not None
    assert (login._oauth, login._graph) == (INSTAGRAM_OAUTH_BASE_URL, "http://127.0.0.1:9/instagram")
