"""``make bench``: run the benchmarks, write bench/results/*.json and *.png, then docs/performance.md.

python -m bench [--only ingest_http,inbox,routing,e2e,profiles,text_length]

The store-bound ones (inbox, routing, e2e, profiles) run on the data set (bench/dataset.py),
loaded into PostgreSQL and FerretDB once and again after a benchmark changed it.
``PARLEY_BENCH_SCALE=0.05`` (``make bench-quick``) runs a short version whose results go to
bench/results/quick/ (with its own performance.md), never over the committed ones.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from bench import e2e, inbox, ingest_http, plots, profiles, report, routing, text_length
from bench.common import RESULTS, SCALE, load_result, say, write_result
from bench.dataset import Preloaded


def _profiles(data: Preloaded) -> dict[str, Any]:
    ingest = load_result("ingest_http")
    rate = max(ingest["ingest"]["max_rate_per_s"] // 2, 50) if ingest else 100
    return profiles.run(rate, data)


Measure = Callable[[Preloaded], dict[str, Any]]
BENCHMARKS: dict[str, tuple[Measure, Callable[[dict[str, Any]], Any] | None]] = {
    "ingest_http": (lambda _: ingest_http.run(), plots.ingest_http),
    "inbox": (inbox.run, plots.inbox),
    "routing": (routing.run, plots.routing),
    "e2e": (e2e.run, plots.e2e),
    "profiles": (_profiles, None),
    "text_length": (lambda _: text_length.run(), None),
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated benchmark names")
    args = parser.parse_args()
    wanted = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(wanted) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    if SCALE != 1:
        say(f"PARLEY_BENCH_SCALE={SCALE}: a short run, results in {RESULTS}")
    data = Preloaded()
    try:
        for name in wanted:
            measure, plot = BENCHMARKS[name]
            say(f"{name}: running")
            path = write_result(name, measure(data))
            say(f"{name}: {path}")
            if plot is not None:
                result = load_result(name)
                assert result is not None
                say(f"{name}: {plot(result)}")
    finally:
        data.close()
    say(f"report: {report.write()}")


if __name__ == "__main__":
    main()
