"""The HTTP surface every process has: /healthz and /readyz on the API port, /metrics on a port
of its own, the request-body limit, and how it is served."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIServer

import uvicorn
from prometheus_client import start_wsgi_server
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Lifespan, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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
    """Liveness (the loop answers) and readiness (dependencies answer); metrics have their own port."""

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        ok, results = await readiness.evaluate()
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": results},
            status_code=200 if ok else 503,
        )

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]


@dataclass
class MetricsServer:
    """Prometheus's own exposition server on a thread, apart from the API's port and event loop."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @classmethod
    def start(cls, host: str, port: int) -> MetricsServer:
        server, thread = start_wsgi_server(port, addr=host)
        return cls(server, thread)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class BodyTooLarge(HTTPException):
    """The request body passed the process's limit while it streamed in."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class BodySizeLimit:
    """Refuses a body over ``limit`` bytes with 413 before anything reads it whole.

    A declared Content-Length over the limit is answered at once; a chunked or understated body
    is counted as it arrives and cut off at the limit. FastAPI reads the body before it runs any
    dependency, authentication included, so this has to sit in front of every API.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and (not value.isdigit() or int(value) > self.limit):
                await self._refuse(send)
                return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {"code": "PAYLOAD_TOO_LARGE", "message": f"the request body is larger than {self.limit} bytes"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


async def http_error_as_json(_: Request, exc: Exception) -> Response:
    """Errors Starlette raises itself (no such path, wrong method) as ``{"code", "message"}``.

    A path no route matches never reaches a service's API (a percent-encoded newline in an id
    does not match the ``/v1`` mount, say), so the process answers it here in the same shape.
    """
    assert isinstance(exc, HTTPException)
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"}.get(
        exc.status_code, "HTTP_ERROR"
    )
    return JSONResponse(
        {"code": code, "message": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
    )


def build_app(
    routes: Sequence[BaseRoute],
    readiness: Readiness,
    lifespan: Lifespan[Starlette],
    max_body_bytes: int | None = None,
) -> Starlette:
    """A Starlette app with the service's routes and the ops routes, bodies capped at the limit."""
    return Starlette(
        routes=[*routes, *ops_routes(readiness)],
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error_as_json},
        middleware=[Middleware(BodySizeLimit, limit=max_body_bytes)] if max_body_bytes else [],
    )


class HeadTooLarge(Exception):
    """A request's line and headers passed the process's limit (the protocol answers 400)."""


class HeadCappedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a cap on the request head (request line plus headers).

    httptools parses requests in C, several times cheaper than h11 (issue #18: uvicorn's own
    work was more than half of ingest's CPU per webhook), but unlike h11 it sets no bound on a
    head. Two counts give it one, ``head_limit`` bytes: the URL and headers parsed so far (a
    callback raising makes the parser fail, and uvicorn answers 400), and, while a head is not
    finished yet, the bytes received since it began (a header that never ends is buffered by
    httptools whole). The second count can include the end of a pipelined request before it.
    """

    head_limit = 16 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._in_head = False
        self._unfinished_bytes = 0

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            self._unfinished_bytes += len(data)
            if self._unfinished_bytes > self.head_limit:
                self.send_400_response("Request head too large.")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes, self._unfinished_bytes, self._in_head = 0, 0, True

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and the line's end
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.head_limit:
            raise HeadTooLarge(f"request head over {self.head_limit} bytes")


def head_capped_protocol(limit: int) -> type[HeadCappedHttpTools]:
    """The HTTP protocol class for a process whose request heads may be ``limit`` bytes."""
    return type("HeadCappedHttpTools", (HeadCappedHttpTools,), {"head_limit": limit})


def serve(
    app_factory: str,
    *,
    host: str,
    port: int,
    shutdown_timeout_s: float,
    settings: ServiceSettings | None = None,
) -> None:
    """Run an app factory ("module:function") under uvicorn until SIGTERM or Ctrl-C.

    uvicorn drains and runs the lifespan shutdown, then re-raises the signal it caught; the
    handlers installed here turn that into exit status 0 for a clean, complete shutdown. The
    connection limits come from ``settings`` (docs/security.md says which ones the front proxy
    must add: uvicorn has no timeout for a request's headers or body).
    """
    limits = settings or ServiceSettings()
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
        # uvloop: libuv's event loop for every process (sockets, timers and the Kafka client's
        # I/O run on it); httptools parses HTTP, with the request-head cap the settings promise
        loop="uvloop",
        http=head_capped_protocol(limits.http_max_header_bytes),
        proxy_headers=True,
        forwarded_allow_ips=limits.http_forwarded_allow_ips,
        limit_concurrency=limits.http_limit_concurrency,
        timeout_keep_alive=limits.http_keep_alive_timeout_s,
        server_header=False,
    )


def run_service(settings_cls: type[ServiceSettings], app_factory: str) -> None:
    """A console entry point: load settings (or stop with a clear line), then serve."""
    settings = load_settings(settings_cls)
    serve(
        app_factory,
        host=settings.http_host,
        port=settings.http_port,
        shutdown_timeout_s=settings.shutdown_timeout_s,
        settings=settings,
    )
