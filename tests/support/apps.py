"""Run a service's ASGI app inside the test's event loop, lifespan included."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn
from parley_ingest.bootstrap import create_ingest_app
from parley_ingest.settings import IngestSettings
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


@asynccontextmanager
async def served_ingest(settings: IngestSettings) -> AsyncIterator[str]:
    """Ingest with its lifespan, served by uvicorn on a free port so the sandbox can POST to it."""
    app = create_ingest_app(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    async with app.router.lifespan_context(app):
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("ingest stopped during start-up")
                await asyncio.sleep(0.01)
            yield f"http://127.0.0.1:{sock.getsockname()[1]}/webhooks/x"
        finally:
            server.should_exit = True
            await task
            sock.close()
