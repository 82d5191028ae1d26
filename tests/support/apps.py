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
