"""One PNG per benchmark, drawn from its JSON result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.common import RESULTS


def _save(fig: Any, name: str) -> Path:
    path = RESULTS / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def ingest_http(result: dict[str, Any]) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, style in (("baseline", "o-"), ("ingest", "s-")):
        best: dict[int, float] = {}  # a rate tried twice is drawn with its better step
        for step in result[name]["search"]:
            best[step["rate"]] = min(best.get(step["rate"], step["p99_ms"]), step["p99_ms"])
        rates = sorted(best)
        left.plot(rates, [best[r] for r in rates], style, label=name)
    left.axhline(result["setup"]["p99_bound_ms"], color="grey", linestyle="--", label="10 ms")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("offered rate (requests/s, open loop)")
    left.set_ylabel("p99 latency (ms)")
    left.set_title("p99 while searching the highest rate")
    left.legend()
    names = ["baseline", "ingest"]
    right.bar(names, [result[n]["max_rate_per_s"] for n in names], color=["#999999", "#3b7dd8"])
    right.set_ylabel("highest rate with p99 <= 10 ms (req/s)")
    right.set_title(f"ingest / baseline = {result['ratio']}")
    return _save(fig, "ingest_http")


def e2e(result: dict[str, Any]) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    rates = sorted(result["parley"], key=int)
    width = 0.2
    for i, (side, q) in enumerate(
        (("raw", "p50_ms"), ("raw", "p99_ms"), ("parley", "p50_ms"), ("parley", "p99_ms"))
    ):
        xs = [r + (i - 1.5) * width for r in range(len(rates))]
        ax.bar(xs, [max(result[side][r][q], 0.01) for r in rates], width, label=f"{side} {q[:3]}")
    ax.set_xticks(range(len(rates)), [f"{r}/s" for r in rates])
    ax.set_yscale("log")
    ax.set_ylabel("latency (ms, log)")
    ax.set_title("webhook POST -> conversation event, vs raw aiokafka round trip")
    ax.legend()
    return _save(fig, "e2e")


def consumers(result: dict[str, Any]) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    labels = ["routing", "routing raw loop", "policy", "policy raw loop"]
    values = [result[k] for k in ("routing_per_s", "routing_raw_per_s", "policy_per_s", "policy_raw_per_s")]
    ax.bar(labels, values, color=["#3b7dd8", "#999999", "#d8813b", "#999999"])
    ax.set_ylabel("events/s, one process")
    ax.set_title(f"routing {result['routing_ratio']}x, policy {result['policy_ratio']}x of the raw loop")
    return _save(fig, "consumers")


def store(result: dict[str, Any]) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    mixes = list(result["mixes"])
    for i, side in enumerate(("sequential", "routing")):
        xs = [m + (i - 0.5) * 0.35 for m in range(len(mixes))]
        ax.bar(xs, [result["mixes"][m][f"{side}_per_s"] for m in mixes], 0.35, label=side)
    ax.set_xticks(range(len(mixes)), [f"{m} ({result['mixes'][m]['ratio']}x)" for m in mixes])
    ax.set_ylabel("messages/s")
    ax.set_title("routing's batched state updates vs sequential single-document writes")
    ax.legend()
    return _save(fig, "store")
