"""What every provider's webhook check shares: the ``sha256=`` prefix and a constant-time match.

Several secrets may be valid at once so that a secret can be rotated without downtime. The raw
body bytes are verified, never a re-serialization.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

PREFIX = "sha256="


def any_match(given: bytes, expected: Iterable[bytes]) -> bool:
    """True if ``given`` equals any candidate; the time taken does not say which one."""
    matched = False
    for candidate in expected:
        # no early exit: the time taken does not depend on which secret matched
        matched |= hmac.compare_digest(given, candidate)
    return matched
