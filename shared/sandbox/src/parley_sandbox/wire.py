"""What every imitated API shares: failures in each provider's error shape, requests and replies."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from parley_providers.x import errors as x_errors
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from parley_sandbox.state import _ALNUM, _UNKNOWN_OBJECT


class GraphFailure(Exception):
    def __init__(
        self,
        status: int,
        code: int,
        subcode: int | None,
        message: str,
        *,
        details: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.subcode = subcode
        self.message = message
        self.details = details
        self.headers = headers or {}

    def response(self) -> Response:
        error: dict[str, Any] = {
            "message": self.message,
            "type": "OAuthException",
            "code": self.code,
            "fbtrace_id": "A" + "".join(secrets.choice(_ALNUM) for _ in range(22)),
        }
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.details is not None:
            error["error_data"] = {"messaging_product": "whatsapp", "details": self.details}
        return JSONResponse({"error": error}, status_code=self.status, headers=self.headers)


class XFailure(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(str(body))
        self.status = status
        self.body = body
        self.headers = headers or {}

    def response(self) -> Response:
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


def _x_problem(status: int, detail: str, problem: str = "about:blank", **extra: Any) -> XFailure:
    title = "Invalid Request" if status == 400 else HTTPStatus(status).phrase
    return XFailure(status, {"title": title, "detail": detail, "type": problem, "status": status, **extra})


def _x_invalid(message: str, parameter: str) -> XFailure:
    return XFailure(
        400,
        {
            "errors": [{"parameters": {parameter: []}, "message": message}],
            "title": "Invalid Request",
            "detail": "One or more parameters to your request was invalid.",
            "type": x_errors.INVALID_REQUEST,
        },
    )


def _x_oauth(status: int, error: str, description: str) -> XFailure:
    return XFailure(status, {"error": error, "error_description": description})


def _x_unauthorized() -> XFailure:
    return _x_problem(401, "Unauthorized")


def _param_required(name: str) -> GraphFailure:
    return GraphFailure(400, 100, None, f"(#100) The parameter {name} is required")


def _unknown_object(object_id: str) -> GraphFailure:
    return GraphFailure(400, 100, 33, _UNKNOWN_OBJECT.format(id=object_id))


class AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Incoming:
    request: Request
    query: dict[str, str]
    body: dict[str, Any]
    raw: bytes = b""
    """The body's bytes (a file upload's content)."""

    @property
    def params(self) -> dict[str, Any]:
        """Graph reads parameters from the query string and the body alike."""
        return {**self.query, **self.body}

    def path(self, name: str) -> str:
        return str(self.request.path_params[name])


@dataclass
class Reply:
    payload: dict[str, Any]
    status: int = 200
    result_id: str | None = None


Handler = Callable[[Incoming], Reply]


def _parse_body(raw: bytes, content_type: str) -> dict[str, Any] | None:
    """The body as a dict; None when it cannot be read as one."""
    if not raw.strip():
        return {}
    if "application/x-www-form-urlencoded" in content_type:
        return dict(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _json_param(value: Any) -> Any:
    """Graph accepts object parameters as JSON text (form posts) or as JSON objects."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _random_token(prefix: str, length: int) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


def _digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%A, %d-%b-%y %H:%M:%S UTC")


def _split_fields(spec: str) -> dict[str, list[str]]:
    """``id,name,ig{id,username}`` -> ``{"id": [], "name": [], "ig": ["id", "username"]}``."""
    result: dict[str, list[str]] = {}
    depth, start = 0, 0
    parts: list[str] = []
    for index, char in enumerate(spec + ","):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(spec[start:index].strip())
            start = index + 1
    for part in filter(None, parts):
        name, _, rest = part.partition("{")
        result[name.strip()] = [f.strip() for f in rest.rstrip("}").split(",") if f.strip()]
    return result


def _cursor(index: int) -> str:
    return base64.urlsafe_b64encode(str(index).encode()).decode().rstrip("=")


def _uncursor(cursor: str) -> int:
    try:
        return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (ValueError, binascii.Error):
        raise GraphFailure(400, 100, None, "(#100) Invalid cursor") from None
