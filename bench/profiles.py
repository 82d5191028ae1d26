"""Where the time goes: ingest under load (pyinstrument), and the whole routing consumer (cProfile).

* ``ingest``: ``parley-ingest`` runs under pyinstrument (``python -m pyinstrument``) while vegeta
  offers a fixed rate; the text report is kept under ``bench/results/profiles/``.
* ``routing``: the whole ``parley-routing`` process runs under cProfile (``bench/profiled.py``),
  not only its handler: aiokafka's fetch and produce, FastStream's consumer loop, the
  middlewares, the domain, the adapter and psycopg. It starts on a fresh copy of the data set on
  PostgreSQL (the services' default store); once it is ready the profiler is switched on
  (SIGUSR1), a backlog of messages to stored conversations is produced, it consumes them, and the
  profiler is switched off (SIGUSR2, statistics written): start-up and imports are left out.
  Kept: the top functions by own time and by cumulative time (``profiles/routing.txt``), and the
  process's CPU seconds per message between ready and drained, without the profiler (a first
  run) and with it. cProfile slows Python down (about 2x here), so the report's times are
  shares, not the rate.
"""

from __future__ import annotations

import asyncio
import io
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from parley_events import qualify, topics

from bench import dataset, ingest_http
from bench.common import RESULTS, ROOT, SERVER_CORE, namespace_of, pin, python, say, scaled, stack_env
from bench.consumers import produce
from bench.routing import _drain, messages_for
from tests.support.processes import ServiceProcess, free_port

PROFILES = RESULTS / "profiles"
ROUTING_MESSAGES = scaled(10000, 400)
ROUTING_CONVERSATIONS = scaled(1000, 100)


def _env(ns: str, port: int, **extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")},
        **stack_env(ns, ns, **extra),
        "PARLEY_HTTP_PORT": str(port),
        "PARLEY_HTTP_HOST": "127.0.0.1",
    }


def ingest(rate: int, seconds: int = scaled(10, 3)) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="parley-bench-profile-"))
    PROFILES.mkdir(parents=True, exist_ok=True)
    out = PROFILES / "ingest.txt"
    with namespace_of("prof") as ns:
        port = free_port()
        command = [python(), "-m", "pyinstrument", "-r", "text", "-o", str(out), "-m", "parley_ingest"]
        with (work / "ingest.log").open("wb") as log:
            process = subprocess.Popen(command, env=_env(ns, port), stdout=log, stderr=subprocess.STDOUT)
        server = ServiceProcess("ingest", port, work / "ingest.log", process)
        try:
            server.wait_ready(60)
            pin(process.pid, SERVER_CORE)
            targets = work / "targets"
            ingest_http.write_targets(f"{server.url}/webhooks/meta", targets)
            measured = ingest_http.attack(targets, rate, seconds)
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(60)
    return {"rate": rate, "seconds": seconds, "measured": measured, "report": str(out.relative_to(RESULTS))}


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _routing_once(url: str, data_count: int, profile_to: Path | None, work: Path) -> dict[str, Any]:
    messages = messages_for(data_count, messages=ROUTING_MESSAGES, active=ROUTING_CONVERSATIONS)
    with namespace_of("profroute") as ns:
        port = free_port()
        command = [python(), "-m", "parley_routing"]
        if profile_to:
            command = [python(), "-m", "bench.profiled", str(profile_to), "parley_routing.__main__:main"]
        log_path = work / f"routing-{'profiled' if profile_to else 'plain'}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, cwd=ROOT, env=_env(ns, port, store_url=url), stdout=log, stderr=subprocess.STDOUT
            )
        server = ServiceProcess("routing", port, log_path, process)
        try:
            server.wait_ready(60)
            pin(process.pid, SERVER_CORE)
            if profile_to:
                process.send_signal(signal.SIGUSR1)
            before = cpu_seconds(process.pid)
            asyncio.run(produce(ns, messages))
            drained = asyncio.run(_drain(qualify(topics.CONVERSATIONS.name, ns), len(messages), 600))
            cpu = cpu_seconds(process.pid) - before
            if profile_to:
                process.send_signal(signal.SIGUSR2)
                deadline = time.monotonic() + 60
                while not profile_to.exists() and time.monotonic() < deadline:
                    time.sleep(0.2)
        finally:
            server.terminate(60)
    per_message = round(1000 * cpu / max(1, drained["messages"]), 3)
    return {**drained, "cpu_s": round(cpu, 3), "cpu_ms_per_message": per_message}


def routing(data: dataset.Preloaded) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="parley-bench-profile-"))
    PROFILES.mkdir(parents=True, exist_ok=True)
    plain = _routing_once(data.url("postgresql", changes=True), data.count, None, work)
    say(f"  routing without the profiler: {plain}")
    stats_file = work / "routing.prof"
    profiled = _routing_once(data.url("postgresql", changes=True), data.count, stats_file, work)
    say(f"  routing under cProfile: {profiled}")
    report = io.StringIO()
    stats = pstats.Stats(str(stats_file), stream=report)
    stats.sort_stats("tottime").print_stats(40)
    stats.sort_stats("cumulative").print_stats(60)
    (PROFILES / "routing.txt").write_text(
        f"parley-routing under cProfile, whole process, {profiled['messages']} messages to "
        f"{ROUTING_CONVERSATIONS} stored conversations of {data.count}, PostgreSQL\n"
        f"CPU per message between ready and drained: {plain['cpu_ms_per_message']} ms without the "
        f"profiler, {profiled['cpu_ms_per_message']} ms with it\n\n"
        + report.getvalue()
        .replace(str(stats_file), "routing.prof")  # no machine paths in the report
        .replace(str(ROOT), ".")
        .replace(sys.base_prefix, "<python>")
    )
    return {
        "store": "postgresql",
        "messages": ROUTING_MESSAGES,
        "conversations": ROUTING_CONVERSATIONS,
        "plain": plain,
        "profiled": profiled,
        "report": "profiles/routing.txt",
    }


def run(ingest_rate: int, data: dataset.Preloaded) -> dict[str, Any]:
    say(f"profiling ingest at {ingest_rate}/s")
    ingest_profile = ingest(ingest_rate)
    say("profiling the whole routing consumer")
    return {"ingest": ingest_profile, "routing": routing(data), "data": data.describe()}
