"""``make bench``: run the benchmarks, write bench/results/*.json and *.png, then docs/performance.md.

python -m bench [--only ingest_http,e2e,consumers,store,profiles,text_length]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from bench import consumers, e2e, ingest_http, plots, profiles, report, store, text_length
from bench.common import load_result, say, write_result


def _profiles() -> dict[str, Any]:
    ingest = load_result("ingest_http")
    rate = max(ingest["ingest"]["max_rate_per_s"] // 2, 50) if ingest else 100
    return profiles.run(rate)


BENCHMARKS: dict[str, tuple[Callable[[], dict[str, Any]], Callable[[dict[str, Any]], Any] | None]] = {
    "ingest_http": (ingest_http.run, plots.ingest_http),
    "e2e": (e2e.run, plots.e2e),
    "consumers": (consumers.run, plots.consumers),
    "store": (store.run, plots.store),
    "profiles": (_profiles, None),
    "text_length": (text_length.run, None),
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated benchmark names")
    args = parser.parse_args()
    wanted = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(wanted) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    for name in wanted:
        measure, plot = BENCHMARKS[name]
        say(f"{name}: running")
        path = write_result(name, measure())
        say(f"{name}: {path}")
        if plot is not None:
            result = load_result(name)
            assert result is not None
            say(f"{name}: {plot(result)}")
    say(f"report: {report.write()}")


if __name__ == "__main__":
    main()
