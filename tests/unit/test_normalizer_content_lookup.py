"""The normalizer completes messages its webhook names by ids only (Instagram mentions): the text
and author from the provider's lookup, transient failures retried a bounded number of times with
backoff, and a message whose lookup still fails published all the same, marked unavailable with a
reason from a fixed set and counted."""

from __future__ import annotations

from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from parley_events import ChannelSnapshot, ChannelStatus, Event, MessageReceived, Provider
from parley_ingest.domain import deliveries
from parley_ingest.domain.dedupe import RecentIds
from parley_ingest.domain.normalize.content import UNAVAILABLE_REASONS, backoff_s
from parley_ingest.service import ContentLookups, Normalizer
from parley_providers.base import FetchedContent
from parley_providers.errors import ErrorKind, ProviderError
from parley_providers.inbound import ContentToFetch
from parley_shared.vault import Credential, VaultError
from prometheus_client import REGISTRY

from tests.support import fixtures
from tests.support.aliases import empty_aliases
from tests.support.fakes.ingest import FakeContentLookup
from tests.support.fakes.policy import FakeCredentials

pytestmark = pytest.mark.unit

NOW = datetime(2024, 6, 10, 12, 0, tzinfo=UTC)
IG_ID = "17841460512398765"
TOKEN = "EAA-page-token-of-the-linked-page"


class Channels:
    """One Instagram channel, connected through its Page or with Instagram Login."""

    def __init__(self, connect_path: str | None = "page") -> None:
        self.connect_path = connect_path

    def lookup(self, provider: Provider, account_id: str) -> ChannelSnapshot:
        return ChannelSnapshot(
            channel_id="chn_ig",
            tenant_id="ten_1",
            provider=provider,
            account_id=account_id,
            status=ChannelStatus.ACTIVE,
            connect_path=self.connect_path,
            revision=1,
        )

    lookup_business = lookup

    async def catch_up(self, timeout: float) -> None:
        return None


class Run:
    """A normalizer on fakes; what it published and how long it waited between attempts."""

    def __init__(
        self,
        lookup: FakeContentLookup | None,
        *,
        credentials: FakeCredentials | None = None,
        connect_path: str | None = "page",
        attempts: int = 3,
    ) -> None:
        self.published: list[Event] = []
        self.waits: list[float] = []
        self.lookup = lookup
        tokens = (
            credentials if credentials is not None else FakeCredentials(Credential("chn_ig", TOKEN, None))
        )

        async def publish(event: Event, event_id: str) -> None:
            self.published.append(event)

        async def sleep(seconds: float) -> None:
            self.waits.append(seconds)

        content = ContentLookups(
            lookups={Provider.INSTAGRAM: lookup} if lookup is not None else {},
            tokens=tokens,
            attempts=attempts,
            backoff_s=0.5,
            backoff_max_s=5.0,
            sleep=sleep,
        )
        self.worker = Normalizer(
            Channels(connect_path),  # type: ignore[arg-type]
            publish,
            0.0,
            RecentIds(100),
            empty_aliases(),
            clock=lambda: NOW,
            content=content,
        )

    def normalize(self, fixture: str) -> MessageReceived:
        payload = fixtures.load("meta", fixture)
        record = deliveries.archive_record("meta", orjson.dumps(payload), {}, NOW, payload)
        _complete(self.worker.normalize(record))
        [message] = [e for e in self.published if isinstance(e, MessageReceived)]
        return message


def _complete(coroutine: Coroutine[Any, Any, Any]) -> Any:
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the normalizer waited on something outside memory")


def unavailable(reason: str) -> float:
    labels = {"provider": "instagram", "reason": reason}
    return REGISTRY.get_sample_value("parley_normalizer_content_unavailable_total", labels) or 0.0


def transient(status: int = 500, retry_after_s: float | None = None) -> ProviderError:
    kind = ErrorKind.RATE_LIMITED if status == 429 else ErrorKind.RETRYABLE
    return ProviderError(
        "meta", status, 2, None, "Service temporarily unavailable", kind, retry_after_s=retry_after_s
    )


def test_a_comment_mention_gets_the_comments_text_and_its_authors_username() -> None:
    lookup = FakeContentLookup(content=FetchedContent("@acme do you ship to Porto?", "rui.p"))
    run = Run(lookup)

    message = run.normalize("instagram_mention")

    assert message.content.text == "@acme do you ship to Porto?"
    assert (message.author.name, message.author.username) == ("rui.p", "rui.p")
    assert message.content.unavailable is None
    assert message.provider_message_id == "mention:17988877766655544"
    # one call: the comment, with the channel's token, on the path its channel was connected by
    assert lookup.calls == [
        (IG_ID, ContentToFetch("mentioned_comment", "17988877766655544", "18066677788899900"), TOKEN, "page")
    ]
    assert run.waits == []


def test_a_caption_mention_of_an_instagram_login_account_is_asked_on_its_own_path() -> None:
    lookup = FakeContentLookup(content=FetchedContent("New boots from @acme", "marta.s"))
    run = Run(lookup, connect_path="instagram_login")

    message = run.normalize("instagram_mention_caption")

    assert (message.content.text, message.author.name) == ("New boots from @acme", "marta.s")
    [(_, what, _, path)] = lookup.calls
    assert (what.kind, what.object_id, path) == ("mentioned_media", "18066677788899911", "instagram_login")


def test_a_transient_failure_is_retried_with_backoff_then_the_content_is_used() -> None:
    lookup = FakeContentLookup(
        content=FetchedContent("@acme hi", "rui.p"),
        outcomes=[transient(500), transient(429, retry_after_s=120.0)],
    )
    run = Run(lookup)

    message = run.normalize("instagram_mention")

    assert message.content.text == "@acme hi"
    assert message.content.unavailable is None
    assert len(lookup.calls) == 3
    # doubling from 0.5 s; Graph's 2-minute Retry-After capped at the 5 s the partition may wait
    assert run.waits == [0.5, 5.0]


def test_a_lookup_still_failing_after_the_last_attempt_is_published_marked_and_counted() -> None:
    lookup = FakeContentLookup(outcomes=[transient(), transient(), transient(), transient()])
    run = Run(lookup, attempts=3)
    before = unavailable("provider_unavailable")

    message = run.normalize("instagram_mention")

    assert len(lookup.calls) == 3  # bounded: the delivery never waits for ever
    assert run.waits == [0.5, 1.0]
    assert message.content.unavailable == "provider_unavailable"
    assert message.content.text is None
    assert message.provider_message_id == "mention:17988877766655544"  # the same id as a fetched one
    assert unavailable("provider_unavailable") == before + 1


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            ProviderError("meta", 400, 100, 33, "Object does not exist", ErrorKind.INVALID_REQUEST),
            "not_found",
        ),
        (
            ProviderError("meta", 403, 10, None, "Requires permission", ErrorKind.PERMISSION_MISSING),
            "permission_missing",
        ),
        (
            ProviderError("meta", 400, 190, 463, "Session has expired", ErrorKind.REAUTH_REQUIRED),
            "reauth_required",
        ),
    ],
    ids=["deleted-media", "permission", "dead-token"],
)
def test_a_permanent_failure_is_not_retried_and_names_its_reason(error: ProviderError, reason: str) -> None:
    lookup = FakeContentLookup(outcomes=[error])
    run = Run(lookup)
    before = unavailable(reason)

    message = run.normalize("instagram_mention")

    assert len(lookup.calls) == 1
    assert run.waits == []
    assert message.content.unavailable == reason
    assert unavailable(reason) == before + 1


def test_a_channel_without_a_token_or_a_normalizer_without_lookups_still_publishes_the_mention() -> None:
    no_token = Run(FakeContentLookup(), credentials=FakeCredentials())
    not_configured = Run(None)

    assert no_token.normalize("instagram_mention").content.unavailable == "no_credentials"
    assert no_token.lookup is not None and no_token.lookup.calls == []
    assert not_configured.normalize("instagram_mention").content.unavailable == "not_configured"


def test_a_token_the_keys_do_not_open_marks_the_mention_instead_of_holding_it() -> None:
    class Undecryptable(FakeCredentials):
        async def get(self, channel_id: str) -> Credential | None:
            raise VaultError("credential does not decrypt (wrong key or tampered)")

    run = Run(FakeContentLookup(), credentials=Undecryptable())

    assert run.normalize("instagram_mention").content.unavailable == "no_credentials"
    assert run.lookup is not None and run.lookup.calls == []


def test_a_repeat_of_a_published_mention_is_not_looked_up_again() -> None:
    lookup = FakeContentLookup(content=FetchedContent("@acme hi", "rui.p"))
    run = Run(lookup)
    payload = fixtures.load("meta", "instagram_mention")

    for _ in range(2):  # the provider re-sends the same delivery
        record = deliveries.archive_record("meta", orjson.dumps(payload), {}, NOW, payload)
        _complete(run.worker.normalize(record))

    assert len(lookup.calls) == 1
    assert len([e for e in run.published if isinstance(e, MessageReceived)]) == 1


def test_messages_with_their_content_in_the_webhook_are_never_looked_up() -> None:
    lookup = FakeContentLookup()
    run = Run(lookup)

    message = run.normalize("instagram_comment")

    assert lookup.calls == []
    assert message.content.text and message.content.unavailable is None


def test_backoff_doubles_and_never_exceeds_its_cap() -> None:
    assert [backoff_s(n, 0.5, 3.0) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]
    assert backoff_s(1, 0.5, 3.0, retry_after_s=2.0) == 2.0
    assert backoff_s(1, 0.5, 3.0, retry_after_s=600.0) == 3.0


def test_the_reason_labels_are_a_fixed_set() -> None:
    assert {
        "not_configured",
        "no_credentials",
        "reauth_required",
        "permission_missing",
        "not_found",
        "rate_limited",
        "provider_unavailable",
    } == UNAVAILABLE_REASONS
