"""The reports service's HTTP API, as the console's Reports page reads it.

The console asks ``parley-reports`` (``PARLEY_CONSOLE_REPORTS_URL``) with the signed-in user's own
bearer token, so the reports service applies its own access rules (Supervisors of a channel and
administrators) and onboarding learns nothing about reports that the user could not ask for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx


class ReportsUnavailable(Exception):
    """The reports service did not answer, or answered something that is not its API's."""


@dataclass(frozen=True)
class ReportsAnswer:
    """One answer of the reports API: its status and its JSON body (an error's ``code`` too)."""

    status: int
    body: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def code(self) -> str:
        return str(self.body.get("code") or "")


class ReportsApi(Protocol):
    """The reports API's read routes (``/v1/reports/...``)."""

    async def get(self, route: str, token: str, params: Mapping[str, str]) -> ReportsAnswer: ...


class HttpReportsApi:
    """``ReportsApi`` over httpx: ``GET <base>/v1/reports/<route>`` with the caller's token."""

    def __init__(self, http: httpx.AsyncClient, base_url: str) -> None:
        self._http = http
        self._base = base_url.rstrip("/")

    def __repr__(self) -> str:
        return f"HttpReportsApi({self._base!r})"

    async def get(self, route: str, token: str, params: Mapping[str, str]) -> ReportsAnswer:
        try:
            response = await self._http.get(
                f"{self._base}/v1/reports/{route}",
                params=dict(params),
                headers={"authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as exc:
            raise ReportsUnavailable(type(exc).__name__) from exc
        if response.status_code >= 500:
            raise ReportsUnavailable(f"status {response.status_code}")
        try:
            body = response.json()
        except ValueError as exc:
            raise ReportsUnavailable("not JSON") from exc
        if not isinstance(body, dict):
            raise ReportsUnavailable("not a JSON object")
        return ReportsAnswer(response.status_code, body)
