"""Counting a reply's length at the cap: the worst inputs known (texts that made an old URL
pattern backtrack, emoji and ZWJ runs) timed for each counting rule, best of three runs.

Policy counts every reply's length before it decides; a counter that turns quadratic on some
input would stall a policy replica on one request. Target: each at most 50 ms at the cap.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from parley_policy.domain.length import MAX_TEXT_CHARACTERS, measure
from parley_policy.domain.rules import Counting

from bench.common import machine
from tests.unit.test_policy_length import adversarial

TARGET_MS = 50.0


def fastest(work: Callable[[], object], runs: int = 3) -> float:
    """The best of ``runs`` timings, in ms: one slow run is the machine, a quadratic path is slow
    every time."""
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return min(timings) * 1000


def run() -> dict[str, Any]:
    texts = adversarial(MAX_TEXT_CHARACTERS)
    worst: dict[str, dict[str, Any]] = {}
    for counting in Counting:
        timings = [
            (fastest(lambda text=text, counting=counting: measure(text, counting)), i)
            for i, text in enumerate(texts)
        ]
        ms, index = max(timings)
        worst[counting.value] = {"worst_ms": round(ms, 2), "input": index, "inputs": len(texts)}
    return {
        "machine": machine(),
        "characters": MAX_TEXT_CHARACTERS,
        "counting": worst,
        "targets": {"each_at_most_50ms": all(w["worst_ms"] <= TARGET_MS for w in worst.values())},
    }
