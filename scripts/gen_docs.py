"""Write docs/schemas/<event type>.json from the event models and docs/asyncapi/<process>.json
from the processes' routers.

Run by `make docs`. The committed schemas are what tests/unit/test_schema_compatibility.py
compares the models against, so regenerate and commit them with every contract change;
tests/unit/test_asyncapi.py fails while a committed document differs from a generated one.

Each process is wired by its own ``build(settings, adapters)`` with placeholder adapters (no
connection is opened): its router gives the subscribers and the event types it publishes, and
FastStream's AsyncAPI generation describes them. The read models a process keeps (the channel
and team directories, which are not consumers of the broker) are added as receive operations.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from parley_events import EVENT_TYPES, Event, topics
from parley_events import __name__ as _pkg
from parley_events.envelope import CloudEventAttributes
from parley_ingest.adapters.aliases import KafkaCustomerAliases
from parley_ingest.bootstrap import IngestAdapters, NormalizerAdapters, build_ingest, build_normalizer
from parley_ingest.settings import IngestSettings, NormalizerSettings
from parley_onboarding.bootstrap import OnboardingAdapters
from parley_onboarding.bootstrap import build as build_onboarding
from parley_onboarding.settings import OnboardingSettings
from parley_policy.bootstrap import PolicyAdapters
from parley_policy.bootstrap import build as build_policy
from parley_policy.settings import PolicySettings
from parley_reports.bootstrap import ReportsAdapters
from parley_reports.bootstrap import build as build_reports
from parley_reports.settings import ReportsSettings
from parley_routing.bootstrap import RoutingAdapters
from parley_routing.bootstrap import build as build_routing
from parley_routing.settings import RoutingSettings
from parley_shared.channels import KafkaChannelDirectory, KafkaTeamDirectory
from parley_shared.runtime import ReadModel, Wiring

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "docs" / "schemas"
ASYNCAPI = ROOT / "docs" / "asyncapi"
VERSION = "1.0.0"
BROKER = "127.0.0.1:9092"

# settings as a deployment without a namespace has them (the environment does not leak in)
COMMON: dict[str, Any] = {
    "kafka_bootstrap_servers": BROKER,
    "topic_namespace": "",
    "consumer_group_prefix": "parley",
}
# required settings no document depends on
NOT_A_SECRET = "placeholder-of-the-documents-only"  # noqa: S105 - no document reads it
API: dict[str, Any] = {"jwt_hs256_secret": NOT_A_SECRET}
PROVIDERS: dict[str, Any] = {
    **API,
    "encryption_keys": f"k1:{NOT_A_SECRET}",
    "meta_app_id": "app",
    "meta_app_secret": NOT_A_SECRET,
}


class Placeholder:
    """Stands in for an adapter the documents do not need: it may be named, never used."""

    def __getattr__(self, name: str) -> Placeholder:
        return Placeholder()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a placeholder adapter was used: the documents need no connection")


def channels() -> KafkaChannelDirectory:
    return KafkaChannelDirectory(BROKER, topics.CHANNELS.name)  # never started


def teams() -> KafkaTeamDirectory:
    return KafkaTeamDirectory(BROKER, topics.TEAMS.name)  # never started


@dataclass(frozen=True)
class Process:
    """One Parley process: what it does, and its wiring with placeholder adapters."""

    description: str
    wire: Callable[[], Wiring]


P: Any = Placeholder()
PROCESSES: dict[str, Process] = {
    "ingest": Process(
        "Receives provider webhooks, verifies them and archives each delivery raw.",
        lambda: build_ingest(
            IngestSettings(**COMMON, meta_app_secrets=NOT_A_SECRET, meta_verify_token=NOT_A_SECRET),
            IngestAdapters(publisher=P),
        ),
    ),
    "normalizer": Process(
        "Turns archived deliveries into one normalized event per provider message, receipt or "
        "template review.",
        lambda: build_normalizer(
            NormalizerSettings(**COMMON),
            NormalizerAdapters(
                channels=channels(),
                aliases=KafkaCustomerAliases(BROKER, topics.CUSTOMER_ALIASES.name),  # never started
                publisher=P,
                dead_letter=P,
                retry=P,
            ),
        ),
    ),
    "routing": Process(
        "Keeps conversations, queues and ownership; announces every change.",
        lambda: build_routing(
            RoutingSettings(**COMMON, **API),
            RoutingAdapters(repository=P, channels=channels(), teams=teams(), publisher=P, retry=P),
        ),
    ),
    "policy": Process(
        "Gates and delivers outbound replies; announces their outcomes and the reply windows.",
        lambda: build_policy(
            PolicySettings(**COMMON, **PROVIDERS),
            PolicyAdapters(
                store=P,
                templates=P,
                credentials=P,
                senders={},
                channels=channels(),
                teams=teams(),
                publisher=P,
                retry=P,
            ),
        ),
    ),
    "onboarding": Process(
        "Connects channels and holds their settings and teams (snapshots on compacted topics).",
        lambda: build_onboarding(
            OnboardingSettings(**COMMON, **PROVIDERS),
            OnboardingAdapters(store=P, connectors={}, publisher=P),
        ),
    ),
    "reports": Process(
        "Builds the Supervisors' reports from the public conversation, reply and status events "
        "(publishes nothing).",
        lambda: build_reports(
            ReportsSettings(**COMMON, **API), ReportsAdapters(store=P, channels=channels(), teams=teams())
        ),
    ),
}


def wirings() -> dict[str, Wiring]:
    """Every process's wiring, from its own build with placeholder adapters."""
    return {name: process.wire() for name, process in PROCESSES.items()}


def event_schema(model: type[Event]) -> dict[str, Any]:
    schema = model.model_json_schema(mode="serialization")
    schema["$id"] = f"urn:parley:event:{model.event_type}"
    schema["x-parley-event-type"] = model.event_type
    schema["x-parley-topic"] = model.topic.name
    schema["x-parley-key"] = model.topic.key
    return schema


def cloudevents_headers() -> dict[str, Any]:
    """The Kafka headers of every Parley record: CloudEvents 1.0 in binary mode."""
    attributes = CloudEventAttributes.model_json_schema()
    properties = {
        f"ce_{name}": {k: v for k, v in schema.items() if k in ("description", "examples")}
        | {"type": "string"}
        for name, schema in attributes["properties"].items()
    }
    properties["content-type"] = {"type": "string", "const": "application/json"}
    return {
        "type": "object",
        "description": "CloudEvents 1.0, Kafka binary mode: the attributes travel as ce_* headers "
        "(docs/events.md); ce_type names the event type of the value",
        "properties": properties,
        "required": sorted(f"ce_{name}" for name in {*attributes["required"], "specversion"}),
    }


def add_read_model(broker: KafkaBroker, model: ReadModel) -> None:
    """A read model as a receive operation: what it reads, with the event type of its records."""
    entry = broker.subscriber(
        model.source.name,
        title=model.name,
        description=f"Read model: the whole of {model.source.name} kept in memory, read from the "
        "beginning and followed (no consumer group).",
    )

    async def read(snapshot: Any) -> None:
        """Each record replaces the entry of its key."""

    read.__annotations__ = {"snapshot": model.event, "return": None}
    entry(read)


def asyncapi(name: str, wiring: Wiring | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of one process, from its router (FastStream's generation)."""
    process = PROCESSES[name]
    wiring = wiring or process.wire()
    broker = KafkaBroker(BROKER, description="make infra-up", logger=None)
    broker.include_router(wiring.router)
    for model in wiring.read_models:
        add_read_model(broker, model)
    spec = AsyncAPI(
        broker,
        title=f"parley-{name}",
        version=VERSION,
        description=process.description,
        schema_version="3.0.0",
    )
    document: dict[str, Any] = json.loads(spec.to_specification().to_json())
    headers = cloudevents_headers()
    for message in document.get("components", {}).get("messages", {}).values():
        message["headers"] = headers
    return document


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(data))


def main() -> None:
    for model in EVENT_TYPES:
        write(SCHEMAS / f"{model.event_type}.json", event_schema(model))
    for stale in ASYNCAPI.glob("*.json"):
        if stale.stem not in PROCESSES:
            stale.unlink()
    for name in PROCESSES:
        write(ASYNCAPI / f"{name}.json", asyncapi(name))
    print(f"wrote {len(EVENT_TYPES)} schemas and {len(PROCESSES)} AsyncAPI documents ({_pkg})")


if __name__ == "__main__":
    main()
