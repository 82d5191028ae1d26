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


STORE_LABELS = {"postgresql": "PostgreSQL", "mongodb": "FerretDB (MongoDB adapter)"}


def ingest_http(result: dict[str, Any]) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, style in (("baseline", "o-"), ("ingest", "s-")):
        best: dict[int, float] = {}  # a rate tried twice is drawn with its better step
        for step in result[name]["search"]:
            best[step["rate"]] = min(best.get(step["rate"], step["p99_ms"]), step["p99_ms"])
        rates = sorted(best)
        left.plot(rates, [best[r] for r in rates], style, label=name)
    bound = result["setup"]["p99_bound_ms"]
    left.axhline(bound, color="grey", linestyle="--", label=f"broker p99 + 10 ms ({bound} ms)")
    left.axhline(10, color="grey", linestyle=":", label="10 ms")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("offered rate (requests/s, open loop)")
    left.set_ylabel("p99 latency (ms)")
    left.set_title("p99 while searching the highest rate")
    left.legend()
    names = ["baseline", "ingest"]
    right.bar(names, [result[n]["max_rate_per_s"] for n in names], color=["#999999", "#3b7dd8"])
    right.set_ylabel("highest sustained rate (req/s)")
    right.set_title(f"ingest / baseline = {result['ratio']}")
    return _save(fig, "ingest_http")


def inbox(result: dict[str, Any]) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.2))
    kinds = list(result["stores"])
    variants = list(result["stores"][kinds[0]])
    width = 0.8 / len(kinds)
    for i, kind in enumerate(kinds):
        xs = [v + (i - (len(kinds) - 1) / 2) * width for v in range(len(variants))]
        limit_ms = result["setup"]["time_limit_s"] * 1000  # none answered: drawn at the limit
        values = [max(result["stores"][kind][v]["p99_ms"] or limit_ms, 0.01) for v in variants]
        ax.bar(xs, values, width, label=STORE_LABELS.get(kind, kind))
    ax.axhline(50, color="grey", linestyle="--", label="target 50 ms")
    ax.set_xticks(range(len(variants)), variants)
    ax.set_yscale("log")
    ax.set_ylabel("p99 per page (ms, log)")
    ax.set_title(f"agent inbox at {result['data']['conversations']} conversations")
    ax.legend()
    return _save(fig, "inbox")


def routing(result: dict[str, Any]) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.2))
    kinds = list(result["stores"])
    sides = ("process", "service", "loop")
    labels = {
        "process": "parley-routing (Kafka)",
        "service": "handler, no Kafka",
        "loop": "hand-written loop",
    }
    width = 0.8 / len(sides)
    for i, side in enumerate(sides):
        xs = [k + (i - 1) * width for k in range(len(kinds))]
        values = [result["stores"][kind][side]["per_s"] or 0 for kind in kinds]
        ax.bar(xs, values, width, label=labels[side])
    ax.axhline(500, color="grey", linestyle="--", label="target 500/s")
    ax.set_xticks(
        range(len(kinds)),
        [f"{STORE_LABELS.get(k, k)} ({result['stores'][k]['process_to_loop']}x)" for k in kinds],
    )
    ax.set_ylabel("messages/s, one process")
    ax.set_title("routing on the preloaded store vs the same statements by hand")
    ax.legend()
    return _save(fig, "routing")


def e2e(result: dict[str, Any]) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.2))
    rates = sorted(result["raw"], key=int)
    series = [("raw aiokafka", result["raw"])] + [
        (STORE_LABELS.get(kind, kind), by_rate) for kind, by_rate in result["parley"].items()
    ]
    width = 0.8 / len(series)
    for i, (label, by_rate) in enumerate(series):
        xs = [r + (i - (len(series) - 1) / 2) * width for r in range(len(rates))]
        # a rate that did not drain has no p99: drawn at its longest wait seen, hatched
        values = [by_rate[r]["p99_ms"] or by_rate[r].get("seen_p99_ms") or 0.01 for r in rates]
        bars = ax.bar(xs, values, width, label=f"{label} p99")
        for bar, r in zip(bars, rates, strict=True):
            if by_rate[r].get("complete") is False:
                bar.set_hatch("//")
    ax.axhline(100, color="grey", linestyle="--", label="target 100 ms at 500/s")
    ax.set_xticks(range(len(rates)), [f"{r}/s" for r in rates])
    ax.set_yscale("log")
    ax.set_ylabel("p99 latency (ms, log; hatched: did not drain)")
    ax.set_title("webhook POST -> conversation event")
    ax.legend()
    return _save(fig, "e2e")
