"""The request-body limit every API sits behind (security finding 5).

A tiny API built like the services' (FastAPI mounted at ``/v1`` inside the process's app), called
in-process with bodies that stream in chunks, so the test sees how much of a body the process
pulled before it answered. No ``from __future__ import annotations``: FastAPI must see ``caller``.
"""

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI
from parley_shared.api import install_error_handlers, principal_dependency
from parley_shared.auth import ApiSettings, Principal, TokenVerifier, issue_dev_token
from parley_shared.http import Readiness, build_app
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.routing import Mount

pytestmark = pytest.mark.unit

SECRET = "unit-test-secret-of-at-least-32-bytes"
LIMIT = 64 * 1024
CHUNK = 16 * 1024


class NoteIn(BaseModel):
    text: str


def process(limit: int | None = LIMIT) -> Starlette:
    api = FastAPI()
    install_error_handlers(api)
    caller = Depends(principal_dependency(TokenVerifier(ApiSettings(jwt_hs256_secret=SECRET))))

    @api.post("/notes")
    async def add_note(principal: Annotated[Principal, caller], body: NoteIn) -> dict[str, int]:
        return {"length": len(body.text)}

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield

    return build_app([Mount("/v1", app=api)], Readiness(), lifespan, max_body_bytes=limit)


class Endless:
    """A JSON body that never ends, counting how many bytes the server pulled."""

    def __init__(self) -> None:
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'{"text": "'
        while self.sent < 1024 * 1024 * 1024:  # a gigabyte, if nothing stops it
            self.sent += CHUNK
            yield b"a" * CHUNK


async def post(
    app: Starlette, *, authorized: bool = True, headers: dict[str, str] | None = None, **kwargs: object
) -> httpx.Response:
    headers = {"content-type": "application/json", **(headers or {})}
    if authorized:
        headers["authorization"] = f"Bearer {issue_dev_token(SECRET, 'usr-1', 'tenant-a', [])}"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        return await client.post("/v1/notes", headers=headers, **kwargs)  # type: ignore[arg-type]


async def test_a_streamed_body_is_cut_off_at_the_limit_and_answered_413() -> None:
    body = Endless()
    response = await post(process(), content=body)
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "PAYLOAD_TOO_LARGE"
    # the process stopped reading at the limit instead of taking the whole gigabyte
    assert body.sent <= LIMIT + 2 * CHUNK


async def test_the_limit_comes_before_authentication() -> None:
    body = Endless()
    response = await post(process(), authorized=False, content=body)
    assert response.status_code == 413
    assert body.sent <= LIMIT + 2 * CHUNK


async def test_a_declared_length_over_the_limit_is_refused_before_a_byte_is_read() -> None:
    pulled = 0

    async def declared() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(8):
            pulled += CHUNK
            yield b"a" * CHUNK

    response = await post(
        process(),
        content=declared(),
        headers={"content-length": str(200 * 1024 * 1024)},
    )
    assert response.status_code == 413
    assert response.json()["code"] == "PAYLOAD_TOO_LARGE"
    assert pulled <= CHUNK  # the transport may prime one chunk; the app read none of it


async def test_a_body_under_the_limit_is_served() -> None:
    response = await post(process(), json={"text": "a" * (LIMIT - 100)})
    assert response.status_code == 200, response.text
    assert response.json() == {"length": LIMIT - 100}


async def test_without_the_limit_the_same_body_is_read_whole() -> None:
    # the control: what the limit prevents (a 256 KiB body against a 64 KiB limit)
    response = await post(process(limit=None), json={"text": "a" * (4 * LIMIT)})
    assert response.status_code == 200
    limited = await post(process(), json={"text": "a" * (4 * LIMIT)})
    assert limited.status_code == 413


def test_every_process_is_served_on_uvloop_with_capped_httptools(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """uvloop for the event loop; httptools for HTTP, with the process's request-head limit."""
    import uvicorn
    from parley_shared import http
    from parley_shared.settings import ServiceSettings

    seen: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *_a, **kw: seen.update(kw))
    monkeypatch.setattr(http.signal, "signal", lambda *_a: None)  # keep pytest's own handlers
    http.serve("app:factory", host="127.0.0.1", port=0, shutdown_timeout_s=1.0)
    assert seen["loop"] == "uvloop"
    protocol = seen["http"]
    assert isinstance(protocol, type) and issubclass(protocol, http.HeadCappedHttpTools)
    assert protocol.head_limit == ServiceSettings().http_max_header_bytes
