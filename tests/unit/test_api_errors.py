"""The shared HTTP API surface: error answers and what the OpenAPI document says about them.

A tiny API built with parley_shared.api, mounted like the services' (``/v1`` inside the process's
app), called in-process. No ``from __future__ import annotations``: FastAPI must see ``caller``.
"""

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from parley_shared.api import ErrorOut, error_responses, install_error_handlers, principal_dependency
from parley_shared.auth import ApiSettings, Principal, TokenVerifier, issue_dev_token
from parley_shared.http import Readiness, build_app
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.routing import Mount

pytestmark = pytest.mark.unit

SECRET = "unit-test-secret-of-at-least-32-bytes"


class NoteIn(BaseModel):
    text: str


def process() -> Starlette:
    api = FastAPI(responses=error_responses(401, 422))
    install_error_handlers(api)
    caller = Depends(principal_dependency(TokenVerifier(ApiSettings(jwt_hs256_secret=SECRET))))

    @api.post("/notes/{note_id}", responses=error_responses(404))
    async def add_note(principal: Annotated[Principal, caller], note_id: str, body: NoteIn) -> dict[str, str]:
        return {"note_id": note_id, "text": body.text}

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield

    return build_app([Mount("/v1", app=api)], Readiness(), lifespan)


async def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
    token = issue_dev_token(SECRET, "usr-1", "tenant-a", [])
    headers = {"authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
    transport = httpx.ASGITransport(app=process())
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        return await client.request(method, path, headers=headers, **kwargs)


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe{", b"[" * 100_000, b"{not json"],
    ids=["not-utf-8", "nested-too-deep", "malformed"],
)
async def test_a_body_that_is_not_readable_json_is_a_validation_error_naming_the_body(body: bytes) -> None:
    response = await call("POST", "/v1/notes/n1", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["code"] == "VALIDATION_ERROR"
    assert [f["field"].split(".")[0] for f in error["fields"]] == ["body"]


async def test_a_path_no_route_matches_is_a_json_404() -> None:
    # a percent-encoded newline in an id does not even match the /v1 mount
    for path in ("/v1/notes/a%0Ab", "/elsewhere"):
        response = await call("POST", path, json={"text": "hi"})
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"code": "NOT_FOUND", "message": "Not Found"}


async def test_the_document_declares_the_bearer_scheme_and_the_error_shape() -> None:
    spec = (await call("GET", "/v1/openapi.json")).json()
    scheme = spec["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    operation = spec["paths"]["/notes/{note_id}"]["post"]
    assert operation["security"] == [{"bearer": []}]
    error = {"$ref": "#/components/schemas/ErrorOut"}
    for status in ("401", "404", "422"):
        assert operation["responses"][status]["content"]["application/json"]["schema"] == error, status
    assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]  # FastAPI's shape is not ours
    assert spec["components"]["schemas"]["ErrorOut"]["required"] == ["code", "message"]
    assert ErrorOut.model_validate({"code": "X", "message": "m", "decision_id": "d"}).model_extra == {
        "decision_id": "d"
    }
