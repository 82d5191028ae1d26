"""Counting text the way each provider does (pure)."""

from __future__ import annotations

import re
import unicodedata

from parley_policy.domain.rules import Counting

# twitter-text v3: code points in these ranges weigh 1, everything else 2; a URL weighs 23.
_LIGHT_RANGES = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))
_URL = re.compile(
    r"https?://\S+|\b(?:[a-z0-9-]+\.)+(?:com|org|net|io|co|dev|app|ly|me|info|biz|edu|gov)\b\S*",
    re.IGNORECASE,
)
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


def x_weighted_length(text: str) -> int:
    """X's weighted length: URLs count 23, CJK and emoji count 2, Latin and most punctuation 1."""
    total = 0
    position = 0
    text = unicodedata.normalize("NFC", text)
    for match in _URL.finditer(text):
        end = match.end()
        while end > match.start() and text[end - 1] in _URL_TRAILING:
            end -= 1  # punctuation after a URL is not part of it (twitter-text)
        total += _weigh(text[position : match.start()])
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
