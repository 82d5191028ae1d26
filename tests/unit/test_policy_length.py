"""Policy: text length as each provider counts it (PLATFORM-RULES: Messenger 2000 characters,
Instagram 1000 UTF-8 bytes, WhatsApp 4096 characters, X DM 10,000 characters, X post 280 weighted).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from parley_events import ChannelRole, ChannelSnapshot, ChannelStatus, Provider
from parley_policy.domain.decision import ConversationFacts, Decision, ReplyRequest, decide
from parley_policy.domain.length import MAX_TEXT_CHARACTERS, measure
from parley_policy.domain.rules import Counting
from parley_providers.x.length import _URL_TRAILING, URL_WEIGHT, _weigh, x_weighted_length

pytestmark = pytest.mark.unit

LAST = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
NOW = LAST + timedelta(minutes=10)

GRIN = "\U0001f600"  # 😀 one code point, 2 UTF-16 units, 4 UTF-8 bytes
THUMBS_MEDIUM = "\U0001f44d\U0001f3fd"  # 👍🏽 emoji + skin-tone modifier
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # 👨‍👩‍👧‍👦 ZWJ sequence
FLAG_FR = "\U0001f1eb\U0001f1f7"  # 🇫🇷 two regional indicators
RAINBOW_FLAG = "\U0001f3f3\ufe0f\u200d\U0001f308"  # 🏳️‍🌈 with a variation selector and ZWJ
RED_HEART = "\u2764\ufe0f"  # ❤️
TECHNOLOGIST = "\U0001f469\U0001f3fd\u200d\U0001f4bb"  # 👩🏽‍💻 modifier and ZWJ
CJK = "\u4e2d"  # 中 3 UTF-8 bytes, X weight 2
E_ACUTE = "\u00e9"  # é 2 UTF-8 bytes


def channel(provider: Provider, text_limit: int | None = None) -> ChannelSnapshot:
    return ChannelSnapshot(
        channel_id="chn_1",
        tenant_id="ten_acme",
        provider=provider,
        account_id="104512345678901",
        status=ChannelStatus.ACTIVE,
        revision=1,
        human_agent_tag=False,
        text_limit=text_limit,
    )


def reply(
    provider: Provider, text: str | None, kind: str = "direct", text_limit: int | None = None
) -> Decision:
    return decide(
        ReplyRequest(kind=kind, text=text, comment_id="c"),  # the comment or post a public reply answers
        ConversationFacts(
            provider=provider,
            last_customer_message_at=LAST,
            comment_times={"c": LAST},
            mention_ids=frozenset({"c"}),
        ),
        channel(provider, text_limit),
        ChannelRole.CONTRIBUTOR,
        NOW,
    )


def codes(decision: Decision) -> list[str]:
    return [reason.code for reason in decision.reasons]


# --- limits per provider, through the decision -----------------------------------------------------

LIMIT_CASES = [
    # Messenger: 2000 characters, counted in code points
    pytest.param(Provider.MESSENGER, "direct", "a" * 2000, 2000, 2000, True, id="messenger-2000"),
    pytest.param(Provider.MESSENGER, "direct", "a" * 2001, 2001, 2000, False, id="messenger-2001"),
    pytest.param(Provider.MESSENGER, "direct", GRIN * 2000, 2000, 2000, True, id="messenger-2000-emoji"),
    pytest.param(Provider.MESSENGER, "direct", GRIN * 2001, 2001, 2000, False, id="messenger-2001-emoji"),
    pytest.param(
        Provider.MESSENGER, "direct", (CJK + GRIN) * 1000, 2000, 2000, True, id="messenger-2000-mixed"
    ),
    pytest.param(
        Provider.MESSENGER, "private_reply", "a" * 2001, 2001, 2000, False, id="messenger-private-2001"
    ),
    # Instagram: 1000 UTF-8 bytes
    pytest.param(Provider.INSTAGRAM, "direct", "a" * 1000, 1000, 1000, True, id="instagram-1000-ascii"),
    pytest.param(Provider.INSTAGRAM, "direct", "a" * 1001, 1001, 1000, False, id="instagram-1001-ascii"),
    pytest.param(Provider.INSTAGRAM, "direct", E_ACUTE * 500, 1000, 1000, True, id="instagram-500x2"),
    pytest.param(Provider.INSTAGRAM, "direct", E_ACUTE * 501, 1002, 1000, False, id="instagram-501x2"),
    pytest.param(Provider.INSTAGRAM, "direct", CJK * 333, 999, 1000, True, id="instagram-333-cjk"),
    pytest.param(Provider.INSTAGRAM, "direct", CJK * 334, 1002, 1000, False, id="instagram-334-cjk"),
    pytest.param(Provider.INSTAGRAM, "direct", GRIN * 250, 1000, 1000, True, id="instagram-250-emoji"),
    pytest.param(Provider.INSTAGRAM, "direct", GRIN * 251, 1004, 1000, False, id="instagram-251-emoji"),
    pytest.param(
        Provider.INSTAGRAM, "direct", "a" * 999 + E_ACUTE, 1001, 1000, False, id="instagram-last-char-2-bytes"
    ),
    # WhatsApp: 4096 characters
    pytest.param(Provider.WHATSAPP, "direct", "a" * 4096, 4096, 4096, True, id="whatsapp-4096"),
    pytest.param(Provider.WHATSAPP, "direct", "a" * 4097, 4097, 4096, False, id="whatsapp-4097"),
    pytest.param(Provider.WHATSAPP, "direct", CJK * 4096, 4096, 4096, True, id="whatsapp-4096-cjk"),
    # X direct messages: 10,000 characters
    pytest.param(Provider.X, "direct", "a" * 10_000, 10_000, 10_000, True, id="x-dm-10000"),
    pytest.param(Provider.X, "direct", "a" * 10_001, 10_001, 10_000, False, id="x-dm-10001"),
    pytest.param(Provider.X, "direct", CJK * 10_000, 10_000, 10_000, True, id="x-dm-10000-cjk"),
    # X posts (mentions): 280 weighted
    pytest.param(Provider.X, "mention", "a" * 280, 280, 280, True, id="x-mention-280-latin"),
    pytest.param(Provider.X, "mention", "a" * 281, 281, 280, False, id="x-mention-281-latin"),
    pytest.param(Provider.X, "mention", CJK * 140, 280, 280, True, id="x-mention-140-cjk"),
    pytest.param(Provider.X, "mention", CJK * 141, 282, 280, False, id="x-mention-141-cjk"),
    pytest.param(Provider.X, "mention", GRIN * 140, 280, 280, True, id="x-mention-140-emoji"),
    pytest.param(Provider.X, "mention", GRIN * 141, 282, 280, False, id="x-mention-141-emoji"),
    pytest.param(Provider.X, "mention", FAMILY * 140, 280, 280, True, id="x-mention-140-families"),
    pytest.param(Provider.X, "mention", "a" * 279 + CJK, 281, 280, False, id="x-mention-279+cjk"),
    pytest.param(
        Provider.X, "mention", "a" * 256 + " https://example.com/" + "p" * 500, 280, 280, True, id="x-url-280"
    ),
    pytest.param(
        Provider.X,
        "mention",
        "a" * 257 + " https://example.com/" + "p" * 500,
        281,
        280,
        False,
        id="x-url-281",
    ),
]


@pytest.mark.parametrize(("provider", "kind", "text", "length", "limit", "ok"), LIMIT_CASES)
def test_text_limits(provider: Provider, kind: str, text: str, length: int, limit: int, ok: bool) -> None:
    facts = ConversationFacts(provider=provider, last_customer_message_at=LAST, comment_times={"c": NOW})
    decision = decide(
        ReplyRequest(kind=kind, text=text, comment_id="c"),
        facts,
        channel(provider),
        ChannelRole.CONTRIBUTOR,
        NOW,
    )
    assert decision.length == length
    assert decision.limit == limit
    assert decision.approved is ok, codes(decision)
    assert codes(decision) == ([] if ok else ["TOO_LONG"])


def test_emoji_text_passes_messenger_though_longer_in_utf16_and_bytes() -> None:
    text = (GRIN + THUMBS_MEDIUM) * 666 + "ab"  # 2000 code points
    assert len(text) == 2000
    assert len(text.encode("utf-16-le")) // 2 > 2000
    assert len(text.encode("utf-8")) > 2000
    decision = reply(Provider.MESSENGER, text)
    assert decision.approved, codes(decision)
    assert decision.length == 2000


def test_too_long_reason_names_the_length_and_limit() -> None:
    decision = reply(Provider.INSTAGRAM, CJK * 334)
    (reason,) = decision.reasons
    assert reason.code == "TOO_LONG"
    assert "1002" in reason.message
    assert "1000" in reason.message
    assert "utf8_bytes" in reason.message


# --- the channel's own stricter limit --------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "kind", "text_limit", "text", "limit", "ok"),
    [
        (Provider.MESSENGER, "direct", 1986, "a" * 1986, 1986, True),
        (Provider.MESSENGER, "direct", 1986, "a" * 1987, 1986, False),
        (Provider.MESSENGER, "direct", 1986, GRIN * 1987, 1986, False),
        (Provider.MESSENGER, "direct", 5000, "a" * 2000, 2000, True),
        (Provider.MESSENGER, "direct", 5000, "a" * 2001, 2000, False),
        (Provider.MESSENGER, "direct", 2000, "a" * 2000, 2000, True),
        (Provider.WHATSAPP, "direct", 1000, "a" * 1001, 1000, False),
        (Provider.INSTAGRAM, "direct", 500, E_ACUTE * 250, 500, True),
        (Provider.INSTAGRAM, "direct", 500, E_ACUTE * 251, 500, False),
        (Provider.X, "mention", 140, CJK * 70, 140, True),
        (Provider.X, "mention", 140, CJK * 71, 140, False),
        (Provider.X, "direct", 20_000, "a" * 10_001, 10_000, False),
    ],
)
def test_channel_text_limit_applies_when_stricter(
    provider: Provider, kind: str, text_limit: int, text: str, limit: int, ok: bool
) -> None:
    decision = reply(provider, text, kind=kind, text_limit=text_limit)
    assert decision.limit == limit
    assert decision.approved is ok, codes(decision)
    assert codes(decision) == ([] if ok else ["TOO_LONG"])


# --- empty replies ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [None, "", " ", "\n\t  \r\n", "\u3000"])
@pytest.mark.parametrize(
    ("provider", "kind"),
    [
        (Provider.MESSENGER, "direct"),
        (Provider.INSTAGRAM, "direct"),
        (Provider.WHATSAPP, "direct"),
        (Provider.X, "direct"),
        (Provider.X, "mention"),
        (Provider.MESSENGER, "comment"),
    ],
)
def test_blank_text_is_empty(text: str | None, provider: Provider, kind: str) -> None:
    decision = reply(provider, text, kind=kind)
    assert not decision.approved
    assert codes(decision) == ["EMPTY"]
    assert decision.length is None


# --- measure and the X weighting -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "counting", "expected"),
    [
        ("hello", Counting.CHARACTERS, 5),
        (GRIN, Counting.CHARACTERS, 1),
        (FAMILY, Counting.CHARACTERS, 7),
        ("hello", Counting.UTF8_BYTES, 5),
        (E_ACUTE, Counting.UTF8_BYTES, 2),
        (CJK, Counting.UTF8_BYTES, 3),
        (GRIN, Counting.UTF8_BYTES, 4),
        ("hello", Counting.X_WEIGHTED, 5),
        (CJK, Counting.X_WEIGHTED, 2),
        (GRIN, Counting.X_WEIGHTED, 2),
    ],
)
def test_measure(text: str, counting: Counting, expected: int) -> None:
    assert measure(text, counting) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("Hello, world!", 13),
        ("a" * 280, 280),
        # Latin-1, Latin Extended, Greek, Cyrillic, Hebrew, Arabic, Devanagari, Thai: weight 1 (< U+1100)
        ("\u00e9\u0161\u03b1\u0434\u05d0\u0627\u0915\u0e01", 8),
        # NFC first: e + combining acute is one character
        ("e\u0301", 1),
        # General punctuation in twitter-text's light ranges weighs 1: spaces, dashes, quotes, primes
        ("\u2002\u2014\u2019\u201c\u2032", 5),
        # ...outside them it weighs 2 (the ellipsis U+2026 is not in a light range)
        ("\u2026", 2),
        # CJK, kana, Hangul: 2
        (CJK * 140, 280),
        ("\u3042\u30a2\ud55c", 6),
        # one emoji weighs 2, however many code points it is made of
        (GRIN, 2),
        (THUMBS_MEDIUM, 2),
        (FAMILY, 2),
        (FLAG_FR, 2),
        (RAINBOW_FLAG, 2),
        (RED_HEART, 2),
        (TECHNOLOGIST, 2),
        (FLAG_FR + "\U0001f1e9\U0001f1ea", 4),  # two flags
        (FAMILY + FAMILY, 4),
        (THUMBS_MEDIUM + "\U0001f44d\U0001f3ff", 4),  # two thumbs, two tones
        ("ok " + FAMILY + " " + FLAG_FR, 3 + 2 + 1 + 2),
    ],
)
def test_x_weighted_length(text: str, expected: int) -> None:
    assert x_weighted_length(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://example.com", URL_WEIGHT),
        ("http://t.co/x", URL_WEIGHT),
        ("https://example.com/" + "very/long/path/" * 40, URL_WEIGHT),
        ("example.com", URL_WEIGHT),
        ("Read https://example.com/a/very/long/path/to/a/page?x=1 now", 5 + URL_WEIGHT + 4),
        ("https://a.example.com/1 https://b.example.org/2", URL_WEIGHT + 1 + URL_WEIGHT),
        (CJK + " https://example.com/" + CJK * 50, 2 + 1 + URL_WEIGHT),
    ],
)
def test_x_urls_weigh_23(text: str, expected: int) -> None:
    assert URL_WEIGHT == 23
    assert x_weighted_length(text) == expected


@pytest.mark.parametrize(("text", "expected"), [("180\u00b0", 4), ("\u00b0" * 280, 280)])
def test_x_degree_sign_weighs_one(text: str, expected: int) -> None:
    assert x_weighted_length(text) == expected


@pytest.mark.parametrize("keycap", ["1\ufe0f\u20e3", "#\ufe0f\u20e3"])
def test_x_keycap_emoji_weighs_two(keycap: str) -> None:
    assert x_weighted_length(keycap) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("See https://example.com/a, ok", 4 + URL_WEIGHT + 4),
        ("Go to https://example.com/help.", 6 + URL_WEIGHT + 1),
        ("(https://example.com/help)", 1 + URL_WEIGHT + 1),
    ],
)
def test_x_url_trailing_punctuation_is_not_part_of_the_url(text: str, expected: int) -> None:
    assert x_weighted_length(text) == expected


# --- counting in linear time (security #13, finding 4) ---------------------------------------------

# The pattern X length counting used to run: right, but quadratic on "a.a.a..." (81 s at 40,000
# characters). It stays here as the reference the linear scan must agree with on short text.
_REFERENCE_URL = re.compile(
    r"https?://\S+|\b(?:[a-z0-9-]+\.)+(?:com|org|net|io|co|dev|app|ly|me|info|biz|edu|gov)\b\S*",
    re.IGNORECASE,
)


def reference_x_weighted_length(text: str) -> int:
    total, position = 0, 0
    text = unicodedata.normalize("NFC", text)
    for match in _REFERENCE_URL.finditer(text):
        end = match.end()
        while end > match.start() and text[end - 1] in _URL_TRAILING:
            end -= 1
        total += _weigh(text[position : match.start()]) + URL_WEIGHT
        position = end
    return total + _weigh(text[position:])


URLISH = st.text(
    alphabet=st.sampled_from(
        [
            *"aAcCoOmMiIhHtTpPsSnNgG0-9._/:?#()!, \n",
            "\u212a",
            "\u0130",
            "\u0131",
            "\u017f",
            "\u00e9",
            CJK,
            GRIN,
        ]
    ),
    max_size=60,
)


@settings(max_examples=3000, deadline=None)
@given(
    st.lists(
        st.one_of(
            URLISH, st.sampled_from(["http://", "https://", ".com", ".co", ".io", "www.", "..", "example"])
        ),
        max_size=8,
    ).map("".join)
)
def test_the_linear_scan_counts_urls_as_the_old_pattern_did(text: str) -> None:
    assert x_weighted_length(text) == reference_x_weighted_length(text)


def adversarial(n: int) -> list[str]:
    """Inputs of ``n`` characters that made the old pattern backtrack, and their neighbours."""
    return [
        ("a." * n)[:n],
        ("a-" * n)[:n],
        "." * n,
        "-" * n,
        "a" * n,
        ("http://" + "a" * n)[:n],
        ("http://" * n)[:n],
        ("a.a." * n)[: n - 3] + "com",
        ("ab." * n)[: n - 4] + ".com",
        ("a.com" * n)[:n],
        ("a.comm" * n)[:n],
        ("1.-" * n)[:n],
        ("\u212a." * n)[:n],
        ("x." * n)[: n - 1] + "\u00e9",
        (CJK + ".") * (n // 2),
        # emoji, flags and ZWJ sequences (X counts each as 2 whatever its code points)
        (GRIN * n)[:n],
        ((GRIN + ".") * n)[:n],
        (THUMBS_MEDIUM * n)[:n],
        (FLAG_FR * n)[:n],
        ("\U0001f1eb" * n)[:n],  # an odd run of regional indicators: a flag never closes
        (FAMILY * n)[:n],
        (RAINBOW_FLAG * n)[:n],
        (TECHNOLOGIST * n)[:n],
        ("\u200d" * n)[:n],  # joiners with nothing to join
        ((GRIN + "\u200d") * n)[:n],  # a ZWJ chain that never ends
        ((RED_HEART + "a.") * n)[:n],
    ]


ADVERSARIAL_KINDS = len(adversarial(0))


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(range(ADVERSARIAL_KINDS)),
    st.integers(min_value=0, max_value=MAX_TEXT_CHARACTERS),
    st.text(max_size=20),
)
def test_any_text_up_to_the_cap_is_counted_as_the_reference_counts_it(which: int, n: int, noise: str) -> None:
    # how long counting takes is a benchmark (bench/text_length.py, make bench), not a test
    text = (adversarial(n)[which] + noise)[:MAX_TEXT_CHARACTERS]
    assert x_weighted_length(text) == reference_x_weighted_length(text)


@pytest.mark.parametrize("text", adversarial(MAX_TEXT_CHARACTERS), ids=lambda t: repr(t[:8]))
def test_the_worst_known_inputs_at_the_cap_are_counted(text: str) -> None:
    for counting in Counting:
        assert 0 < measure(text, counting) <= 4 * len(text), counting
    assert reply(Provider.X, text, "mention").length is not None


def test_text_past_the_cap_is_refused_without_being_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(text: str, counting: Counting) -> int:
        raise AssertionError("counted")

    monkeypatch.setattr("parley_policy.domain.decision.measure", never)
    decision = reply(Provider.X, "a." * MAX_TEXT_CHARACTERS, "mention")
    assert codes(decision) == ["TOO_LONG"]
    assert decision.length is None
