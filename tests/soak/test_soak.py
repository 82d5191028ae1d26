"""``make soak``: steady traffic through every process for half an hour, memory and lag watched.

Signed Messenger deliveries go to ingest at ``PARLEY_SOAK_RATE`` a second (100) over 200
conversations, and agent replies go to policy at ``PARLEY_SOAK_REPLY_RATE`` a second (20) on the
same conversations, sent through the provider sandbox, for ``PARLEY_SOAK_SECONDS`` (1800). Ingest,
the normalizer, routing and policy run as real processes on the local Kafka and the default store
(PostgreSQL). Every ``SAMPLE_S`` seconds the run records each process's resident memory, the
consumer groups' lag and the error lines each process logged. At the end the reliability checker
gives its verdict on both streams (nothing lost, duplicated or out of order, lag back to zero),
and the run writes its figures and a plot to docs/reliability.md ("Soak") and docs/soak.png.

Not part of ``make test``: it needs the machine to itself for half an hour.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import textwrap
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from parley_events import Provider, qualify, topics
from parley_ingest.domain.normalize.events import conversation_id
from parley_sandbox import SandboxState
from parley_shared.ops import consumer_lag

from tests.conftest import ROOT, Infra
from tests.fault.checker import (
    RETRY_S,
    SECRET,
    Attempt,
    Report,
    Requests,
    TopicTail,
    drive_threads,
    now,
    replies,
    settle_consumers,
    signed,
    verify_history,
    verify_replies,
)
from tests.support.kafka import publish_events
from tests.support.policy import JWT, KEYS, TENANT, Sandbox, auth, channel, store_token
from tests.support.processes import ServiceProcess, free_port, start_service

pytestmark = pytest.mark.soak

SECONDS = float(os.environ.get("PARLEY_SOAK_SECONDS", "1800"))
RATE = float(os.environ.get("PARLEY_SOAK_RATE", "100"))
REPLY_RATE = float(os.environ.get("PARLEY_SOAK_REPLY_RATE", "20"))
SAMPLE_S = float(os.environ.get("PARLEY_SOAK_SAMPLE_S", "10"))
PAGES = [f"10460000000010{i}" for i in range(4)]
CUSTOMERS = 50  # per Page: 200 conversations
SERVICES = ("parley-ingest", "parley-normalizer", "parley-routing", "parley-policy")
AGENT = auth("agent-soak", roles=("admin",))
GROWTH_MB = 16.0  # a process's memory levels off: its last quarter within this (or 5 %) of the third


@dataclass
class Sample:
    at_s: float
    rss_mb: dict[str, float]
    lag: int
    errors: dict[str, int]
    lag_by_group: dict[str, int] = field(default_factory=dict)  # "group on topic" -> records behind


@dataclass
class SoakStack:
    processes: dict[str, ServiceProcess]
    sandbox: ServiceProcess
    store_url: str
    threads: list[str]  # "<page>|<channel>|<customer>"
    decisions: dict[str, str] = field(default_factory=dict)

    def conversation(self, thread: str) -> str:
        _page, channel_id, customer = thread.split("|")
        return conversation_id(TENANT, channel_id, f"dm:{customer}")


def rss_mb(pid: int) -> float:
    """Resident memory of a process (VmRSS), in MiB; 0 once it has gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def error_lines(process: ServiceProcess) -> int:
    """Lines the process logged at level error or above (its logs are JSON lines)."""
    count = 0
    for line in process.log().splitlines():
        if '"level": "error"' in line or '"level": "critical"' in line:
            count += 1
    return count


def delivery(page: str, customer: str, mid: str, n: int) -> bytes:
    """A Messenger text message as Meta delivers it, stamped now (so its reply window is open)."""
    ts = int(time.time() * 1000)
    message = {
        "sender": {"id": customer},
        "recipient": {"id": page},
        "timestamp": ts,
        "message": {"mid": mid, "text": f"soak message {n}"},
    }
    return json.dumps(
        {"object": "page", "entry": [{"id": page, "time": ts, "messaging": [message]}]}
    ).encode()


def webhooks(ingest_url: str) -> Requests:
    """Signed deliveries to ingest; a provider retries each until it gets a 200."""

    def request(thread: str, index: int) -> tuple[str, Attempt]:
        page, _channel, customer = thread.split("|")
        mid = f"m.{uuid.uuid4().hex}"
        body = delivery(page, customer, mid, index)

        async def attempt(client: httpx.AsyncClient) -> float | None:
            try:
                response = await client.post(
                    f"{ingest_url}/webhooks/meta", content=body, headers=signed(body)
                )
            except httpx.HTTPError:
                return RETRY_S
            if response.status_code == 503:
                return float(response.headers.get("retry-after", RETRY_S))
            return None if response.status_code == 200 else RETRY_S

        return mid, attempt

    return request


@pytest.fixture
async def soak_stack(
    infra: Infra, namespace: str, store_url: str, tmp_path: Path
) -> AsyncIterator[SoakStack]:
    assert store_url.startswith("postgresql"), "the soak runs on the default store, PostgreSQL"
    (tmp_path / "parley-sandbox").mkdir()
    port = free_port()
    sandbox = start_service(
        "parley-sandbox",
        {},
        tmp_path / "parley-sandbox",
        port=port,
        args=["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        ready_path="/_sandbox/health",
    )
    processes: dict[str, ServiceProcess] = {}
    try:
        await asyncio.to_thread(sandbox.wait_ready)
        snapshots = []
        async with httpx.AsyncClient(timeout=10) as http:
            admin = Sandbox(sandbox.url, http, SandboxState())
            for i, page in enumerate(PAGES):
                token = await admin.page(page)
                await store_token(store_url, f"ch-soak-{i}", token)
                snapshots.append(channel(f"ch-soak-{i}", Provider.MESSENGER, page))
        await publish_events(infra.kafka, namespace, *snapshots)
        env = {
            "PARLEY_KAFKA_BOOTSTRAP_SERVERS": infra.kafka,
            "PARLEY_STORE_URL": store_url,
            "PARLEY_TOPIC_NAMESPACE": namespace,
            "PARLEY_CONSUMER_GROUP_PREFIX": namespace,
            "PARLEY_META_APP_SECRETS": SECRET,
            "PARLEY_META_VERIFY_TOKEN": "soak",
            "PARLEY_JWT_HS256_SECRET": JWT,
            "PARLEY_ENCRYPTION_KEYS": KEYS,
            "PARLEY_META_APP_ID": SandboxState.meta_app_id,
            "PARLEY_META_APP_SECRET": SandboxState.meta_app_secret,
            "PARLEY_GRAPH_BASE_URL": sandbox.url,
            "PARLEY_SHUTDOWN_TIMEOUT_S": "10",
        }
        for name in SERVICES:
            (tmp_path / name).mkdir()
            processes[name] = start_service(name, env, tmp_path / name)
        for process in processes.values():
            await asyncio.to_thread(process.wait_ready)
        threads = [
            f"{page}|ch-soak-{i}|{page}-c{c}" for i, page in enumerate(PAGES) for c in range(CUSTOMERS)
        ]
        yield SoakStack(processes, sandbox, store_url, threads)
    finally:
        for process in [*processes.values(), sandbox]:
            process.terminate()


async def open_windows(stack: SoakStack, timeout_s: float = 120) -> None:
    """Wait until policy has recorded a customer message in every conversation."""
    pending = {stack.conversation(t) for t in stack.threads}
    url = stack.processes["parley-policy"].url
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=5) as client:
        while pending and time.monotonic() < deadline:
            for conversation in sorted(pending):
                response = await client.get(
                    f"{url}/v1/conversations/{conversation}/reply-window", headers=AGENT
                )
                if response.status_code == 200 and response.json()["window_open"]:
                    pending.discard(conversation)
            await asyncio.sleep(0.5)
    assert not pending, f"policy recorded no customer message in {len(pending)} conversations"


async def sample(stack: SoakStack, bootstrap: str, namespace: str, started: float) -> Sample:
    groups: dict[str, int] = {}
    for g in await consumer_lag(bootstrap, namespace):
        key = f"{g.group.removeprefix(namespace + '.')} on {g.topic.removeprefix(namespace + '.')}"
        groups[key] = groups.get(key, 0) + g.lag
    return Sample(
        round(time.monotonic() - started, 1),
        {name: round(rss_mb(p.process.pid), 1) for name, p in stack.processes.items()},
        sum(groups.values()),
        {name: error_lines(p) for name, p in stack.processes.items()},
        {key: lag for key, lag in groups.items() if lag},
    )


def levels_off(samples: list[Sample], name: str) -> tuple[float, float, bool]:
    """The median memory of the run's third quarter and of its last; whether it levelled off."""
    span = samples[-1].at_s
    third = [s.rss_mb[name] for s in samples if span / 2 <= s.at_s < span * 3 / 4]
    last = [s.rss_mb[name] for s in samples if s.at_s >= span * 3 / 4]
    if not third or not last:
        return 0.0, 0.0, False
    before, after = statistics.median(third), statistics.median(last)
    return before, after, after - before <= max(GROWTH_MB, before * 0.05)


def plot(samples: list[Sample], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s.at_s / 60 for s in samples]
    figure, (memory, lag) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for name in SERVICES:
        memory.plot(minutes, [s.rss_mb[name] for s in samples], label=name.removeprefix("parley-"))
    memory.set_ylabel("resident memory (MiB)")
    memory.legend(loc="upper left", ncol=4, fontsize="small")
    memory.grid(alpha=0.3)
    lag.plot(minutes, [s.lag for s in samples], color="tab:red")
    lag.set_ylabel("consumer lag (records)")
    lag.set_xlabel("minutes")
    lag.grid(alpha=0.3)
    figure.suptitle(
        f"make soak: {RATE:.0f} deliveries/s and {REPLY_RATE:.0f} replies/s for {SECONDS / 60:.0f} min"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def write_section(text: str) -> None:
    """Replace the "## Soak" section of docs/reliability.md (the rest of the page is kept)."""
    doc = ROOT / "docs" / "reliability.md"
    page = doc.read_text()
    start = page.find("\n## Soak\n")
    if start < 0:
        doc.write_text(page.rstrip("\n") + "\n\n" + text)
        return
    end = page.find("\n## ", start + 1)
    doc.write_text(page[: start + 1] + text + (page[end:] if end >= 0 else ""))


async def test_soak(soak_stack: SoakStack, infra: Infra, namespace: str) -> None:
    stack = soak_stack
    inbound, outbound = Report(fault="soak: webhooks"), Report(fault="soak: replies")
    ingest_url = stack.processes["parley-ingest"].url
    # every conversation starts with one customer message, so its reply window is open
    warm = await drive_threads(stack.threads, RATE, len(stack.threads) / RATE, webhooks(ingest_url), inbound)
    await open_windows(stack)
    samples: list[Sample] = []
    started = time.monotonic()
    running = True

    async def watch() -> None:
        while running:
            samples.append(await sample(stack, infra.kafka, namespace, started))
            await asyncio.sleep(SAMPLE_S)

    watcher = asyncio.create_task(watch())
    conversations = [stack.conversation(t) for t in stack.threads]
    policy_url = stack.processes["parley-policy"].url
    async with TopicTail(infra.kafka, qualify(topics.REPLIES.name, namespace)) as replies_topic:
        try:
            sent_in, sent_out = await asyncio.gather(
                drive_threads(stack.threads, RATE, SECONDS, webhooks(ingest_url), inbound),
                drive_threads(
                    conversations,
                    REPLY_RATE,
                    SECONDS,
                    replies(lambda: policy_url, AGENT, stack.decisions),
                    outbound,
                ),
            )
        finally:
            running = False
            await watcher
        for thread, items in warm.items():
            sent_in[thread] = items + sent_in.get(thread, [])

        await verify_history(stack.store_url, sent_in, inbound, timeout_s=300)
        await verify_replies(
            stack.sandbox.url, replies_topic, stack.decisions, sent_out, outbound, timeout_s=300
        )
    await settle_consumers(infra.kafka, namespace, inbound)
    samples.append(await sample(stack, infra.kafka, namespace, started))

    memory = {name: levels_off(samples, name) for name in SERVICES}
    errors = {name: samples[-1].errors[name] for name in SERVICES}
    elapsed = samples[-1].at_s
    (ROOT / "docs" / "soak.json").write_text(
        json.dumps([s.__dict__ for s in samples], indent=None, separators=(",", ":")) + "\n"
    )
    plot(samples, ROOT / "docs" / "soak.png")
    rows = [
        f"| {name.removeprefix('parley-')} | {samples[0].rss_mb[name]} | {before:.1f} | {after:.1f} | "
        f"{max(s.rss_mb[name] for s in samples)} | {'yes' if flat else 'no'} | {errors[name]} |"
        for name, (before, after, flat) in memory.items()
    ]
    streams = [
        f"| {r.fault.removeprefix('soak: ')} | {r.sent} | {r.acknowledged} | {r.retried} | {r.lost} "
        f"| {r.duplicated} | {r.out_of_order} | {r.recovery_s} |"
        for r in (inbound, outbound)
    ]
    intro = (
        f"Written by `make soak` (tests/soak), run {now()}: {RATE:.0f} signed Messenger deliveries a second "
        f"over {len(stack.threads)} conversations and {REPLY_RATE:.0f} agent replies a second on the same "
        f"conversations (through policy to the provider sandbox) for {SECONDS / 60:.0f} minutes, through "
        "ingest, the normalizer, routing and policy on the local Kafka and PostgreSQL; sampled every "
        f"{SAMPLE_S:.0f} s ({len(samples)} samples in docs/soak.json)."
    )
    peaks: dict[str, int] = {}
    for s in samples:
        for key, behind in s.lag_by_group.items():
            peaks[key] = max(peaks.get(key, 0), behind)
    behind_most = ", ".join(f"`{key}` {lag}" for key, lag in sorted(peaks.items(), key=lambda kv: -kv[1])[:4])
    lag_line = (
        f"Consumer lag: at most {max(s.lag for s in samples)} records during the run"
        f"{f' (the most behind at their peaks: {behind_most})' if behind_most else ''}; {inbound.lag_left} "
        f"left once every effect was in; {inbound.dead_lettered} dead-lettered. *Settled* is the time from "
        "the end of the load until every acknowledged request had its effect."
    )
    memory_line = (
        "Memory (MiB resident): at the start of the load, the medians of the run's third and last quarter, "
        f"the highest, and whether it levelled off (the last quarter within {GROWTH_MB:.0f} MiB or 5 % of "
        "the third); and the error lines each process logged."
    )
    write_section(
        "\n".join(
            [
                "## Soak",
                "",
                *textwrap.wrap(intro, 100),
                "",
                "![memory and consumer lag over the soak](soak.png)",
                "",
                "| stream | sent | acknowledged | sender retries | lost | duplicated | out of order "
                "| settled (s) |",
                "|---|---|---|---|---|---|---|---|",
                *streams,
                "",
                *textwrap.wrap(lag_line, 100),
                "",
                *textwrap.wrap(memory_line, 100),
                "",
                "| process | start | third quarter | last quarter | highest | levelled off | error lines |",
                "|---|---|---|---|---|---|---|",
                *rows,
                "",
                f"The run took {elapsed / 60:.1f} minutes from the start of the load to the last sample.",
                "",
            ]
        )
    )
    for report in (inbound, outbound):
        assert (report.lost, report.duplicated, report.out_of_order, report.unexpected) == (0, 0, 0, 0), (
            report
        )
    assert outbound.unannounced == 0, outbound
    assert (inbound.lag_left, inbound.dead_lettered) == (0, 0), inbound
    assert all(flat for _before, _after, flat in memory.values()), memory
