"""What every Parley HTTP API shares: JSON errors with stable codes, and the caller's identity.

Both are declared in the OpenAPI documents too: every route requires the bearer scheme, and every
error answer has the :class:`ErrorOut` shape under the status codes the route declares with
:func:`error_responses`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from parley_shared.auth import Principal, TokenVerifier, Unauthorized
from parley_shared.http import http_error_as_json


class FieldError(BaseModel):
    """One invalid part of a request."""

    field: str = Field(description="Where it is: `body.name`, `query.limit`, `header.Idempotency-Key`.")
    message: str


class ErrorOut(BaseModel):
    """The body of every error answer; some codes add details of their own (see each API's docs)."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(description="Stable and machine-readable.", examples=["VALIDATION_ERROR"])
    message: str = Field(description="For people; may change.")
    fields: list[FieldError] | None = Field(
        default=None, description="`VALIDATION_ERROR` only: every invalid field and why."
    )


ERRORS = {
    401: "No valid bearer token (`UNAUTHORIZED`).",
    403: "The caller's role does not allow this.",
    404: "No such object in the caller's tenant.",
    409: "The request contradicts the object's current state; reload and try again.",
    422: "Invalid input (`VALIDATION_ERROR` names the fields), or a rule refused the request.",
    502: "The provider failed to answer; try again later.",
    503: "The provider is unavailable or throttling mid-flow; nothing is active yet: send the same "
    "request again (`retryable`).",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, all in the :class:`ErrorOut` shape."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        responses[status] = {"model": ErrorOut, "description": ERRORS[status]}
        if status == 401:
            responses[status]["headers"] = {
                "WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}
            }
    return responses


class ApiError(Exception):
    """An error answered as ``{"code": ..., "message": ...}`` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, **extra}


def install_error_handlers(app: FastAPI) -> None:
    """Every error is JSON with a machine-readable code; validation errors name the field."""

    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return JSONResponse(error_body(exc.code, exc.message, **exc.extra), status_code=exc.status)

    async def unauthorized(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            error_body("UNAUTHORIZED", str(exc)), status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )

    async def invalid(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        fields = [
            {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]} for err in exc.errors()
        ]
        names = ", ".join(f["field"] for f in fields)
        return JSONResponse(
            error_body("VALIDATION_ERROR", f"invalid: {names}", fields=fields), status_code=422
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError | RecursionError):
            # FastAPI answers a body it cannot decode (not UTF-8, nested too deeply) with a bare 400,
            # but malformed JSON with a 422: both are the same mistake, so both get the 422
            fields = [{"field": "body", "message": "the body is not a readable JSON document"}]
            return JSONResponse(
                error_body("VALIDATION_ERROR", "invalid: body", fields=fields), status_code=422
            )
        return await http_error_as_json(request, exc)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(Unauthorized, unauthorized)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)


def principal_dependency(verifier: TokenVerifier) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency that authenticates the caller (401 otherwise).

    The bearer scheme it declares puts the requirement on every route that uses it in the OpenAPI
    document; the verifier reads the header itself, so every failure is the same 401.
    """
    bearer = HTTPBearer(
        auto_error=False,
        scheme_name="bearer",
        bearerFormat="JWT",
        description="A JWT with `sub`, `tenant_id` and `roles` (`admin` for administrators).",
    )
    scheme = Security(bearer)

    async def principal(
        request: Request, _credentials: HTTPAuthorizationCredentials | None = scheme
    ) -> Principal:
        return await verifier.verify(request.headers.get("authorization"))

    return principal
