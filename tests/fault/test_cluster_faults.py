"""``make fault`` on a three-broker cluster under load: brokers lost, the store slow and refusing.

Each run drives signed Messenger deliveries to ingest at ``PARLEY_FAULT_RATE`` a second (200)
for ``PARLEY_FAULT_SECONDS`` (60) over 200 conversations, every conversation its own sender
keeping its order (``drive_threads``), through ingest, the normalizer and routing as real
processes on the local three-node Kafka (``make infra-up KAFKA_BROKERS=3``: replication factor 3,
``min.insync.replicas=2``) and PostgreSQL. A third of the way in, the fault starts. The checker
then requires every acknowledged delivery to have exactly one ``message_added``, in order, nothing
unacknowledged to take effect, every consumer group back to lag zero and a fresh delivery in
effect within the bound. The rows join docs/reliability.md's table (tests/fault/test_faults.py
writes it). The network cut between routing and Kafka needs no failover and also runs on one
broker (``pytest tests/fault/test_cluster_faults.py -k cut``, at a lower rate).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from parley_events import qualify, topics

from tests.conftest import ROOT, Infra, require_local_infra
from tests.fault.checker import (
    SECRET,
    Report,
    drive_threads,
    settle_consumers,
    verify_history,
    webhook_threads,
    webhooks,
)
from tests.fault.test_faults import REPORTS, assert_clean, infra_script, write_table
from tests.support.kafka import publish_channel
from tests.support.processes import ServiceProcess, free_port, start_service
from tests.support.proxy import FaultProxy

# a run offers its load for a minute, then waits for up to 300 s of recovery and 60 s of settling
pytestmark = [pytest.mark.fault, pytest.mark.timeout(900)]

RATE_PER_S = float(os.environ.get("PARLEY_FAULT_RATE", "200"))
SECONDS = float(os.environ.get("PARLEY_FAULT_SECONDS", "60"))
PAGES = [f"page-c{i}" for i in range(4)]
CUSTOMERS = 50  # per Page: 200 conversations, each sending at RATE_PER_S / 200
SETTLE_TIMEOUT_S = 300.0  # the recovery bound the table's rows are held to
__all__ = ["write_table"]  # the table fixture of test_faults.py, so these rows join it


def brokers(infra: Infra, needed: int = 3) -> list[str]:
    addresses = infra.kafka.split(",")
    if len(addresses) < needed:
        pytest.fail(
            "the cluster faults need three brokers: make infra-down, then make fault KAFKA_BROKERS=3 "
            f"(the local Kafka runs with {len(addresses)})"
        )
    return addresses


FAULT_LISTENER = 10  # every local node's FAULT listener: its port + 10 (deploy/local/kafka)
FAULT_ADVERTISED = 20  # ... advertised as its port + 20, where a test's proxy listens


async def kafka_proxies(infra: Infra) -> list[FaultProxy]:
    """One proxy per node, from the address the node's FAULT listener advertises to that listener:
    a client bootstrapped at :func:`through_proxies` reaches every broker only through them."""
    proxies = []
    for address in brokers(infra, needed=1):
        host, port = address.rsplit(":", 1)
        try:
            _, writer = await asyncio.open_connection(host, int(port) + FAULT_LISTENER)
        except OSError:
            pytest.fail(
                f"{address} has no FAULT listener on port {int(port) + FAULT_LISTENER} (deploy/local/kafka)"
            )
        writer.close()
        proxy = FaultProxy(host, int(port) + FAULT_LISTENER, port=int(port) + FAULT_ADVERTISED)
        proxies.append(await proxy.start())
    return proxies


def through_proxies(proxies: list[FaultProxy]) -> str:
    return ",".join(f"127.0.0.1:{proxy.port}" for proxy in proxies)


async def scraped(port: int, metric: str) -> float:
    """A counter's value on a process's own metrics port (0 when it was never incremented)."""
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics")
    response.raise_for_status()
    for line in response.text.splitlines():
        if line.startswith(f"{metric} "):
            return float(line.split()[1])
    return 0.0


def kill_node(node: int) -> None:
    pid = int((ROOT / ".local" / "run" / f"kafka-{node}.pid").read_text())
    os.kill(pid, signal.SIGKILL)


async def leader_of_most(infra: Infra, namespace: str) -> int:
    """The node leading the most partitions of the run's inbound topics (raw and normalized)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka)
    await admin.start()
    try:
        names = [qualify(t.name, namespace) for t in (topics.WEBHOOKS_RAW, topics.MESSAGES_INBOUND)]
        led: dict[int, int] = {}
        for topic in await admin.describe_topics(names):
            for partition in topic["partitions"]:
                if partition["leader"] >= 0:
                    led[partition["leader"]] = led.get(partition["leader"], 0) + 1
        assert led, f"no partition leaders found for {names}"
        return max(led, key=lambda node: led[node])
    finally:
        await admin.close()


def through(proxy: FaultProxy, url: str) -> str:
    """``url`` with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


def store_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 5432


def stack_on(infra: Infra, store_url: str, tmp_path: Path, needed: int, local: bool = True) -> dict[str, Any]:
    if local:
        require_local_infra(infra, "faults are injected into local processes")
    brokers(infra, needed)
    assert store_url.startswith("postgresql"), "the cluster faults run on the default store, PostgreSQL"
    return {"dir": tmp_path, "store_url": store_url}


@pytest.fixture
def cluster_stack(infra: Infra, store_url: str, tmp_path: Path) -> dict[str, Any]:
    """Where a run's processes keep their logs, and its store (PostgreSQL, a schema of its own)."""
    return stack_on(infra, store_url, tmp_path, needed=3)


@pytest.fixture
def any_cluster_stack(infra: Infra, store_url: str, tmp_path: Path) -> dict[str, Any]:
    """The same on one broker or three: the cut needs no failover (``make fault`` runs it on three).
    It stops nothing of the infrastructure (proxies in front of it do the cutting), so it runs on
    brokers it was given as well, as long as they have the FAULT listener of deploy/local/kafka."""
    return stack_on(infra, store_url, tmp_path, needed=1, local=False)


async def start_stack(
    infra: Infra,
    namespace: str,
    stack: dict[str, Any],
    store_url: str,
    more: dict[str, tuple[str, dict[str, str]]] | None = None,
) -> dict[str, ServiceProcess]:
    """Ingest, the normalizer and routing; ``more``: further processes by name, each a command and
    the settings it has apart from the others'."""
    env = {
        "PARLEY_KAFKA_BOOTSTRAP_SERVERS": infra.kafka,
        "PARLEY_STORE_URL": store_url,
        "PARLEY_TOPIC_NAMESPACE": namespace,
        "PARLEY_CONSUMER_GROUP_PREFIX": namespace,
        "PARLEY_META_APP_SECRETS": SECRET,
        "PARLEY_META_VERIFY_TOKEN": "fault",
        "PARLEY_JWT_HS256_SECRET": "fault-suite-jwt-secret-of-32-bytes!",
        "PARLEY_SHUTDOWN_TIMEOUT_S": "10",
        "PARLEY_KAFKA_ACK_TIMEOUT_S": "3",
    }
    stack["env"] = env
    services: dict[str, ServiceProcess] = {}
    started = {name: (name, env) for name in ("parley-ingest", "parley-normalizer", "parley-routing")}
    for name, (command, own) in (more or {}).items():
        started[name] = (command, {**env, **own})
    for name, (command, settings) in started.items():
        directory = stack["dir"] / name
        directory.mkdir(exist_ok=True)
        services[name] = start_service(command, settings, directory)
    for service in services.values():
        await asyncio.to_thread(service.wait_ready)
    stack["services"] = services
    return services


async def run_cluster_fault(
    name: str,
    infra: Infra,
    namespace: str,
    stack: dict[str, Any],
    fault: Callable[[], Coroutine[Any, Any, None]],
    store_url: str | None = None,
    more: dict[str, tuple[str, dict[str, str]]] | None = None,
    before_stop: Callable[[dict[str, ServiceProcess], Report], Coroutine[Any, Any, None]] | None = None,
) -> Report:
    services = await start_stack(infra, namespace, stack, store_url or stack["store_url"], more)
    try:
        for i, page in enumerate(PAGES):
            await publish_channel(
                infra.kafka, namespace, channel_id=f"ch-c{i}", tenant_id=f"tenant-{i % 2}", account_id=page
            )
        report = Report(fault=name)
        ingest = webhooks(services["parley-ingest"].url)
        started = time.monotonic()
        sent = await drive_threads(
            webhook_threads(PAGES, CUSTOMERS), RATE_PER_S, SECONDS, ingest, report, fault, SECONDS / 3
        )
        report.details.append(
            f"{report.acknowledged} acknowledged in {time.monotonic() - started:.0f} s "
            f"({report.acknowledged / max(time.monotonic() - started, 1):.0f}/s offered {RATE_PER_S:.0f}/s)"
        )
        await verify_history(stack["store_url"], sent, report, SETTLE_TIMEOUT_S, fresh=ingest)
        await settle_consumers(infra.kafka, namespace, report)
        if before_stop is not None:
            await before_stop(services, report)
        # a process that died unseen leaves its group without offsets, which the lag check misses
        if exited := sorted(n for n, s in services.items() if s.process.poll() is not None):
            report.details.append(f"exited during the run: {exited}")
        REPORTS.append(report)
        assert not exited, report
        return report
    finally:
        for service in services.values():
            service.terminate()


async def test_the_partition_leader_s_broker_killed(
    infra: Infra, namespace: str, cluster_stack: dict[str, Any]
) -> None:
    """Leadership moves to a follower in sync; producers with acks=all and idempotence go on."""
    notes: list[str] = []

    async def fault() -> None:
        node = await leader_of_most(infra, namespace)
        kill_node(node)
        killed = time.monotonic()
        notes.append(f"node {node} (the leader of most of the run's partitions) SIGKILLed")
        await asyncio.sleep(20)
        await asyncio.to_thread(infra_script, "start-kafka-node", str(node))
        notes.append(f"node {node} restarted {time.monotonic() - killed:.0f} s after the kill")

    report = await run_cluster_fault(
        "3 brokers: the leader's broker SIGKILLed", infra, namespace, cluster_stack, fault
    )
    report.details[:0] = notes
    assert_clean(report)


async def test_two_of_three_brokers_down(infra: Infra, namespace: str, cluster_stack: dict[str, Any]) -> None:
    """Below min ISR: ingest answers 503 (nothing acknowledged without two copies); one broker
    back restores writes, then the second returns."""
    notes: list[str] = []

    async def fault() -> None:
        for node in (2, 3):
            kill_node(node)
        notes.append("nodes 2 and 3 SIGKILLed together")
        await asyncio.sleep(20)
        await asyncio.to_thread(infra_script, "start-kafka-node", "2")
        notes.append("node 2 restarted after 20 s")
        await asyncio.sleep(10)
        await asyncio.to_thread(infra_script, "start-kafka-node", "3")
        notes.append("node 3 restarted 10 s later")

    report = await run_cluster_fault("3 brokers: two of three down", infra, namespace, cluster_stack, fault)
    report.details[:0] = notes
    # while one broker was left, ingest refused (503) what it could not make durable: senders retried
    assert report.retried > 0, report
    assert_clean(report)


async def test_the_store_slow_then_refusing(
    infra: Infra, namespace: str, cluster_stack: dict[str, Any]
) -> None:
    """Every store round trip of the services slowed to 200 ms for 30 s, then connections refused
    for 30 s: routing falls behind and waits, ingest keeps acknowledging, nothing is lost."""
    host, port = store_address(cluster_stack["store_url"])
    notes: list[str] = []
    async with FaultProxy(host, port) as proxy:

        async def fault() -> None:
            proxy.delay(0.2)
            await asyncio.sleep(30)
            notes.append(
                f"store slowed to 200 ms per round trip for 30 s ({proxy.stats.accepted} connections)"
            )
            proxy.refusing()
            await asyncio.sleep(30)
            notes.append(f"then refused connections for 30 s ({proxy.stats.refused} refused)")
            proxy.passing()

        report = await run_cluster_fault(
            "store 200 ms for 30 s, then refusing for 30 s",
            infra,
            namespace,
            cluster_stack,
            fault,
            store_url=through(proxy, cluster_stack["store_url"]),
        )
    report.details[:0] = notes
    assert_clean(report)


FENCED = "parley_routing_fenced_batches_total"
STORE_DELAY_S = 3.0  # per round trip of the cut-off replica's store: its batch outlives its session
CUT_S = 30.0


async def test_routing_cut_off_from_kafka_for_30_seconds_and_its_late_writes_fenced(
    infra: Infra, namespace: str, any_cluster_stack: dict[str, Any]
) -> None:
    """Two routing replicas; the first reaches Kafka only through proxies and its store through
    another. Its store is slowed (a batch now takes about half a minute), then its network to Kafka
    is cut for 30 s: its consumer session expires, the second replica takes every partition and new
    epochs, and the first one's batches, still running with records fetched before the cut, reach
    the store after that: the store refuses them (counted). Then the network heals, the first
    replica rejoins, and the checker finds every message applied once, in order, lag back to zero.
    """
    stack = any_cluster_stack
    host, port = store_address(stack["store_url"])
    metrics_ports = {"parley-routing": free_port(), "routing-cut-off": free_port()}
    notes: list[str] = []
    proxies = await kafka_proxies(infra)
    try:
        async with FaultProxy(host, port) as store:
            cut_off = {
                "PARLEY_KAFKA_BOOTSTRAP_SERVERS": through_proxies(proxies),
                "PARLEY_STORE_URL": through(store, stack["store_url"]),
                "PARLEY_METRICS_PORT": str(metrics_ports["routing-cut-off"]),
            }

            async def fault() -> None:
                store.delay(STORE_DELAY_S)
                await asyncio.sleep(5)  # a batch under way, records fetched behind it
                for proxy in proxies:
                    proxy.cut()
                notes.append(
                    f"the first replica's store slowed to {STORE_DELAY_S:.0f} s per round trip, then its "
                    f"network to Kafka cut ({len(proxies)} node(s)) for {CUT_S:.0f} s"
                )
                await asyncio.sleep(CUT_S)
                for proxy in proxies:
                    proxy.passing()
                store.passing()
                notes.append("network and store restored together")

            async def count_fenced(_: dict[str, ServiceProcess], report: Report) -> None:
                fenced = {
                    (name, by): await scraped(metrics_port, f'{FENCED}{{by="{by}"}}')
                    for name, metrics_port in metrics_ports.items()
                    for by in ("store", "replica")
                }
                report.details.append(
                    "batches fenced: the cut-off replica's refused by the store "
                    f"{fenced['routing-cut-off', 'store']:.0f}, given up by itself "
                    f"{fenced['routing-cut-off', 'replica']:.0f}; the other's "
                    f"{fenced['parley-routing', 'store']:.0f} and {fenced['parley-routing', 'replica']:.0f} "
                    "(a rebalance fences a batch under way)"
                )
                stack["fenced"] = fenced

            report = await run_cluster_fault(
                "routing cut off from Kafka for 30 s, its late writes fenced",
                infra,
                namespace,
                stack,
                fault,
                more={
                    # the other replica talks to Kafka and the store directly; each has a metrics
                    # port of its own to read its count from
                    "parley-routing": (
                        "parley-routing",
                        {"PARLEY_METRICS_PORT": str(metrics_ports["parley-routing"])},
                    ),
                    "routing-cut-off": ("parley-routing", cut_off),
                },
                before_stop=count_fenced,
            )
    finally:
        for proxy in proxies:
            await proxy.close()
    report.details[:0] = notes
    # the cut-off replica really wrote after losing its partitions, and the store refused it: with
    # the store's check removed its late batches commit and this count stays at zero
    assert stack["fenced"]["routing-cut-off", "store"] >= 1, report
    assert_clean(report)
