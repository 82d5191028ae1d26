"""Write docs/schemas/<event type>.json and docs/asyncapi/<service>.json from the contracts.

Run by `make docs`. The committed schemas are what tests/unit/test_schema_compatibility.py
compares the models against, so regenerate and commit them with every contract change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from parley_events import EVENT_TYPES, Event
from parley_events import __name__ as _pkg
from parley_events.contracts import SERVICES
from parley_events.envelope import CloudEventAttributes

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "docs" / "schemas"
ASYNCAPI = ROOT / "docs" / "asyncapi"
VERSION = "1.0.0"


def event_schema(model: type[Event]) -> dict[str, Any]:
    schema = model.model_json_schema(mode="serialization")
    schema["$id"] = f"urn:parley:event:{model.event_type}"
    schema["x-parley-event-type"] = model.event_type
    schema["x-parley-topic"] = model.topic.name
    schema["x-parley-key"] = model.topic.key
    return schema


def message_ref(model: type[Event]) -> dict[str, str]:
    return {"$ref": f"#/components/messages/{model.event_type}"}


def asyncapi(service: str) -> dict[str, Any]:
    contract = next(c for c in SERVICES if c.service == service)
    models = {m.event_type: m for m in (*contract.publishes, *contract.consumes)}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for model in models.values():
        channel = channels.setdefault(
            model.topic.name.replace(".", "_"),
            {"address": model.topic.name, "description": model.topic.description, "messages": {}},
        )
        channel["messages"][model.event_type] = message_ref(model)
    for verb, group in (("send", contract.publishes), ("receive", contract.consumes)):
        for model in group:
            name = f"{verb}_{model.event_type}".replace(".", "_")
            operations[name] = {
                "action": verb,
                "channel": {"$ref": f"#/channels/{model.topic.name.replace('.', '_')}"},
                "messages": [
                    {"$ref": f"#/channels/{model.topic.name.replace('.', '_')}/messages/{model.event_type}"}
                ],
            }
    headers = CloudEventAttributes.model_json_schema()
    return {
        "asyncapi": "3.0.0",
        "info": {"title": f"parley-{service}", "version": VERSION, "description": contract.description},
        "defaultContentType": "application/json",
        "servers": {"kafka": {"host": "127.0.0.1:9092", "protocol": "kafka", "description": "make infra-up"}},
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": {
                m.event_type: {
                    "name": m.event_type,
                    "title": m.__name__,
                    "summary": (m.__doc__ or "").strip().splitlines()[0],
                    "contentType": "application/json",
                    "headers": {
                        "description": "CloudEvents 1.0 binary mode: ce_* Kafka headers",
                        **{k: v for k, v in headers.items() if k in ("type", "properties")},
                    },
                    "payload": {"$ref": f"../schemas/{m.event_type}.json"},
                    "bindings": {"kafka": {"key": {"type": "string", "description": m.topic.key}}},
                }
                for m in models.values()
            }
        },
    }


def write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def main() -> None:
    for model in EVENT_TYPES:
        write(SCHEMAS / f"{model.event_type}.json", event_schema(model))
    for contract in SERVICES:
        write(ASYNCAPI / f"{contract.service}.json", asyncapi(contract.service))
    print(f"wrote {len(EVENT_TYPES)} schemas and {len(SERVICES)} AsyncAPI documents ({_pkg})")


if __name__ == "__main__":
    main()
