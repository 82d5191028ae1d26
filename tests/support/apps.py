"""Run a service's ASGI app inside the test's event loop, lifespan included."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette


@asynccontextmanager
async def running(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """Start the app's lifespan, hand out a client for it, and shut it down afterwards."""
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service") as client,
    ):
        yield client


def runtime_of(app: Starlette) -> Any:
    return app.state.runtime


async def scrape_metrics(app: Starlette) -> str:
    """What the app's own metrics port serves (/metrics is not on the API's port)."""
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.get(runtime_of(app).metrics_url)
    response.raise_for_status()
    return response.text


def app_of(client: httpx.AsyncClient) -> Starlette:
    """The in-process app behind a client made by :func:`running` or a fixture like it."""
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    app = transport.app
    assert isinstance(app, Starlette)
    return app
