"""The ingest benchmark's baseline: a bare ASGI app that reads the POST body and answers 200.

Served by the same function and uvicorn settings as every Parley process
(``parley_shared.http.serve``), so the difference to ``parley-ingest`` is Parley's own work:
signature check, raw archive with ``acks=all``, metrics, logging context and tracing.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]


def create_app() -> Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]:
    async def app(
        scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def main() -> None:
    from parley_shared.http import serve

    serve("bench.baseline_app:create_app", host="127.0.0.1", port=int(sys.argv[1]), shutdown_timeout_s=10)


if __name__ == "__main__":
    main()
