"""Run a Parley process with cProfile switched on by SIGUSR1 and off (statistics written) by SIGUSR2.

    python -m bench.profiled OUT.prof parley_routing.__main__:main

So a profile covers what the benchmark chooses (a consumer draining a backlog), not the imports
and start-up that ``python -m cProfile`` would add. The handlers run on the main thread, which
is the one the event loop (and with it aiokafka, FastStream, the service and psycopg) runs on.
"""

from __future__ import annotations

import cProfile
import importlib
import signal
import sys


def main() -> None:
    out, target = sys.argv[1], sys.argv[2]
    profiler = cProfile.Profile()

    def start(_signum: int, _frame: object) -> None:
        profiler.enable()

    def stop(_signum: int, _frame: object) -> None:
        profiler.disable()
        profiler.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    module, _, function = target.partition(":")
    sys.argv = [module]
    getattr(importlib.import_module(module), function)()


if __name__ == "__main__":
    main()
