"""Counting text the way each provider does (pure)."""

from __future__ import annotations

import re
import unicodedata

from parley_policy.domain.rules import Counting

# twitter-text v3: code points in these ranges weigh 1, everything else 2; a URL weighs 23.
_LIGHT_RANGES = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))

MAX_TEXT_CHARACTERS = 16_384
"""No reply text is longer (the largest provider limit, X's 10,000-character DMs, plus a margin):
the API refuses longer text before anything counts it (docs/policy.md)."""

# What a URL is (twitter-text, simplified): ``http://`` or ``https://`` and what follows, or a
# host of dot-separated labels ending in a known top-level domain; either runs to the next
# whitespace. It used to be one regular expression, ``https?://\S+|\b(?:[a-z0-9-]+\.)+(?:com|..)
# \b\S*``, whose nested repetition backtracks quadratically on text such as "a.a.a.a..." (81 s
# for 40,000 characters, inside the event loop). The scan below finds the same matches in one
# pass per whitespace-free run; only bounded patterns are matched at a fixed position.
_TLDS = ("com", "org", "net", "io", "co", "dev", "app", "ly", "me", "info", "biz", "edu", "gov")
_SCHEME = re.compile(r"https?://\S", re.IGNORECASE)
_TLD_AT = re.compile(r"(?:" + "|".join(_TLDS) + r")\b", re.IGNORECASE)
_LABEL_CHAR = re.compile(r"[a-z0-9-]", re.IGNORECASE)  # as the old pattern's class (Unicode case folding)
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

    Linear: right to left, ``chain_end[p]`` is how far dot-separated labels (no empty label)
    reach from ``p``, and ``next_tld[p]`` the first position at or after ``p`` that follows a dot
    and starts a known top-level domain; a host starts at ``p`` if such a position lies within
    its labels' reach.
    """
    n = len(run)
    label = [_LABEL_CHAR.match(ch) is not None for ch in run]
    chain_end = [n] * (n + 1)
    next_tld = [n + 1] * (n + 2)
    for p in range(n - 1, -1, -1):
        if not (label[p] or run[p] == "."):
            chain_end[p] = p
        elif run[p] == "." and p + 1 < n and run[p + 1] == ".":
            chain_end[p] = p + 1
        else:
            chain_end[p] = chain_end[p + 1]
        tld_here = p > 0 and run[p - 1] == "." and _TLD_AT.match(run, p) is not None
        next_tld[p] = p if tld_here else next_tld[p + 1]
    for p in range(n):
        if _SCHEME.match(run, p):
            return p
        boundary = _is_word(run[p]) != (p > 0 and _is_word(run[p - 1]))
        if boundary and label[p] and next_tld[p + 1] <= chain_end[p]:
            return p
    return None


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


def _is_regional(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def _is_modifier(ch: str) -> bool:
    return ch in _VARIATION_SELECTORS or 0x1F3FB <= ord(ch) <= 0x1F3FF


def _weigh(segment: str) -> int:
    total = 0
    i, n = 0, len(segment)
    while i < n:
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


def measure(text: str, counting: Counting) -> int:
    if counting is Counting.UTF8_BYTES:
        return len(text.encode("utf-8"))
    if counting is Counting.X_WEIGHTED:
        return x_weighted_length(text)
    return len(text)
