"""``make fault``: webhooks keep arriving while Kafka, the store or a consumer fails.

Each run starts ingest, the normalizer and routing as real processes, drives signed deliveries at
a steady rate (retrying any that did not get a 200, as providers do), injects one fault after the
first third, and then checks that every acknowledged delivery has exactly one effect, in order.
The results table is written to docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, Infra, require_local_infra
from tests.fault.checker import SECRET, Report, drive, now, verify
from tests.support.kafka import publish_channel
from tests.support.processes import ServiceProcess, start_service

pytestmark = pytest.mark.fault

MESSAGES = 240
RATE_PER_S = 20.0
PAGES = ["page-f1", "page-f2", "page-f3"]
REPORTS: list[Report] = []


def infra_script(*args: str) -> None:
    result = subprocess.run(
        [str(ROOT / "scripts" / "infra.sh"), *args], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def kill_9(pid_file: Path) -> None:
    os.kill(int(pid_file.read_text()), signal.SIGKILL)


@pytest.fixture(scope="module", autouse=True)
def write_table() -> Iterator[None]:
    yield
    if not REPORTS:
        return
    lines = [
        "# Reliability",
        "",
        "Written by `make fault` (tests/fault). Each row: real ingest, normalizer and routing processes,",
        f"{MESSAGES} signed Messenger deliveries over {len(PAGES)} pages and 6 conversations at "
        f"{RATE_PER_S:.0f}/s, the fault injected after the first third; deliveries without a 200",
        "are retried as providers do. *Lost* and *duplicated* count effects in the store (one",
        "`message_added` per acknowledged delivery); *recovery* is the time from the last",
        "acknowledgement until every effect was there.",
        "",
        "| fault | sent | acknowledged | provider retries | lost | duplicated | out of order "
        "| recovery (s) | run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.fault} | {r.sent} | {r.acknowledged} | {r.retried} | {r.lost} | {r.duplicated} | "
        f"{r.out_of_order} | {r.recovery_s} | {now()} |"
        for r in REPORTS
    ]
    doc = ROOT / "docs" / "reliability.md"
    # sections written by hand after the generated part ("## Fuzzing", ...) are kept
    previous = doc.read_text() if doc.exists() else ""
    kept = previous[previous.find("\n## ") :] if "\n## " in previous else ""
    doc.write_text("\n".join(lines) + "\n" + kept)


@pytest.fixture
def stack(
    infra: Infra, namespace: str, database_url: str, tmp_path: Path
) -> Iterator[dict[str, ServiceProcess]]:
    require_local_infra(infra, "faults are injected into local processes")
    env = {
        "PARLEY_KAFKA_BOOTSTRAP_SERVERS": infra.kafka,
        "PARLEY_MONGODB_URL": database_url,
        "PARLEY_TOPIC_NAMESPACE": namespace,
        "PARLEY_CONSUMER_GROUP_PREFIX": namespace,
        "PARLEY_META_APP_SECRETS": SECRET,
        "PARLEY_META_VERIFY_TOKEN": "fault",
        "PARLEY_JWT_HS256_SECRET": "fault-suite-jwt-secret-of-32-bytes!",
        "PARLEY_SHUTDOWN_TIMEOUT_S": "10",
        "PARLEY_KAFKA_ACK_TIMEOUT_S": "3",
    }
    services: dict[str, ServiceProcess] = {}
    for name in ("parley-ingest", "parley-normalizer", "parley-routing"):
        (tmp_path / name).mkdir()
        services[name] = start_service(name, env, tmp_path / name)
    services_env = env
    for service in services.values():
        service.wait_ready()
    services["_env"] = services_env  # type: ignore[assignment]
    services["_dir"] = tmp_path  # type: ignore[assignment]
    try:
        yield services
    finally:
        for name, service in services.items():
            if not name.startswith("_"):
                service.terminate()


async def run_fault(
    name: str,
    infra: Infra,
    namespace: str,
    database_url: str,
    stack: dict[str, ServiceProcess],
    fault: Callable[[], Awaitable[None]],
) -> Report:
    for i, page in enumerate(PAGES):
        await publish_channel(
            infra.kafka, namespace, channel_id=f"ch-{i}", tenant_id=f"tenant-{i % 2}", account_id=page
        )
    report = Report(fault=name)
    sent = await drive(
        stack["parley-ingest"].url, PAGES, 2, MESSAGES, RATE_PER_S, fault, MESSAGES // 3, report
    )
    await verify(database_url, sent, report, timeout_s=180)
    REPORTS.append(report)
    return report


def assert_clean(report: Report) -> None:
    assert (report.lost, report.duplicated, report.out_of_order) == (0, 0, 0), report


async def test_kafka_killed_and_restarted(
    infra: Infra, namespace: str, database_url: str, stack: dict[str, ServiceProcess]
) -> None:
    async def fault() -> None:
        kill_9(ROOT / ".local" / "run" / "kafka.pid")
        await asyncio.sleep(3)
        await asyncio.to_thread(infra_script, "up")

    assert_clean(await run_fault("Kafka SIGKILL, restarted", infra, namespace, database_url, stack, fault))


async def test_store_stopped_for_30_seconds(
    infra: Infra, namespace: str, database_url: str, stack: dict[str, ServiceProcess]
) -> None:
    async def fault() -> None:
        await asyncio.to_thread(infra_script, "stop-ferretdb")
        await asyncio.sleep(30)
        await asyncio.to_thread(infra_script, "up")

    assert_clean(await run_fault("store stopped 30 s", infra, namespace, database_url, stack, fault))


async def test_routing_killed_mid_batch_and_restarted(
    infra: Infra, namespace: str, database_url: str, stack: dict[str, ServiceProcess]
) -> None:
    async def fault() -> None:
        routing = stack["parley-routing"]
        routing.process.kill()
        routing.process.wait()
        await asyncio.sleep(2)
        directory: Path = stack["_dir"] / "parley-routing-2"  # type: ignore[operator]
        await asyncio.to_thread(directory.mkdir)
        replacement = start_service("parley-routing", stack["_env"], directory)  # type: ignore[arg-type]
        stack["parley-routing"] = replacement
        await asyncio.to_thread(replacement.wait_ready)

    assert_clean(await run_fault("routing SIGKILL, restarted", infra, namespace, database_url, stack, fault))


async def test_normalizer_killed_mid_batch_and_restarted(
    infra: Infra, namespace: str, database_url: str, stack: dict[str, ServiceProcess]
) -> None:
    async def fault() -> None:
        normalizer = stack["parley-normalizer"]
        normalizer.process.kill()
        normalizer.process.wait()
        await asyncio.sleep(2)
        directory: Path = stack["_dir"] / "parley-normalizer-2"  # type: ignore[operator]
        await asyncio.to_thread(directory.mkdir)
        replacement = start_service("parley-normalizer", stack["_env"], directory)  # type: ignore[arg-type]
        stack["parley-normalizer"] = replacement
        await asyncio.to_thread(replacement.wait_ready)

    assert_clean(
        await run_fault("normalizer SIGKILL, restarted", infra, namespace, database_url, stack, fault)
    )


async def test_two_routing_replicas_with_rebalances_in_between(
    infra: Infra, namespace: str, database_url: str, stack: dict[str, ServiceProcess]
) -> None:
    """A second replica joins (rebalance), then the first is killed (rebalance again)."""

    async def fault() -> None:
        directory: Path = stack["_dir"] / "parley-routing-b"  # type: ignore[operator]
        await asyncio.to_thread(directory.mkdir)
        second = start_service("parley-routing", stack["_env"], directory)  # type: ignore[arg-type]
        await asyncio.to_thread(second.wait_ready)
        await asyncio.sleep(3)  # both replicas consume for a while
        first = stack["parley-routing"]
        first.process.kill()
        first.process.wait()
        stack["parley-routing"] = second

    assert_clean(
        await run_fault(
            "routing: replica joins, first SIGKILLed", infra, namespace, database_url, stack, fault
        )
    )
