"""Provider payloads for tests, shaped as the providers document them."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any


def messenger_text(
    page_id: str, customer_id: str, text: str, *, mid: str | None = None, ts_ms: int | None = None
) -> dict[str, Any]:
    """A Page webhook delivery carrying one Messenger text message from a customer."""
    return {
        "object": "page",
        "entry": [
            {
                "id": page_id,
                "time": ts_ms or int(time.time() * 1000),
                "messaging": [
                    {
                        "sender": {"id": customer_id},
                        "recipient": {"id": page_id},
                        "timestamp": ts_ms or int(time.time() * 1000),
                        "message": {"mid": mid or f"m_{uuid.uuid4().hex}", "text": text},
                    }
                ],
            }
        ],
    }


def body_of(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()
