"""X API errors: problem types, legacy numeric codes and OAuth errors, and what each means."""

from __future__ import annotations

import httpx

from parley_providers.errors import ErrorKind, ProviderError
from parley_providers.http import body_of, int_or_none, retry_after, snippet

__all__ = [
    "CLIENT_CREDENTIAL_ERRORS",
    "CLIENT_FORBIDDEN",
    "INVALID_REQUEST",
    "OAUTH1_PERMISSIONS",
    "PROBLEMS",
    "RESOURCE_NOT_FOUND",
    "UNSUPPORTED_AUTHENTICATION",
    "USAGE_CAPPED",
    "classify_x_error",
    "x_error",
]

PROBLEMS = "https://api.twitter.com/2/problems/"
"""Where the X API v2's problem type URIs start (X API v2, error responses)."""
CLIENT_FORBIDDEN = PROBLEMS + "client-forbidden"
UNSUPPORTED_AUTHENTICATION = PROBLEMS + "unsupported-authentication"
OAUTH1_PERMISSIONS = PROBLEMS + "oauth1-permissions"
USAGE_CAPPED = PROBLEMS + "usage-capped"
INVALID_REQUEST = PROBLEMS + "invalid-request"
RESOURCE_NOT_FOUND = PROBLEMS + "resource-not-found"
CLIENT_CREDENTIAL_ERRORS = frozenset({"invalid_client", "unauthorized_client"})
"""OAuth 2.0 token endpoint errors that blame our client credentials, not the user's grant."""

_X_PERMISSION_PROBLEMS = (CLIENT_FORBIDDEN, UNSUPPORTED_AUTHENTICATION, OAUTH1_PERMISSIONS)


def _is_problem(problem_type: str | None, *problems: str) -> bool:
    """True if ``problem_type`` is one of ``problems``, compared by the last path segment only
    (X has served the same problem types from more than one host)."""
    name = (problem_type or "").rsplit("/", 1)[-1]
    return any(name == problem.rsplit("/", 1)[-1] for problem in problems)


def classify_x_error(
    status: int,
    code: int | None = None,
    problem_type: str | None = None,
    oauth_error: str | None = None,
) -> ErrorKind:
    """Classify an X API error by status, legacy numeric code, problem type URI or OAuth error.

    A plain 403 (duplicate post, a user who does not take DMs) refuses this one request, so it
    is INVALID_REQUEST; only the problem types about the app's access mean PERMISSION_MISSING.
    """
    if oauth_error in CLIENT_CREDENTIAL_ERRORS:
        return ErrorKind.INVALID_REQUEST  # our client credentials are wrong: configuration
    if oauth_error == "invalid_grant":
        return ErrorKind.REAUTH_REQUIRED
    if code == 89:  # v1.1 "invalid or expired token"
        return ErrorKind.REAUTH_REQUIRED
    if code == 88:  # v1.1 "rate limit exceeded"
        return ErrorKind.RATE_LIMITED
    if status == 401:
        return ErrorKind.REAUTH_REQUIRED
    if status == 429 or _is_problem(problem_type, USAGE_CAPPED):
        return ErrorKind.RATE_LIMITED
    if status >= 500:
        return ErrorKind.RETRYABLE
    if status == 403 and _is_problem(problem_type, *_X_PERMISSION_PROBLEMS):
        return ErrorKind.PERMISSION_MISSING
    return ErrorKind.INVALID_REQUEST


def x_error(response: httpx.Response) -> ProviderError:
    """The :class:`ProviderError` for a non-2xx X answer (problem, ``errors`` or OAuth shape)."""
    data = body_of(response)
    status = response.status_code
    code: int | None = None
    problem_type: str | None = None
    oauth_error: str | None = None
    message = snippet(response)
    if isinstance(data, dict):
        if isinstance(data.get("error"), str):  # OAuth 2.0 token endpoint
            oauth_error = data["error"]
            message = str(data.get("error_description") or oauth_error)
        if isinstance(data.get("type"), str):
            problem_type = data["type"]
        if data.get("detail") or data.get("title"):
            message = str(data.get("detail") or data.get("title"))
        errors = data.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            first = errors[0]
            code = int_or_none(first.get("code"))
            if first.get("message"):
                detail = data.get("detail") or data.get("title")
                message = f"{detail} ({first['message']})" if detail else str(first["message"])
            if problem_type is None and isinstance(first.get("type"), str):
                problem_type = first["type"]
    return ProviderError(
        "x",
        status,
        code,
        None,
        message,
        classify_x_error(status, code, problem_type, oauth_error),
        error_type=problem_type or oauth_error,
        retry_after_s=retry_after(response),
    )
