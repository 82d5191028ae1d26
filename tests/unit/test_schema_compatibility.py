"""The committed JSON Schemas are the contract: models may only grow compatibly.

Compatible: new optional fields, new event types. Incompatible (needs a new ``...vN`` type):
a removed field, a field whose type changed, a new required field. Run ``make docs`` after a
compatible change and commit the regenerated schemas.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from parley_events import EVENT_TYPES

pytestmark = pytest.mark.unit

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "events.md"
IGNORED_KEYS = {"description", "examples", "title", "default"}


def shape(schema: Any) -> Any:
    """A property's schema without the prose: what a consumer's parser depends on."""
    if isinstance(schema, dict):
        return {k: shape(v) for k, v in schema.items() if k not in IGNORED_KEYS}
    if isinstance(schema, list):
        return [shape(v) for v in schema]
    return schema


def incompatibilities(old: dict[str, Any], new: dict[str, Any], where: str) -> list[str]:
    problems: list[str] = []
    old_props: dict[str, Any] = old.get("properties", {})
    new_props: dict[str, Any] = new.get("properties", {})
    for name, old_schema in old_props.items():
        if name not in new_props:
            problems.append(f"{where}.{name} was removed")
        elif shape(old_schema) != shape(new_props[name]):
            problems.append(f"{where}.{name} changed type")
    added_required = set(new.get("required", [])) - set(old.get("required", []))
    for name in sorted(added_required):
        problems.append(f"{where}.{name} became required")
    for def_name, old_def in old.get("$defs", {}).items():
        new_def = new.get("$defs", {}).get(def_name)
        if new_def is None:
            problems.append(f"{where}.$defs.{def_name} was removed")
        else:
            problems.extend(incompatibilities(old_def, new_def, f"{where}.{def_name}"))
    return problems


@pytest.mark.parametrize("model", EVENT_TYPES, ids=lambda m: m.event_type)
def test_every_event_type_is_compatible_with_its_committed_schema(model: Any) -> None:
    path = SCHEMAS / f"{model.event_type}.json"
    assert path.exists(), f"no committed schema for {model.event_type}: run `make docs`"
    committed = json.loads(path.read_text())
    current = model.model_json_schema(mode="serialization")
    problems = incompatibilities(committed, current, model.event_type)
    assert not problems, (
        f"{model.event_type} changed incompatibly ({'; '.join(problems)}): "
        "publish a new version of the type instead"
    )


def test_the_checker_catches_removed_retyped_and_newly_required_fields() -> None:
    old = {
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}, "c": {"type": "string"}},
        "required": ["a"],
    }
    new = {
        "properties": {
            "a": {"type": "string", "description": "prose may change"},
            "b": {"type": "string"},
            "c": {"type": "string"},
            "d": {"type": "string"},
        },
        "required": ["a", "c"],
    }
    del new["properties"]["a"]
    assert sorted(incompatibilities(old, new, "t")) == [
        "t.a was removed",
        "t.b changed type",
        "t.c became required",
    ]


def test_an_added_optional_field_is_compatible() -> None:
    old = {"properties": {"a": {"type": "string"}}, "required": ["a"]}
    new = {
        "properties": {"a": {"type": "string", "description": "x"}, "b": {"type": "string"}},
        "required": ["a"],
    }
    assert incompatibilities(old, new, "t") == []


def test_docs_list_every_event_type() -> None:
    text = DOCS.read_text()
    missing = [m.event_type for m in EVENT_TYPES if m.event_type not in text]
    assert not missing, f"docs/events.md does not describe {missing}"
