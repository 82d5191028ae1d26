"""X's weighted length (twitter-text v3), counted in linear time (pure)."""

from __future__ import annotations

import bisect
import re
import unicodedata

# twitter-text v3: code points in these ranges weigh 1, everything else 2; a URL weighs 23.
_LIGHT_RANGES = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))

# What a URL is (twitter-text, simplified): ``http://`` or ``https://`` and what follows, or a
# host of dot-separated labels ending in a known top-level domain; either runs to the next
# whitespace. It used to be one regular expression, ``https?://\S+|\b(?:[a-z0-9-]+\.)+(?:com|..)
# \b\S*``, whose nested repetition backtracks quadratically on text such as "a.a.a.a..." (81 s
# for 40,000 characters, inside the event loop). The scan below finds the same matches in linear
# time: its patterns match single characters or bounded prefixes, nothing nested.
_TLDS = ("com", "org", "net", "io", "co", "dev", "app", "ly", "me", "info", "biz", "edu", "gov")
_SCHEME = re.compile(r"https?://\S", re.IGNORECASE)
_LABEL = r"[a-z0-9-]"  # IGNORECASE: also the four non-ASCII letters that fold into a-z, as before
_HOST_START = re.compile(r"\b" + _LABEL, re.IGNORECASE)
_CHAIN = re.compile(r"(?:" + _LABEL + r"|\.(?!\.))*\.?", re.IGNORECASE)
"""Dot-separated labels from a position: one pass of single characters, nothing to backtrack."""
_DOT_BEFORE_TLD = re.compile(r"\.(?=(?:" + "|".join(_TLDS) + r")\b)", re.IGNORECASE)
_RUN = re.compile(r"\S+")
URL_WEIGHT = 23
_ZWJ = "\u200d"
_VARIATION_SELECTORS = {"\ufe0e", "\ufe0f"}


_EMOJI_RANGES = ((0x1F000, 0x1FAFF), (0x2600, 0x27BF), (0x2B00, 0x2BFF), (0x2300, 0x23FF))
_KEYCAP = "\u20e3"
_KEYCAP_BASES = set("0123456789#*")
_URL_TRAILING = ".,;:!?)]}'\""


def _is_emoji(ch: str) -> bool:
    """Pictographs (not every symbol: a degree sign is no emoji)."""
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _EMOJI_RANGES)


def _is_word(ch: str) -> bool:
    """A word character as ``\\w`` and ``\\b`` see it."""
    return ch.isalnum() or ch == "_"


def _url_start(run: str) -> int | None:
    """Where the first URL of a whitespace-free run starts (it then runs to the run's end), or None.

    Linear: every pattern used matches single characters or a bounded prefix, and each host
    candidate's labels are read once (every later candidate inside them reaches the same end, so
    it cannot do better and is skipped).
    """
    scheme = _SCHEME.search(run)
    limit = scheme.start() if scheme else len(run)
    tlds = [m.start() + 1 for m in _DOT_BEFORE_TLD.finditer(run)]  # where a top-level domain starts
    position = 0
    while tlds:
        start = _HOST_START.search(run, position, limit)
        if start is None:
            break
        p = start.start()
        chain = _CHAIN.match(run, p)
        end = chain.end() if chain else p
        after = bisect.bisect_right(tlds, p)
        if after < len(tlds) and tlds[after] <= end:
            return p
        position = end
    return scheme.start() if scheme else None


def x_weighted_length(text: str) -> int:
    """X's weighted length: URLs count 23, CJK and emoji count 2, Latin and most punctuation 1."""
    total = 0
    position = 0
    text = unicodedata.normalize("NFC", text)
    for run in _RUN.finditer(text):
        offset = _url_start(run.group())
        if offset is None:
            continue
        start, end = run.start() + offset, run.end()
        while end > start and text[end - 1] in _URL_TRAILING:
            end -= 1  # punctuation after a URL is not part of it (twitter-text)
        total += _weigh(text[position:start])
        total += URL_WEIGHT
        position = end
    return total + _weigh(text[position:])


def has_url(text: str) -> bool:
    """True if X would count a URL in ``text`` (the same scan as :func:`x_weighted_length`)."""
    return any(
        _url_start(run.group()) is not None for run in _RUN.finditer(unicodedata.normalize("NFC", text))
    )


def _is_regional(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def _is_modifier(ch: str) -> bool:
    return ch in _VARIATION_SELECTORS or 0x1F3FB <= ord(ch) <= 0x1F3FF


# Runs of characters whose weight needs no look at their neighbours are weighed at C speed: light
# ones weigh 1 (a digit, # or * only when no keycap follows), others 2 (an emoji only when nothing
# joins or modifies it, and no flag half); the loop below takes the rest one by one.
_LIGHT_CLASS = "\x00-\u10ff\u2000-\u200d\u2010-\u201f\u2032-\u2037"  # _LIGHT_RANGES
_EMOJI_CLASS = "\u2300-\u23ff\u2600-\u27bf\u2b00-\u2bff\U0001f000-\U0001faff"  # _EMOJI_RANGES
_SIMPLE = re.compile(
    "(?:[\x00-\x22\x24-\x29\x2b-\x2f\x3a-\u10ff\u2000-\u200d\u2010-\u201f\u2032-\u2037]"
    "|[0-9#*](?![\ufe0e\ufe0f]?\u20e3)"
    "|[^" + _LIGHT_CLASS + _EMOJI_CLASS + "]"
    "|[\u2300-\u23ff\u2600-\u27bf\u2b00-\u2bff\U0001f000-\U0001f1e5\U0001f200-\U0001faff]"
    "(?![\ufe0e\ufe0f\u200d\U0001f3fb-\U0001f3ff]))+"
)
_LIGHT = re.compile("[" + _LIGHT_CLASS + "]")


def _weigh(segment: str) -> int:
    total = 0
    i, n = 0, len(segment)
    while i < n:
        simple = _SIMPLE.match(segment, i)
        if simple is not None:
            light = len(_LIGHT.findall(segment, i, simple.end()))
            total += light + 2 * (simple.end() - i - light)
            i = simple.end()
            continue
        ch = segment[i]
        if ch in _KEYCAP_BASES:
            # a keycap (1️⃣): the base, an optional variation selector and U+20E3 are one emoji
            j = i + 1
            if j < n and segment[j] in _VARIATION_SELECTORS:
                j += 1
            if j < n and segment[j] == _KEYCAP:
                total += 2
                i = j + 1
                continue
        if _is_emoji(ch):
            # one emoji, with its modifiers, ZWJ-joined parts and a flag's second half, weighs 2
            total += 2
            i += 1
            if _is_regional(ch) and i < n and _is_regional(segment[i]):
                i += 1
            while i < n:
                if _is_modifier(segment[i]):
                    i += 1
                elif segment[i] == _ZWJ and i + 1 < n and _is_emoji(segment[i + 1]):
                    i += 2
                else:
                    break
            continue
        cp = ord(ch)
        total += 1 if any(lo <= cp <= hi for lo, hi in _LIGHT_RANGES) else 2
        i += 1
    return total
