"""HTTP clients for the providers Parley talks to: Meta's Graph API and the X API.

The same clients serve production and tests; only ``base_url`` differs (the real hosts, or the
local sandbox in :mod:`parley_shared.sandbox`). Every non-2xx answer, transport failure or
unreadable body raises :class:`ProviderError`, whose ``kind`` tells the caller what to do:
reconnect the account, ask for a permission, back off, retry, give up on the conversation window,
or fix the request. Classification looks only at status codes and numeric error codes, never
at message text.

Tokens travel in the ``Authorization`` header wherever the provider allows it, so they stay out
of URLs (and out of any access log). Only the OAuth code exchanges and ``debug_token``'s
``input_token`` are query parameters, because that is the only form Graph accepts for them.
Nothing here logs, and no :class:`ProviderError` text ever contains a token.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import quote

import httpx

__all__ = [
    "ErrorKind",
    "GraphClient",
    "PageInfo",
    "ProviderError",
    "UserToken",
    "XClient",
    "XUser",
    "classify_graph_error",
    "classify_x_error",
]


class ErrorKind(StrEnum):
    """What a caller should do about a failed provider call."""

    REAUTH_REQUIRED = "reauth_required"  # the token is dead: the user must connect again
    PERMISSION_MISSING = "permission_missing"  # a scope, page task or role is missing
    RATE_LIMITED = "rate_limited"  # back off (``retry_after_s`` when the provider said)
    RETRYABLE = "retryable"  # transient: the same call may succeed later
    WINDOW_CLOSED = "window_closed"  # outside the customer-service window: needs a template/tag
    INVALID_REQUEST = "invalid_request"  # this request will never succeed as it is


_REAUTH_CODES = frozenset({102, 190})
_RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 130429, 131048, 131056, *range(80001, 80010)})
_RETRYABLE_CODES = frozenset({1, 2, 131000, 131016})
_WINDOW_CODES = frozenset({131047})
# Messenger and Instagram report a closed 24-hour window as code 10 with these subcodes; without
# this, a closed window would look like a lost permission.
_WINDOW_SUBCODES = frozenset({2018278, 2534022})


def classify_graph_error(status: int, code: int | None, subcode: int | None) -> ErrorKind:
    """Classify a Graph API (Facebook, Instagram, WhatsApp Cloud API) error by its numbers."""
    if code is not None:
        if code in _REAUTH_CODES:
            return ErrorKind.REAUTH_REQUIRED
        if code == 10 and subcode in _WINDOW_SUBCODES:
            return ErrorKind.WINDOW_CLOSED
        if code == 10 or 200 <= code <= 299:
            return ErrorKind.PERMISSION_MISSING
        if code in _RATE_LIMIT_CODES:
            return ErrorKind.RATE_LIMITED
        if code in _WINDOW_CODES:
            return ErrorKind.WINDOW_CLOSED
        if code in _RETRYABLE_CODES:
            return ErrorKind.RETRYABLE
    if status == 429:
        return ErrorKind.RATE_LIMITED
    if status >= 500:
        return ErrorKind.RETRYABLE
    return ErrorKind.INVALID_REQUEST


_X_PERMISSION_PROBLEMS = ("/client-forbidden", "/unsupported-authentication", "/oauth1-permissions")


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
    if oauth_error in ("invalid_client", "unauthorized_client"):
        return ErrorKind.INVALID_REQUEST  # our client credentials are wrong: configuration
    if oauth_error == "invalid_grant":
        return ErrorKind.REAUTH_REQUIRED
    if code == 89:  # v1.1 "invalid or expired token"
        return ErrorKind.REAUTH_REQUIRED
    if code == 88:  # v1.1 "rate limit exceeded"
        return ErrorKind.RATE_LIMITED
    if status == 401:
        return ErrorKind.REAUTH_REQUIRED
    if status == 429 or (problem_type or "").endswith("/usage-capped"):
        return ErrorKind.RATE_LIMITED
    if status >= 500:
        return ErrorKind.RETRYABLE
    if status == 403 and (problem_type or "").endswith(_X_PERMISSION_PROBLEMS):
        return ErrorKind.PERMISSION_MISSING
    return ErrorKind.INVALID_REQUEST


class ProviderError(Exception):
    """A provider call that did not succeed. ``status`` is 0 when no HTTP answer arrived."""

    def __init__(
        self,
        provider: str,
        status: int,
        code: int | None,
        subcode: int | None,
        message: str,
        kind: ErrorKind | None = None,
        *,
        error_type: str | None = None,
        trace_id: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.provider = provider
        self.status = status
        self.code = code
        self.subcode = subcode
        self.message = message
        self.kind = kind if kind is not None else classify_graph_error(status, code, subcode)
        self.error_type = error_type
        self.trace_id = trace_id
        self.retry_after_s = retry_after_s
        super().__init__(self._describe())

    def _describe(self) -> str:
        numbers = f" code={self.code}" if self.code is not None else ""
        numbers += f" subcode={self.subcode}" if self.subcode is not None else ""
        return f"{self.provider} HTTP {self.status}{numbers} [{self.kind}]: {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_error,
            (
                self.provider,
                self.status,
                self.code,
                self.subcode,
                self.message,
                self.kind,
                self.error_type,
                self.trace_id,
                self.retry_after_s,
            ),
        )


def _rebuild_error(
    provider: str,
    status: int,
    code: int | None,
    subcode: int | None,
    message: str,
    kind: ErrorKind,
    error_type: str | None,
    trace_id: str | None,
    retry_after_s: float | None,
) -> ProviderError:
    return ProviderError(
        provider,
        status,
        code,
        subcode,
        message,
        kind,
        error_type=error_type,
        trace_id=trace_id,
        retry_after_s=retry_after_s,
    )


@dataclass(frozen=True)
class UserToken:
    access_token: str
    expires_at: datetime | None
    refresh_token: str | None = None
    scopes: tuple[str, ...] = ()

    def __repr__(self) -> str:  # keep tokens out of reprs, tracebacks and logs
        return f"UserToken(expires_at={self.expires_at!r}, scopes={self.scopes!r})"


@dataclass(frozen=True)
class PageInfo:
    id: str
    name: str
    access_token: str
    tasks: tuple[str, ...]
    instagram_business_account_id: str | None
    instagram_username: str | None

    def __repr__(self) -> str:
        return (
            f"PageInfo(id={self.id!r}, name={self.name!r}, tasks={self.tasks!r}, "
            f"instagram_business_account_id={self.instagram_business_account_id!r}, "
            f"instagram_username={self.instagram_username!r})"
        )


@dataclass(frozen=True)
class WhatsAppPhoneNumber:
    """One business phone number of a WhatsApp Business Account, as the Graph API lists it."""

    id: str
    display_phone_number: str
    verified_name: str


@dataclass(frozen=True)
class XUser:
    id: str
    username: str
    name: str


# --------------------------------------------------------------------------- helpers


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _segment(value: str) -> str:
    """One path segment, percent-encoded so an id can never reach another endpoint."""
    if not value or value in (".", ".."):
        raise ValueError("an id in a provider path must be a non-empty name")
    return quote(value, safe="")


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _snippet(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:200] if text else f"HTTP {response.status_code}"


def _expiry(expires_in: object) -> datetime | None:
    seconds = _int_or_none(expires_in)
    if seconds is None or seconds <= 0:
        return None
    return datetime.now(UTC) + timedelta(seconds=seconds)


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait, from Retry-After, X's x-rate-limit-reset or Meta's usage headers."""
    header = response.headers.get("retry-after")
    if header is not None:
        try:
            return max(0.0, float(header))
        except ValueError:
            pass
    reset = _int_or_none(response.headers.get("x-rate-limit-reset"))
    if reset is not None:
        return max(0.0, reset - time.time())
    waits: list[float] = []
    for name in ("x-business-use-case-usage", "x-page-usage", "x-app-usage"):
        raw = response.headers.get(name)
        if not raw:
            continue
        try:
            usage = json.loads(raw)
        except json.JSONDecodeError:
            continue
        entries: list[Any] = []
        if isinstance(usage, dict):
            for value in usage.values():
                entries.extend(value if isinstance(value, list) else [usage])
        for entry in entries:
            if isinstance(entry, dict):
                minutes = _int_or_none(entry.get("estimated_time_to_regain_access"))
                if minutes:
                    waits.append(minutes * 60.0)
    return max(waits) if waits else None


def _require_str(provider: str, status: int, data: Any, *keys: str) -> str:
    """A string at ``data[k1][k2]...``; an unexpected shape is a retryable provider fault."""
    current = data
    for key in keys:
        current = current.get(key) if isinstance(current, dict) else None
    if isinstance(current, int) and not isinstance(current, bool):
        current = str(current)
    if not isinstance(current, str) or not current:
        raise ProviderError(
            provider,
            status,
            None,
            None,
            f"unexpected response: no {'.'.join(keys)}",
            ErrorKind.RETRYABLE,
        )
    return current


async def _send(
    http: httpx.AsyncClient, provider: str, method: str, url: str, **kwargs: Any
) -> httpx.Response:
    try:
        return await http.request(method, url, **kwargs)
    except httpx.TransportError as exc:  # no answer: connection, TLS, timeout, protocol
        raise ProviderError(
            provider, 0, None, None, f"transport error: {type(exc).__name__}", ErrorKind.RETRYABLE
        ) from exc


def _json_object(provider: str, response: httpx.Response) -> dict[str, Any]:
    data = _body(response)
    if not isinstance(data, dict):
        raise ProviderError(
            provider,
            response.status_code,
            None,
            None,
            "unexpected response: not a JSON object",
            ErrorKind.RETRYABLE,
        )
    return data


# --------------------------------------------------------------------------- Graph API


def graph_error(provider: str, response: httpx.Response) -> ProviderError:
    """The :class:`ProviderError` for a non-2xx Graph answer."""
    data = _body(response)
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return ProviderError(
            provider,
            response.status_code,
            None,
            None,
            _snippet(response),
            retry_after_s=_retry_after(response),
        )
    code = _int_or_none(error.get("code"))
    subcode = _int_or_none(error.get("error_subcode"))
    message = error.get("error_user_msg") or error.get("message") or f"HTTP {response.status_code}"
    details = error.get("error_data")
    if isinstance(details, dict) and isinstance(details.get("details"), str):
        message = f"{message} ({details['details']})"
    return ProviderError(
        provider,
        response.status_code,
        code,
        subcode,
        str(message),
        error_type=str(error["type"]) if error.get("type") is not None else None,
        trace_id=str(error["fbtrace_id"]) if error.get("fbtrace_id") is not None else None,
        retry_after_s=_retry_after(response),
    )


class GraphClient:
    """Meta's Graph API: Facebook Login, Pages, Messenger, Instagram and the WhatsApp Cloud API."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        app_id: str,
        app_secret: str,
        api_version: str = "v21.0",
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._app_id = app_id
        self._app_secret = app_secret
        self._version = api_version.strip("/")

    def __repr__(self) -> str:
        return f"GraphClient(base_url={self._base!r}, app_id={self._app_id!r}, version={self._version!r})"

    async def _call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        params: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
        provider: str = "meta",
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        url = f"{self._base}/{self._version}/{path}"
        response = await _send(
            self._http, provider, method, url, params=params, json=json_body, headers=headers
        )
        if not response.is_success:
            raise graph_error(provider, response)
        return _json_object(provider, response)

    def _app_token(self) -> str:
        return f"{self._app_id}|{self._app_secret}"

    # ---- Facebook Login

    async def exchange_code(self, code: str, redirect_uri: str) -> UserToken:
        """Trade a Login dialog ``code`` for a short-lived user token."""
        data = await self._call(
            "GET",
            "oauth/access_token",
            params={
                "client_id": self._app_id,
                "client_secret": self._app_secret,
                "redirect_uri": redirect_uri,
                "code": code,
            },
        )
        token = _require_str("meta", 200, data, "access_token")
        return UserToken(access_token=token, expires_at=_expiry(data.get("expires_in")))

    async def long_lived_token(self, short_lived: str) -> UserToken:
        """Trade a short-lived user token for a long-lived one (about 60 days)."""
        data = await self._call(
            "GET",
            "oauth/access_token",
            params={
                "grant_type": "fb_exchange_token",
                "client_id": self._app_id,
                "client_secret": self._app_secret,
                "fb_exchange_token": short_lived,
            },
        )
        token = _require_str("meta", 200, data, "access_token")
        return UserToken(access_token=token, expires_at=_expiry(data.get("expires_in")))

    async def permissions(self, user_token: str) -> dict[str, str]:
        """Every permission the user was asked for: ``{"pages_messaging": "granted", ...}``."""
        data = await self._call("GET", "me/permissions", token=user_token)
        result: dict[str, str] = {}
        for item in data.get("data") or []:
            if isinstance(item, dict) and isinstance(item.get("permission"), str):
                result[item["permission"]] = str(item.get("status", ""))
        return result

    async def pages(self, user_token: str) -> list[PageInfo]:
        """The Pages the user granted, each with its Page token and linked Instagram account."""
        params = {
            "fields": "id,name,access_token,tasks,instagram_business_account{id,username}",
            "limit": "100",
        }
        pages: list[PageInfo] = []
        while True:
            data = await self._call("GET", "me/accounts", token=user_token, params=params)
            for item in data.get("data") or []:
                if not isinstance(item, dict):
                    continue
                ig = item.get("instagram_business_account")
                ig = ig if isinstance(ig, dict) else {}
                pages.append(
                    PageInfo(
                        id=_require_str("meta", 200, item, "id"),
                        name=str(item.get("name", "")),
                        access_token=_require_str("meta", 200, item, "access_token"),
                        tasks=tuple(str(t) for t in item.get("tasks") or ()),
                        instagram_business_account_id=str(ig["id"]) if ig.get("id") else None,
                        instagram_username=str(ig["username"]) if ig.get("username") else None,
                    )
                )
            paging = data.get("paging")
            after = None
            if isinstance(paging, dict) and paging.get("next"):
                cursors = paging.get("cursors")
                after = cursors.get("after") if isinstance(cursors, dict) else None
            if not isinstance(after, str) or not after or after == params.get("after"):
                return pages
            params = {**params, "after": after}

    async def subscribe_page(self, page_id: str, page_token: str, fields: list[str]) -> None:
        """Subscribe this app to the Page's webhooks for ``fields``."""
        data = await self._call(
            "POST",
            f"{_segment(page_id)}/subscribed_apps",
            token=page_token,
            params={"subscribed_fields": ",".join(fields)},
        )
        if data.get("success") is not True:
            raise ProviderError("meta", 200, None, None, "subscription was not confirmed")

    async def unsubscribe_page(self, page_id: str, page_token: str) -> None:
        """Remove this app's webhook subscription from the Page (``DELETE /{page-id}/subscribed_apps``).

        Graph API reference, Page Subscribed Apps: a Page access token of someone with the MODERATE
        task or above and ``pages_manage_metadata``; the answer is ``{"success": true}``.
        """
        data = await self._call("DELETE", f"{_segment(page_id)}/subscribed_apps", token=page_token)
        if data.get("success") is not True:
            raise ProviderError("meta", 200, None, None, "unsubscription was not confirmed")

    async def debug_token(self, token: str) -> tuple[bool, datetime | None, tuple[str, ...]]:
        """Whether ``token`` is valid, when it expires (None: never) and its scopes."""
        data = await self._call("GET", "debug_token", token=self._app_token(), params={"input_token": token})
        info = data.get("data")
        info = info if isinstance(info, dict) else {}
        expires = _int_or_none(info.get("expires_at"))
        expires_at = datetime.fromtimestamp(expires, UTC) if expires else None
        scopes = tuple(str(s) for s in info.get("scopes") or ())
        return info.get("is_valid") is True, expires_at, scopes

    # ---- Messenger, Instagram messaging and comments

    async def send_message(self, page_id: str, page_token: str, payload: dict[str, Any]) -> str:
        """Send through the Messenger Platform (Messenger and Instagram); the message id.

        Sender actions (``typing_on``, ``mark_seen``) have no message id: "" is returned.
        """
        data = await self._call("POST", f"{_segment(page_id)}/messages", token=page_token, json_body=payload)
        if "message_id" not in data and "sender_action" in payload:
            return ""
        return _require_str("meta", 200, data, "message_id")

    async def send_private_reply(self, page_id: str, page_token: str, comment_id: str, text: str) -> str:
        """Answer a public comment with a private message to its author; the message id."""
        payload = {"recipient": {"comment_id": comment_id}, "message": {"text": text}}
        return await self.send_message(page_id, page_token, payload)

    async def reply_to_comment(self, comment_id: str, page_token: str, text: str) -> str:
        """Reply publicly under a Facebook comment (or post); the new comment's id."""
        data = await self._call(
            "POST", f"{_segment(comment_id)}/comments", token=page_token, json_body={"message": text}
        )
        return _require_str("meta", 200, data, "id")

    async def reply_to_instagram_comment(self, comment_id: str, page_token: str, text: str) -> str:
        """Reply publicly under an Instagram comment (``/replies``); the new comment's id."""
        data = await self._call(
            "POST", f"{_segment(comment_id)}/replies", token=page_token, json_body={"message": text}
        )
        return _require_str("meta", 200, data, "id")

    # ---- WhatsApp Cloud API

    async def whatsapp_send(self, phone_number_id: str, token: str, payload: dict[str, Any]) -> str:
        """Send a WhatsApp message; the ``wamid``. ``messaging_product`` is added when absent."""
        body = {"messaging_product": "whatsapp", **payload}
        data = await self._call(
            "POST",
            f"{_segment(phone_number_id)}/messages",
            token=token,
            json_body=body,
            provider="whatsapp",
        )
        messages = data.get("messages")
        first = messages[0] if isinstance(messages, list) and messages else None
        return _require_str("whatsapp", 200, {"message": first}, "message", "id")

    async def _whatsapp_success(
        self, phone_number_id: str, action: str, token: str, body: dict[str, Any]
    ) -> None:
        data = await self._call(
            "POST",
            f"{_segment(phone_number_id)}/{action}",
            token=token,
            json_body=body,
            provider="whatsapp",
        )
        if data.get("success") is not True:
            raise ProviderError("whatsapp", 200, None, None, f"{action} was not confirmed")

    async def whatsapp_phone_numbers(self, waba_id: str, token: str) -> list[WhatsAppPhoneNumber]:
        """The business phone numbers of a WhatsApp Business Account, every page of them.

        ``GET /{whatsapp-business-account-id}/phone_numbers`` with a token that can manage the WABA
        (Graph API reference: WhatsApp Business Account > Phone Numbers; WhatsApp Business
        Management API, "Manage phone numbers"): ``{"data": [{"id", "display_phone_number",
        "verified_name", ...}], "paging": {"cursors": {"after"}, "next"}}``. A token without access
        to the WABA answers a permission error (code 200 or 10), an unknown WABA code 100.
        """
        params = {"fields": "id,display_phone_number,verified_name", "limit": "100"}
        numbers: list[WhatsAppPhoneNumber] = []
        while True:
            data = await self._call(
                "GET", f"{_segment(waba_id)}/phone_numbers", token=token, params=params, provider="whatsapp"
            )
            for item in data.get("data") or []:
                if isinstance(item, dict):
                    numbers.append(
                        WhatsAppPhoneNumber(
                            id=_require_str("whatsapp", 200, item, "id"),
                            display_phone_number=str(item.get("display_phone_number", "")),
                            verified_name=str(item.get("verified_name", "")),
                        )
                    )
            paging = data.get("paging")
            after = None
            if isinstance(paging, dict) and paging.get("next"):
                cursors = paging.get("cursors")
                after = cursors.get("after") if isinstance(cursors, dict) else None
            if not isinstance(after, str) or not after or after == params.get("after"):
                return numbers
            params = {**params, "after": after}

    async def whatsapp_request_code(
        self, phone_number_id: str, token: str, method: str, language: str = "en_US"
    ) -> None:
        """Have WhatsApp send a verification code by ``SMS`` or ``VOICE``."""
        await self._whatsapp_success(
            phone_number_id, "request_code", token, {"code_method": method.upper(), "language": language}
        )

    async def whatsapp_verify_code(self, phone_number_id: str, token: str, code: str) -> None:
        await self._whatsapp_success(phone_number_id, "verify_code", token, {"code": code})

    async def whatsapp_register(self, phone_number_id: str, token: str, pin: str) -> None:
        """Register the number for Cloud API messaging with its two-step verification PIN."""
        await self._whatsapp_success(
            phone_number_id, "register", token, {"messaging_product": "whatsapp", "pin": pin}
        )


# --------------------------------------------------------------------------- X API


def x_error(response: httpx.Response) -> ProviderError:
    """The :class:`ProviderError` for a non-2xx X answer (problem, ``errors`` or OAuth shape)."""
    data = _body(response)
    status = response.status_code
    code: int | None = None
    problem_type: str | None = None
    oauth_error: str | None = None
    message = _snippet(response)
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
            code = _int_or_none(first.get("code"))
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
        retry_after_s=_retry_after(response),
    )


class XClient:
    """The X API v2 with OAuth 2.0 user tokens (authorization code with PKCE)."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, client_id: str, client_secret: str) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret

    def __repr__(self) -> str:
        return f"XClient(base_url={self._base!r}, client_id={self._client_id!r})"

    async def _call(
        self, method: str, path: str, token: str, json_body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        response = await _send(
            self._http,
            "x",
            method,
            f"{self._base}/{path}",
            json=json_body,
            headers={"Authorization": f"Bearer {token}"} if token else {},
        )
        if not response.is_success:
            raise x_error(response)
        return _json_object("x", response)

    async def _token(self, form: dict[str, str]) -> UserToken:
        response = await _send(
            self._http,
            "x",
            "POST",
            f"{self._base}/2/oauth2/token",
            data={**form, "client_id": self._client_id},
            auth=(self._client_id, self._client_secret),
        )
        if not response.is_success:
            raise x_error(response)
        data = _json_object("x", response)
        refresh = data.get("refresh_token")
        return UserToken(
            access_token=_require_str("x", response.status_code, data, "access_token"),
            expires_at=_expiry(data.get("expires_in")),
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            scopes=tuple(str(data.get("scope") or "").split()),
        )

    async def exchange_code(self, code: str, redirect_uri: str, code_verifier: str) -> UserToken:
        return await self._token(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": code_verifier,
            }
        )

    async def refresh(self, refresh_token: str) -> UserToken:
        """A new access token (and the next refresh token: X rotates them on every use).

        A refused refresh token means the user must authorize again, so a 400 or 401 answer is
        REAUTH_REQUIRED here unless it says our client credentials are wrong.
        """
        try:
            return await self._token({"grant_type": "refresh_token", "refresh_token": refresh_token})
        except ProviderError as exc:
            if exc.status in (400, 401) and exc.error_type not in ("invalid_client", "unauthorized_client"):
                raise ProviderError(
                    exc.provider,
                    exc.status,
                    exc.code,
                    exc.subcode,
                    exc.message,
                    ErrorKind.REAUTH_REQUIRED,
                    error_type=exc.error_type,
                    retry_after_s=exc.retry_after_s,
                ) from exc
            raise

    async def me(self, token: str) -> XUser:
        data = await self._call("GET", "2/users/me", token)
        return XUser(
            id=_require_str("x", 200, data, "data", "id"),
            username=_require_str("x", 200, data, "data", "username"),
            name=str((data.get("data") or {}).get("name", "")),
        )

    async def subscribe_account_activity(self, token: str, webhook_id: str) -> None:
        """Subscribe the token's user to Account Activity events on ``webhook_id``."""
        await self._call(
            "POST", f"2/account_activity/webhooks/{_segment(webhook_id)}/subscriptions/all", token
        )

    async def send_dm(self, token: str, participant_id: str, text: str) -> str:
        """Send a direct message in the one-to-one conversation; the ``dm_event_id``."""
        data = await self._call(
            "POST", f"2/dm_conversations/with/{_segment(participant_id)}/messages", token, {"text": text}
        )
        return _require_str("x", 201, data, "data", "dm_event_id")

    async def post_reply(self, token: str, text: str, in_reply_to_tweet_id: str) -> str:
        """Post a public reply to a post; the new post's id."""
        data = await self._call(
            "POST",
            "2/tweets",
            token,
            {"text": text, "reply": {"in_reply_to_tweet_id": in_reply_to_tweet_id}},
        )
        return _require_str("x", 201, data, "data", "id")
