"""The HTTP surface every process has: /healthz, /readyz and /metrics, and how it is served."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Lifespan

from parley_shared.settings import ServiceSettings, load_settings

Check = Callable[[], Awaitable[object]]


@dataclass
class Readiness:
    """What /readyz checks; ``draining`` makes it fail first thing on shutdown."""

    checks: dict[str, Check] = field(default_factory=dict)
    timeout_s: float = 2.0
    draining: bool = False
    started: bool = False

    async def evaluate(self) -> tuple[bool, dict[str, str]]:
        if self.draining:
            return False, {"process": "draining"}
        if not self.started:
            return False, {"process": "starting"}
        results: dict[str, str] = {}

        async def run(name: str, check: Check) -> None:
            try:
                await asyncio.wait_for(check(), timeout=self.timeout_s)
                results[name] = "ok"
            except Exception as exc:  # every failure is a "not ready" answer, never a 500
                results[name] = f"unavailable: {type(exc).__name__}"

        await asyncio.gather(*(run(n, c) for n, c in self.checks.items()))
        return all(v == "ok" for v in results.values()), results


def ops_routes(readiness: Readiness) -> list[BaseRoute]:
    """Liveness (the loop answers), readiness (dependencies answer) and Prometheus metrics."""

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        ok, results = await readiness.evaluate()
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": results},
            status_code=200 if ok else 503,
        )

    async def metrics(_: Request) -> Response:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


async def http_error_as_json(_: Request, exc: Exception) -> Response:
    """Errors Starlette raises itself (no such path, wrong method) as ``{"code", "message"}``.

    A path no route matches never reaches a service's API (a percent-encoded newline in an id
    does not match the ``/v1`` mount, say), so the process answers it here in the same shape.
    """
    assert isinstance(exc, HTTPException)
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
    return JSONResponse(
        {"code": code, "message": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
    )


def build_app(routes: Sequence[BaseRoute], readiness: Readiness, lifespan: Lifespan[Starlette]) -> Starlette:
    """A Starlette app with the service's routes and the ops routes."""
    return Starlette(
        routes=[*routes, *ops_routes(readiness)],
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error_as_json},
    )


def serve(
    app_factory: str,
    *,
    host: str,
    port: int,
    shutdown_timeout_s: float,
) -> None:
    """Run an app factory ("module:function") under uvicorn until SIGTERM or Ctrl-C.

    uvicorn drains and runs the lifespan shutdown, then re-raises the signal it caught; the
    handlers installed here turn that into exit status 0 for a clean, complete shutdown.
    """
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    uvicorn.run(
        app_factory,
        factory=True,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(shutdown_timeout_s),
        lifespan="on",
    )


def run_service(settings_cls: type[ServiceSettings], app_factory: str) -> None:
    """A console entry point: load settings (or stop with a clear line), then serve."""
    settings = load_settings(settings_cls)
    serve(
        app_factory,
        host=settings.http_host,
        port=settings.http_port,
        shutdown_timeout_s=settings.shutdown_timeout_s,
    )
