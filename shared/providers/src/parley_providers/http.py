"""The plumbing every provider client shares: sending, reading answers, ids in paths, waits.

Nothing here knows a provider: each client in ``meta/`` and ``x/`` builds on these.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from parley_providers.errors import ErrorKind, ProviderError


def int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def segment(value: str) -> str:
    """One path segment, percent-encoded so an id can never reach another endpoint."""
    if not value or value in (".", ".."):
        raise ValueError("an id in a provider path must be a non-empty name")
    return quote(value, safe="")


def body_of(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def snippet(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:200] if text else f"HTTP {response.status_code}"


def expiry(expires_in: object) -> datetime | None:
    seconds = int_or_none(expires_in)
    if seconds is None or seconds <= 0:
        return None
    return datetime.now(UTC) + timedelta(seconds=seconds)


def retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait, from Retry-After, X's x-rate-limit-reset or Meta's usage headers."""
    header = response.headers.get("retry-after")
    if header is not None:
        try:
            return max(0.0, float(header))
        except ValueError:
            pass
    reset = int_or_none(response.headers.get("x-rate-limit-reset"))
    if reset is not None:
        return max(0.0, reset - time.time())
    waits: list[float] = []
    for name in ("x-business-use-case-usage", "x-page-usage", "x-app-usage"):
        raw = response.headers.get(name)
        if not raw:
            continue
        try:
            usage = json.loads(raw)
        except json.JSONDecodeError:
            continue
        entries: list[Any] = []
        if isinstance(usage, dict):
            for value in usage.values():
                entries.extend(value if isinstance(value, list) else [usage])
        for entry in entries:
            if isinstance(entry, dict):
                minutes = int_or_none(entry.get("estimated_time_to_regain_access"))
                if minutes:
                    waits.append(minutes * 60.0)
    return max(waits) if waits else None


def require_str(provider: str, status: int, data: Any, *keys: str) -> str:
    """A string at ``data[k1][k2]...``; an unexpected shape is a retryable provider fault."""
    current = data
    for key in keys:
        current = current.get(key) if isinstance(current, dict) else None
    if isinstance(current, int) and not isinstance(current, bool):
        current = str(current)
    if not isinstance(current, str) or not current:
        raise ProviderError(
            provider,
            status,
            None,
            None,
            f"unexpected response: no {'.'.join(keys)}",
            ErrorKind.RETRYABLE,
        )
    return current


async def send(
    http: httpx.AsyncClient, provider: str, method: str, url: str, **kwargs: Any
) -> httpx.Response:
    try:
        return await http.request(method, url, **kwargs)
    except httpx.TransportError as exc:  # no answer: connection, TLS, timeout, protocol
        raise ProviderError(
            provider, 0, None, None, f"transport error: {type(exc).__name__}", ErrorKind.RETRYABLE
        ) from exc


def json_object(provider: str, response: httpx.Response) -> dict[str, Any]:
    data = body_of(response)
    if not isinstance(data, dict):
        raise ProviderError(
            provider,
            response.status_code,
            None,
            None,
            "unexpected response: not a JSON object",
            ErrorKind.RETRYABLE,
        )
    return data
