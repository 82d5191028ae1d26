"""The recorded-shape provider payloads under tests/fixtures/providers/<provider>/<name>.json.

Each follows its provider's documented webhook shape with made-up ids. ``body`` gives the bytes
as they are stored, which is what a provider signs; ``load`` the parsed JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "providers"


def path(provider: str, name: str) -> Path:
    return FIXTURES / provider / f"{name}.json"


def body(provider: str, name: str) -> bytes:
    """The fixture's raw bytes (a provider signs the bytes it sends, never a re-serialization)."""
    return path(provider, name).read_bytes()


def load(provider: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(body(provider, name))
    return data


def names(provider: str) -> list[str]:
    """Every fixture of a provider, by name."""
    return sorted(p.stem for p in (FIXTURES / provider).glob("*.json"))
