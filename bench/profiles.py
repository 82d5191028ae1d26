"""Where the time goes: a pyinstrument profile of ingest under load, and the store's share of routing.

* ``ingest``: ``parley-ingest`` runs under pyinstrument (``python -m pyinstrument``) while vegeta
  offers a fixed rate; the text report is kept under ``bench/results/profiles/``.
* ``routing``: ``ConversationService.on_messages`` over a backlog, with PyMongo command
  monitoring adding up the time each store command took, next to pyinstrument's CPU view.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pymongo.monitoring
from pyinstrument import Profiler
from pymongo import AsyncMongoClient

from bench import ingest_http, store
from bench.common import MONGO, RESULTS, SERVER_CORE, namespace_of, pin, python, say, stack_env
from bench.consumers import backlog
from tests.support.processes import ServiceProcess, free_port

PROFILES = RESULTS / "profiles"


def ingest(rate: int, seconds: int = 10) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="parley-bench-profile-"))
    PROFILES.mkdir(parents=True, exist_ok=True)
    out = PROFILES / "ingest.txt"
    with namespace_of("prof") as ns:
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")},
            **stack_env(ns, ns),
            "PARLEY_HTTP_PORT": str(port),
            "PARLEY_HTTP_HOST": "127.0.0.1",
        }
        command = [python(), "-m", "pyinstrument", "-r", "text", "-o", str(out), "-m", "parley_ingest"]
        with (work / "ingest.log").open("wb") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
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


class _CommandTimes(pymongo.monitoring.CommandListener):
    def __init__(self) -> None:
        self.totals: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])

    def started(self, event: Any) -> None:
        return None

    def succeeded(self, event: Any) -> None:
        total = self.totals[event.command_name]
        total[0] += 1
        total[1] += event.duration_micros / 1e6

    def failed(self, event: Any) -> None:
        return None


async def _routing(messages: int, conversations: int) -> dict[str, Any]:
    listener = _CommandTimes()
    client_with_listener: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        MONGO, tz_aware=True, event_listeners=[listener]
    )
    db = client_with_listener[f"benchprof{uuid.uuid4().hex[:8]}"]
    profiler = Profiler(async_mode="enabled")
    try:
        profiler.start()
        started = time.perf_counter()
        await store.batched(db, backlog(messages, conversations))
        wall = time.perf_counter() - started
        profiler.stop()
    finally:
        await client_with_listener.drop_database(db.name)
        await client_with_listener.close()
    PROFILES.mkdir(parents=True, exist_ok=True)
    (PROFILES / "routing.txt").write_text(profiler.output_text(color=False))
    commands = {
        name: {"count": int(n), "seconds": round(s, 3)}
        for name, (n, s) in sorted(listener.totals.items(), key=lambda kv: -kv[1][1])
    }
    return {
        "messages": messages,
        "conversations": conversations,
        "wall_s": round(wall, 3),
        "python_cpu_s": round(profiler.last_session.cpu_time, 3) if profiler.last_session else None,
        "store_commands": commands,
        "report": "profiles/routing.txt",
    }


def run(ingest_rate: int) -> dict[str, Any]:
    say(f"profiling ingest at {ingest_rate}/s")
    ingest_profile = ingest(ingest_rate)
    say("profiling routing's store path")
    routing_profile = asyncio.run(_routing(1000, 300))
    return {"ingest": ingest_profile, "routing": routing_profile}
