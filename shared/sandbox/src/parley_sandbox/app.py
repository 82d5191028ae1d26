"""The provider sandbox: a local HTTP server that plays Meta's Graph API and the X API.

It answers the calls Parley's clients (:mod:`parley_providers`) make, with the same
paths, success bodies and error shapes, and keeps enough state to behave like the real thing:
OAuth codes that work once, tokens that expire and can be revoked, Pages a user can lose
access to, WhatsApp numbers to verify and register, customer-service windows, and a record of
everything "sent". Fault switches make the next N matching calls fail in the provider's shape.

Test set-up and inspection go through ``/_sandbox/...`` (JSON), or directly through the
:class:`SandboxState` object when the test runs the app in-process.

Run it with ``parley-sandbox --host 127.0.0.1 --port 8090`` (or ``python -m
parley_sandbox``), then point the services' Graph and X base URLs at it. The default
credentials are the development ones of ``scripts/devenv.py`` (Meta app ``dev-meta-app`` /
``dev-meta-app-secret``, X client ``dev-x-client`` / ``dev-x-client-secret``, Account Activity
webhook ``dev-x-webhook``); see ``--help``. The clock is the wall clock plus ``clock_offset_s``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import math
import re
import secrets
import socket
import string
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Literal
from urllib.parse import parse_qsl

import uvicorn
from parley_providers.meta.rules import MESSENGER_TEXT_MAX, SEND_API_TAGS
from parley_providers.rules import DAYS_7, HOURS_24
from parley_providers.whatsapp.errors import WRONG_CODE
from parley_providers.whatsapp.rules import WHATSAPP_TEXT_MAX
from parley_providers.x.rules import X_DM_MAX, X_POST_MAX
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

__all__ = [
    "DEFAULT_META_PERMISSIONS",
    "DEFAULT_PAGE_TASKS",
    "DEFAULT_X_SCOPES",
    "Fault",
    "SandboxState",
    "SentRequest",
    "create_sandbox_app",
    "main",
    "serve_sandbox",
]

SHORT_LIVED_S = 5400  # Login tokens live one to two hours
LONG_LIVED_S = 60 * 86400
CODE_TTL_S = 600
X_ACCESS_S = 7200
# the providers' limits are Parley's provider packages' (one place for each fact)
WINDOW_S = HOURS_24.total_seconds()
HUMAN_AGENT_WINDOW_S = DAYS_7.total_seconds()

DEFAULT_META_PERMISSIONS = (
    "public_profile",
    "pages_show_list",
    "pages_messaging",
    "pages_manage_metadata",
    "pages_read_engagement",
    "pages_manage_engagement",
    "instagram_basic",
    "instagram_manage_messages",
    "instagram_manage_comments",
    "business_management",
)
DEFAULT_PAGE_TASKS = ("ADVERTISE", "ANALYZE", "CREATE_CONTENT", "MESSAGING", "MODERATE", "MANAGE")
DEFAULT_X_SCOPES = ("tweet.read", "tweet.write", "users.read", "dm.read", "dm.write", "offline.access")
PAGE_WEBHOOK_FIELDS = frozenset(
    {
        "messages",
        "messaging_postbacks",
        "messaging_optins",
        "messaging_referrals",
        "messaging_handovers",
        "messaging_policy_enforcement",
        "message_deliveries",
        "message_reads",
        "message_echoes",
        "message_reactions",
        "message_edits",
        "messaging_seen",
        "standby",
        "feed",
        "mention",
        "inbox_labels",
    }
)
MESSAGE_TAGS = SEND_API_TAGS
WHATSAPP_TYPES = frozenset(
    {
        "text",
        "template",
        "image",
        "audio",
        "video",
        "document",
        "sticker",
        "interactive",
        "reaction",
        "location",
        "contacts",
    }
)
WHATSAPP_MEDIA = frozenset({"image", "audio", "video", "document", "sticker"})
_GRAPH_VERSION = re.compile(r"^v\d+\.\d+$")
_ALNUM = string.ascii_letters + string.digits
_REVOKED_MESSAGES = {
    458: "Error validating access token: The user has not authorized application {app}.",
    460: (
        "Error validating access token: The session has been invalidated because the user changed "
        "their password or Facebook has changed the session for security reasons."
    ),
    463: "Error validating access token: Session has expired.",
    467: "Error validating access token: The access token is invalid.",
}
_UNKNOWN_OBJECT = (
    "Unsupported post request. Object with ID '{id}' does not exist, cannot be loaded due to missing "
    "permissions, or does not support this operation."
)
Provider = Literal["graph", "x"]


# --------------------------------------------------------------------------- state


@dataclass
class MetaPage:
    id: str
    name: str
    tasks: list[str]
    instagram_id: str | None = None
    instagram_username: str | None = None
    subscribed_fields: list[str] = field(default_factory=list)
    enforce_window: bool = False  # refuse sends outside the 24-hour window (code 10/2018278)


@dataclass
class MetaUser:
    id: str
    name: str
    granted: list[str]
    declined: list[str]
    page_ids: list[str]


@dataclass
class WhatsAppNumber:
    id: str
    display_phone_number: str
    waba_id: str
    token: str
    verified_name: str = "Parley sandbox business"
    verified: bool = False
    registered: bool = False
    pin: str | None = None
    last_code: str | None = None
    code_used: bool = False
    enforce_window: bool = False  # refuse non-template sends outside the window (131047)


@dataclass
class XAccount:
    id: str
    username: str
    name: str
    scopes: list[str]
    accepts_dms: bool = True


@dataclass
class AuthCode:
    code: str
    provider: Literal["meta", "x"]
    user_id: str
    expires_at: float
    redirect_uri: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str = "S256"
    used: bool = False


@dataclass
class Token:
    """A Meta user/page/system token or an X access token."""

    value: str
    provider: Literal["meta", "x"]
    kind: Literal["user", "page", "system", "x"]
    user_id: str | None
    issued_at: float
    expires_at: float | None
    scopes: list[str]
    long_lived: bool = False
    page_id: str | None = None
    waba_ids: list[str] = field(default_factory=list)
    parent: str | None = None  # a page token's user token: revoking that revokes this
    revoked_subcode: int | None = None  # Meta: the 190 subcode calls now fail with
    revoked: bool = False  # X


@dataclass
class XRefreshToken:
    value: str
    user_id: str
    scopes: list[str]
    used: bool = False


@dataclass
class Fault:
    """Answer the next ``times`` matching provider calls with this error."""

    id: str
    path_contains: str
    status: int
    code: int | None = None
    subcode: int | None = None
    message: str | None = None
    times: int = 1
    method: str | None = None
    retry_after_s: float | None = None
    plain: bool = False  # a bare text body (a proxy's error page) instead of the provider's JSON

    def matches(self, method: str, path: str) -> bool:
        return (
            self.times > 0
            and self.path_contains in path
            and (self.method is None or self.method.upper() == method.upper())
        )


@dataclass
class SentRequest:
    """One call to a send endpoint, accepted or not (``status``), without its credentials."""

    provider: Literal["meta", "whatsapp", "x"]
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]
    status: int
    result_id: str | None
    at: float


@dataclass
class Call:
    """Any provider call (sends included): what tests use to check what was asked."""

    method: str
    path: str
    status: int
    at: float


_CREDENTIAL_FIELDS = ("meta_app_id", "meta_app_secret", "x_client_id", "x_client_secret", "app_name")


@dataclass
class SandboxState:
    """Everything the sandbox knows; tests may read and change it directly."""

    # the development values of scripts/devenv.py, so a laptop stack works without flags
    meta_app_id: str = "dev-meta-app"
    meta_app_secret: str = "dev-meta-app-secret"  # noqa: S105 - a fake credential of the fake provider
    x_client_id: str = "dev-x-client"
    x_client_secret: str = "dev-x-client-secret"  # noqa: S105 - a fake credential of the fake provider
    app_name: str = "Parley sandbox"
    clock_offset_s: float = 0.0
    meta_users: dict[str, MetaUser] = field(default_factory=dict)
    pages: dict[str, MetaPage] = field(default_factory=dict)
    codes: dict[str, AuthCode] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    page_tokens: dict[tuple[str, str], str] = field(default_factory=dict)
    whatsapp_numbers: dict[str, WhatsAppNumber] = field(default_factory=dict)
    x_users: dict[str, XAccount] = field(default_factory=dict)
    x_refresh_tokens: dict[str, XRefreshToken] = field(default_factory=dict)
    x_webhooks: dict[str, list[str]] = field(default_factory=dict)  # webhook id -> subscribed users
    x_posts: list[dict[str, str]] = field(default_factory=list)
    private_replies: set[str] = field(default_factory=set)
    windows: dict[tuple[str, str], float] = field(default_factory=dict)  # (account, customer) -> last in
    sent: list[SentRequest] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    id_counter: int = 0

    def now(self) -> float:
        return time.time() + self.clock_offset_s

    def advance(self, seconds: float) -> None:
        self.clock_offset_s += seconds

    def next_id(self) -> str:
        """A unique, snowflake-sized numeric id."""
        self.id_counter += 1
        return str(1_850_000_000_000_000_000 + self.id_counter * 4096 + secrets.randbelow(4096))

    def reset(self) -> None:
        """Forget everything but the app's configuration: credentials and registered webhooks.

        The webhooks stay registered, without subscriptions.
        """
        fresh = SandboxState(**{name: getattr(self, name) for name in _CREDENTIAL_FIELDS})
        fresh.x_webhooks = {webhook_id: [] for webhook_id in self.x_webhooks}
        self.__dict__.update(fresh.__dict__)

    def take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, path):
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def open_window(self, account_id: str, customer_id: str, ago_s: float = 0.0) -> None:
        """Record an inbound message from ``customer_id`` (a PSID/IGSID or wa_id)."""
        self.windows[(account_id, customer_id)] = self.now() - ago_s


# --------------------------------------------------------------------------- failures


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
            "type": "https://api.twitter.com/2/problems/invalid-request",
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


# --------------------------------------------------------------------------- request plumbing


@dataclass
class Incoming:
    request: Request
    query: dict[str, str]
    body: dict[str, Any]

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


# --------------------------------------------------------------------------- the provider API


class _Providers:
    """The provider-facing handlers; each raises GraphFailure/XFailure or returns a Reply."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    # ---- Meta tokens

    def _new_meta_token(
        self,
        kind: Literal["user", "page"],
        user_id: str,
        scopes: list[str],
        lifetime_s: float | None,
        *,
        long_lived: bool = False,
        page_id: str | None = None,
        parent: str | None = None,
        expires_at: float | None = None,
    ) -> Token:
        now = self.state.now()
        token = Token(
            value=_random_token("EAA", 100 if long_lived or kind == "page" else 60),
            provider="meta",
            kind=kind,
            user_id=user_id,
            issued_at=now,
            expires_at=expires_at if lifetime_s is None else now + lifetime_s,
            scopes=list(scopes),
            long_lived=long_lived,
            page_id=page_id,
            parent=parent,
        )
        self.state.tokens[token.value] = token
        return token

    def validate_meta(self, token: Token) -> None:
        state = self.state
        current: Token | None = token
        while current is not None:
            if current.revoked_subcode is not None:
                template = _REVOKED_MESSAGES.get(current.revoked_subcode, _REVOKED_MESSAGES[467])
                raise GraphFailure(400, 190, current.revoked_subcode, template.format(app=state.meta_app_id))
            current = state.tokens.get(current.parent) if current.parent else None
        now = state.now()
        if token.expires_at is not None and now >= token.expires_at:
            raise GraphFailure(
                400,
                190,
                463,
                f"Error validating access token: Session has expired on {_utc(token.expires_at)}. "
                f"The current time is {_utc(now)}.",
            )
        if token.kind == "page":
            user = state.meta_users.get(token.user_id or "")
            if user is None or token.page_id not in user.page_ids:
                raise GraphFailure(
                    403,
                    10,
                    None,
                    "(#10) The user who issued this Page token no longer has access to the Page",
                )

    def meta_token(self, call: Incoming) -> Token:
        header = call.request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        value = value.strip() if scheme.lower() in ("bearer", "oauth") else ""
        value = value or str(call.params.get("access_token") or "")
        token = self.state.tokens.get(value) if value else None
        if token is None or token.provider != "meta":
            message = "Invalid OAuth access token - Cannot parse access token"
            if not value:
                message = "An active access token must be used to query information about the current user."
            raise GraphFailure(400, 190, None, message)
        self.validate_meta(token)
        return token

    def meta_user_token(self, call: Incoming) -> tuple[Token, MetaUser]:
        token = self.meta_token(call)
        user = self.state.meta_users.get(token.user_id or "")
        if token.kind != "user" or user is None:
            raise GraphFailure(400, 100, None, "(#100) This endpoint requires a user access token")
        return token, user

    def page_context(self, call: Incoming, page_id: str) -> tuple[Token, MetaPage, MetaUser]:
        token = self.meta_token(call)
        if token.kind != "page":
            raise GraphFailure(
                403, 210, None, "(#210) A page access token is required to request this resource."
            )
        if page_id != "me" and token.page_id != page_id:
            raise _unknown_object(page_id)
        page = self.state.pages[token.page_id or ""]
        user = self.state.meta_users[token.user_id or ""]
        return token, page, user

    @staticmethod
    def require_permission(user: MetaUser, permission: str, code: int = 200) -> None:
        if permission not in user.granted:
            raise GraphFailure(
                403, code, None, f"(#{code}) Requires {permission} permission to manage the object"
            )

    # ---- Facebook Login

    def oauth_access_token(self, call: Incoming) -> Reply:
        state, params = self.state, call.params
        if params.get("client_id") != state.meta_app_id:
            raise GraphFailure(400, 101, None, "Error validating application. Invalid application ID.")
        if params.get("client_secret") != state.meta_app_secret:
            raise GraphFailure(400, 101, None, "Error validating client secret.")
        if params.get("grant_type") == "fb_exchange_token":
            call_token = self.state.tokens.get(str(params.get("fb_exchange_token") or ""))
            if call_token is None or call_token.kind != "user" or call_token.provider != "meta":
                raise GraphFailure(400, 190, None, "Invalid OAuth access token - Cannot parse access token")
            self.validate_meta(call_token)
            token = self._new_meta_token(
                "user", call_token.user_id or "", call_token.scopes, LONG_LIVED_S, long_lived=True
            )
            return Reply({"access_token": token.value, "token_type": "bearer", "expires_in": LONG_LIVED_S})
        code_value = str(params.get("code") or "")
        if not code_value:
            raise GraphFailure(400, 100, None, "Missing code parameter.")
        redirect_uri = params.get("redirect_uri")
        if not redirect_uri:
            raise GraphFailure(400, 100, None, "Missing redirect_uri parameter.")
        code = state.codes.get(code_value)
        if code is None or code.provider != "meta":
            raise GraphFailure(400, 100, None, "Invalid verification code format.")
        if code.used:
            raise GraphFailure(400, 100, 36009, "This authorization code has been used.")
        if state.now() >= code.expires_at:
            raise GraphFailure(400, 100, 36007, "This authorization code has expired.")
        if code.redirect_uri is not None and code.redirect_uri != redirect_uri:
            raise GraphFailure(
                400,
                100,
                36008,
                "Error validating verification code. Please make sure your redirect_uri is identical "
                "to the one you used in the OAuth dialog request",
            )
        code.used = True
        user = state.meta_users[code.user_id]
        token = self._new_meta_token("user", user.id, user.granted, SHORT_LIVED_S)
        return Reply({"access_token": token.value, "token_type": "bearer", "expires_in": SHORT_LIVED_S})

    def debug_token(self, call: Incoming) -> Reply:
        state = self.state
        header = call.request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        app_token = value.strip() if scheme.lower() in ("bearer", "oauth") else ""
        app_token = app_token or str(call.params.get("access_token") or "")
        if app_token != f"{state.meta_app_id}|{state.meta_app_secret}":
            raise GraphFailure(400, 190, None, "Invalid OAuth access token signature.")
        input_token = str(call.params.get("input_token") or "")
        if not input_token:
            raise _param_required("input_token")
        token = state.tokens.get(input_token)
        if token is None or token.provider != "meta":
            return Reply(
                {
                    "data": {
                        "is_valid": False,
                        "error": {
                            "code": 190,
                            "message": "Invalid OAuth access token - Cannot parse access token",
                        },
                        "scopes": [],
                    }
                }
            )
        data: dict[str, Any] = {
            "app_id": state.meta_app_id,
            "type": {"user": "USER", "page": "PAGE"}.get(token.kind, "SYSTEM_USER"),
            "application": state.app_name,
            "expires_at": int(token.expires_at) if token.expires_at is not None else 0,
            "issued_at": int(token.issued_at),
            "is_valid": True,
            "scopes": list(token.scopes),
        }
        if token.user_id:
            data["user_id"] = token.user_id
            data["data_access_expires_at"] = int(token.issued_at + 90 * 86400)
        if token.page_id:
            data["profile_id"] = token.page_id
        try:
            self.validate_meta(token)
        except GraphFailure as failure:
            data["is_valid"] = False
            data["error"] = {"code": failure.code, "message": failure.message}
            if failure.subcode is not None:
                data["error"]["subcode"] = failure.subcode
        return Reply({"data": data})

    def me_permissions(self, call: Incoming) -> Reply:
        _, user = self.meta_user_token(call)
        rows = [{"permission": p, "status": "granted"} for p in user.granted]
        rows += [{"permission": p, "status": "declined"} for p in user.declined if p not in user.granted]
        return Reply({"data": rows})

    def me_accounts(self, call: Incoming) -> Reply:
        token, user = self.meta_user_token(call)
        self.require_permission(user, "pages_show_list")
        fields = _split_fields(str(call.params.get("fields") or "access_token,category,name,id,tasks"))
        try:
            limit = max(1, min(100, int(call.params.get("limit") or 25)))
        except ValueError:
            raise GraphFailure(400, 100, None, "(#100) Param limit must be a number") from None
        start = _uncursor(str(call.params["after"])) + 1 if call.params.get("after") else 0
        page_ids = user.page_ids[start : start + limit]
        rows = []
        for page_id in page_ids:
            page = self.state.pages[page_id]
            full: dict[str, Any] = {
                "id": page.id,
                "name": page.name,
                "category": "Product/service",
                "tasks": list(page.tasks),
                "access_token": self._page_token(token, page.id).value,
            }
            if page.instagram_id:
                full["instagram_business_account"] = {
                    "id": page.instagram_id,
                    "username": page.instagram_username,
                }
            row: dict[str, Any] = {}
            for name, sub in fields.items():
                if name not in full:
                    continue
                value = full[name]
                row[name] = (
                    {k: v for k, v in value.items() if k in sub or k == "id"}
                    if sub and isinstance(value, dict)
                    else value
                )
            row.setdefault("id", page.id)
            rows.append(row)
        body: dict[str, Any] = {"data": rows}
        if rows:
            last = start + len(rows) - 1
            paging: dict[str, Any] = {"cursors": {"before": _cursor(start), "after": _cursor(last)}}
            if last + 1 < len(user.page_ids):
                paging["next"] = str(call.request.url.include_query_params(after=_cursor(last), limit=limit))
            body["paging"] = paging
        return Reply(body)

    def _page_token(self, user_token: Token, page_id: str) -> Token:
        key = (user_token.value, page_id)
        existing = self.state.tokens.get(self.state.page_tokens.get(key, ""))
        if existing is not None:
            return existing
        token = self._new_meta_token(
            "page",
            user_token.user_id or "",
            user_token.scopes,
            None,
            page_id=page_id,
            parent=user_token.value,
            # a Page token from a long-lived user token never expires; else it dies with its parent
            expires_at=None if user_token.long_lived else user_token.expires_at,
        )
        self.state.page_tokens[key] = token.value
        return token

    # ---- Pages

    def subscribed_apps(self, call: Incoming) -> Reply:
        _, page, user = self.page_context(call, call.path("node"))
        if call.request.method == "GET":
            apps = []
            if page.subscribed_fields:
                apps.append(
                    {
                        "name": self.state.app_name,
                        "id": self.state.meta_app_id,
                        "subscribed_fields": list(page.subscribed_fields),
                    }
                )
            return Reply({"data": apps})
        self.require_permission(user, "pages_manage_metadata")
        if call.request.method == "DELETE":
            # removes this app's subscription (Graph API: Page Subscribed Apps, Deleting)
            if not {"MANAGE", "MODERATE"} & set(page.tasks):
                raise GraphFailure(403, 10, None, "(#10) The user needs the MODERATE task on this Page")
            page.subscribed_fields = []
            return Reply({"success": True})
        raw = _json_param(call.params.get("subscribed_fields"))
        fields = raw if isinstance(raw, list) else [f.strip() for f in str(raw or "").split(",") if f.strip()]
        if not fields:
            raise _param_required("subscribed_fields")
        for index, name in enumerate(fields):
            if name not in PAGE_WEBHOOK_FIELDS:
                raise GraphFailure(
                    400,
                    100,
                    None,
                    f"(#100) Param subscribed_fields[{index}] must be one of "
                    f'{{{", ".join(sorted(PAGE_WEBHOOK_FIELDS))}}} - got "{name}".',
                )
        page.subscribed_fields = [str(f) for f in dict.fromkeys(fields)]
        return Reply({"success": True})

    def messages(self, call: Incoming) -> Reply:
        node = call.path("node")
        if node in self.state.whatsapp_numbers:
            return self.whatsapp_send(call)
        return self.messenger_send(call, node)

    def messenger_send(self, call: Incoming, page_id: str) -> Reply:
        state = self.state
        _, page, user = self.page_context(call, page_id)
        self.require_permission(user, "pages_messaging", code=230)
        if not {"MESSAGING", "MANAGE"} & set(page.tasks):
            raise GraphFailure(403, 10, None, "(#10) The user needs the MESSAGING task on this Page")
        params = call.params
        recipient = _json_param(params.get("recipient"))
        if not isinstance(recipient, dict) or not any(
            recipient.get(k) for k in ("id", "comment_id", "post_id", "user_ref")
        ):
            raise _param_required("recipient")
        recipient_id = str(recipient.get("id") or "")
        action = params.get("sender_action")
        message = _json_param(params.get("message"))
        if action is not None and message is None:
            if action not in ("typing_on", "typing_off", "mark_seen"):
                raise GraphFailure(
                    400,
                    100,
                    None,
                    "(#100) Param sender_action must be one of {typing_on, typing_off, mark_seen}",
                )
            return Reply({"recipient_id": recipient_id})
        if not isinstance(message, dict):
            raise _param_required("message")
        text, attachment = message.get("text"), message.get("attachment")
        if text is None and attachment is None:
            raise GraphFailure(400, 100, None, "(#100) Must send either message text or attachment")
        if text is not None and attachment is not None:
            raise GraphFailure(
                400, 100, None, "(#100) Only one of message text or attachment can be specified"
            )
        if text is not None and (not isinstance(text, str) or not text):
            raise GraphFailure(
                400, 100, None, "(#100) Param message[text] must be a non-empty UTF-8 encoded string"
            )
        if isinstance(text, str) and len(text) > MESSENGER_TEXT_MAX:
            raise GraphFailure(
                400,
                100,
                None,
                f"(#100) Length of param message[text] must be less than or equal to {MESSENGER_TEXT_MAX}",
            )
        messaging_type = params.get("messaging_type", "RESPONSE")
        if messaging_type not in ("RESPONSE", "UPDATE", "MESSAGE_TAG"):
            raise GraphFailure(
                400, 100, None, "(#100) Param messaging_type must be one of {RESPONSE, UPDATE, MESSAGE_TAG}"
            )
        tag = params.get("tag")
        if messaging_type == "MESSAGE_TAG" and tag not in MESSAGE_TAGS:
            raise GraphFailure(
                400, 100, None, f"(#100) Param tag must be one of {{{', '.join(sorted(MESSAGE_TAGS))}}}"
            )
        comment_id = recipient.get("comment_id")
        if comment_id:
            comment_id = str(comment_id)
            if comment_id in state.private_replies:
                raise GraphFailure(400, 10900, None, "Activity already replied to")
            recipient_id = str(int(hashlib.sha256(comment_id.encode()).hexdigest()[:13], 16))
        elif (
            page.enforce_window and recipient_id and (messaging_type != "MESSAGE_TAG" or tag == "HUMAN_AGENT")
        ):
            window = HUMAN_AGENT_WINDOW_S if tag == "HUMAN_AGENT" else WINDOW_S
            last = state.windows.get((page.id, recipient_id))
            if last is None or state.now() - last > window:
                raise GraphFailure(400, 10, 2018278, "(#10) This message is sent outside of allowed window.")
        if comment_id:
            state.private_replies.add(comment_id)
        message_id = "m_" + secrets.token_urlsafe(48)
        return Reply({"recipient_id": recipient_id, "message_id": message_id}, result_id=message_id)

    def comments(self, call: Incoming) -> Reply:
        comment_id = call.path("node")
        _, _, user = self.page_context(call, "me")
        self.require_permission(user, "pages_manage_engagement")
        message = call.params.get("message")
        if not isinstance(message, str) or not message.strip():
            raise _param_required("message")
        new_id = f"{comment_id.split('_')[0]}_{self.state.next_id()}"
        return Reply({"id": new_id}, result_id=new_id)

    def replies(self, call: Incoming) -> Reply:
        comment_id = call.path("node")
        _, page, user = self.page_context(call, "me")
        self.require_permission(user, "instagram_manage_comments")
        if not page.instagram_id:
            raise _unknown_object(comment_id)
        message = call.params.get("message")
        if not isinstance(message, str) or not message.strip():
            raise _param_required("message")
        new_id = self.state.next_id()[:17]
        return Reply({"id": new_id}, result_id=new_id)

    # ---- WhatsApp Cloud API

    def whatsapp_context(self, call: Incoming) -> WhatsAppNumber:
        token = self.meta_token(call)
        node = call.path("node")
        number = self.state.whatsapp_numbers.get(node)
        if number is None:
            raise _unknown_object(node)
        if token.kind != "system" or number.waba_id not in token.waba_ids:
            raise GraphFailure(
                403, 200, None, "(#200) You do not have permission to access this phone number"
            )
        return number

    def waba_phone_numbers(self, call: Incoming) -> Reply:
        """``GET /{waba-id}/phone_numbers``: the WABA's numbers, for a token that can manage it."""
        token = self.meta_token(call)
        waba_id = call.path("node")
        numbers = [n for n in self.state.whatsapp_numbers.values() if n.waba_id == waba_id]
        if not numbers:
            raise _unknown_object(waba_id)
        if token.kind != "system" or waba_id not in token.waba_ids:
            raise GraphFailure(
                403, 200, None, "(#200) You do not have permission to access this WhatsApp Business Account"
            )
        fields = _split_fields(str(call.params.get("fields") or "verified_name,display_phone_number,id"))
        try:
            limit = max(1, min(100, int(call.params.get("limit") or 25)))
        except ValueError:
            raise GraphFailure(400, 100, None, "(#100) Param limit must be a number") from None
        start = _uncursor(str(call.params["after"])) + 1 if call.params.get("after") else 0
        rows = []
        for number in numbers[start : start + limit]:
            full = {
                "id": number.id,
                "display_phone_number": number.display_phone_number,
                "verified_name": number.verified_name,
                "code_verification_status": "VERIFIED" if number.verified else "NOT_VERIFIED",
                "quality_rating": "GREEN",
                "platform_type": "CLOUD_API" if number.registered else "NOT_APPLICABLE",
            }
            row = {name: full[name] for name in fields if name in full}
            row.setdefault("id", number.id)
            rows.append(row)
        body: dict[str, Any] = {"data": rows}
        if rows:
            last = start + len(rows) - 1
            paging: dict[str, Any] = {"cursors": {"before": _cursor(start), "after": _cursor(last)}}
            if last + 1 < len(numbers):
                paging["next"] = str(call.request.url.include_query_params(after=_cursor(last), limit=limit))
            body["paging"] = paging
        return Reply(body)

    def whatsapp_send(self, call: Incoming) -> Reply:
        number = self.whatsapp_context(call)
        params = call.params
        if params.get("messaging_product") != "whatsapp":
            raise _param_required("messaging_product")
        to = params.get("to")
        if not isinstance(to, str) or not _digits(to):
            raise _param_required("to")
        if not number.registered:
            raise GraphFailure(
                400, 133010, None, "Account not registered", details="The phone number is not registered"
            )
        kind = params.get("type", "text")
        if kind not in WHATSAPP_TYPES:
            raise GraphFailure(
                400, 100, None, f"(#100) Param type must be one of {{{', '.join(sorted(WHATSAPP_TYPES))}}}"
            )
        content = _json_param(params.get(kind))
        if not isinstance(content, dict):
            raise GraphFailure(
                400,
                131008,
                None,
                "Required parameter is missing",
                details=f"The parameter {kind} is required.",
            )
        if kind == "text":
            body = content.get("body")
            if not isinstance(body, str) or not body:
                raise GraphFailure(
                    400, 131008, None, "Required parameter is missing", details="text['body'] is required."
                )
            if len(body) > WHATSAPP_TEXT_MAX:
                raise GraphFailure(
                    400,
                    131009,
                    None,
                    "(#131009) Parameter value is not valid",
                    details=f"text['body'] must be at most {WHATSAPP_TEXT_MAX} characters.",
                )
        elif kind == "template":
            language = content.get("language")
            if not content.get("name") or not isinstance(language, dict) or not language.get("code"):
                raise GraphFailure(
                    400,
                    131008,
                    None,
                    "Required parameter is missing",
                    details="template name and language.code are required.",
                )
        elif kind in WHATSAPP_MEDIA and not (content.get("id") or content.get("link")):
            raise GraphFailure(
                400, 131008, None, "Required parameter is missing", details=f"{kind} needs an id or a link."
            )
        wa_id = _digits(to)
        if number.enforce_window and kind != "template":
            last = self.state.windows.get((number.id, wa_id))
            if last is None or self.state.now() - last > WINDOW_S:
                raise GraphFailure(
                    400,
                    131047,
                    None,
                    "Re-engagement message",
                    details=(
                        "Message failed to send because more than 24 hours have passed since the "
                        "customer last replied to this number."
                    ),
                )
        wamid = "wamid." + base64.b64encode(secrets.token_bytes(30)).decode()
        message: dict[str, Any] = {"id": wamid}
        if kind == "template":
            message["message_status"] = "accepted"
        return Reply(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": wa_id}],
                "messages": [message],
            },
            result_id=wamid,
        )

    def request_code(self, call: Incoming) -> Reply:
        number = self.whatsapp_context(call)
        if call.params.get("code_method") not in ("SMS", "VOICE"):
            raise GraphFailure(400, 100, None, "(#100) Param code_method must be one of {SMS, VOICE}")
        if not call.params.get("language"):
            raise _param_required("language")
        number.last_code = f"{secrets.randbelow(10**6):06d}"
        number.code_used = False
        return Reply({"success": True})

    def verify_code(self, call: Incoming) -> Reply:
        number = self.whatsapp_context(call)
        code = str(call.params.get("code") or "")
        if not code:
            raise _param_required("code")
        if number.last_code is None or number.code_used or not secrets.compare_digest(code, number.last_code):
            raise GraphFailure(
                400,
                WRONG_CODE,
                None,
                "Verify code error",
                details="Code couldn't be verified, You have entered the wrong code or it has expired.",
            )
        number.code_used = True
        number.verified = True
        return Reply({"success": True})

    def register(self, call: Incoming) -> Reply:
        number = self.whatsapp_context(call)
        if call.params.get("messaging_product") != "whatsapp":
            raise _param_required("messaging_product")
        pin = str(call.params.get("pin") or "")
        if len(pin) != 6 or not pin.isdigit():
            raise GraphFailure(400, 100, None, "(#100) Param pin must be a 6-digit number")
        if not number.verified:
            raise GraphFailure(
                400,
                133006,
                None,
                "Phone number re-verification needed",
                details="Verify the number before registering it.",
            )
        if number.pin is not None and number.pin != pin:
            raise GraphFailure(400, 133005, None, "Two step verification PIN Mismatch")
        number.pin = pin
        number.registered = True
        return Reply({"success": True})

    # ---- X

    def x_token_endpoint(self, call: Incoming) -> Reply:
        state = self.state
        scheme, _, encoded = call.request.headers.get("authorization", "").partition(" ")
        try:
            client_id, _, client_secret = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, binascii.Error):
            client_id = client_secret = ""
        if scheme.lower() != "basic" or (client_id, client_secret) != (
            state.x_client_id,
            state.x_client_secret,
        ):
            raise _x_oauth(401, "unauthorized_client", "Missing valid authorization header")
        form = call.body
        grant = form.get("grant_type")
        if grant == "authorization_code":
            code = state.codes.get(str(form.get("code") or ""))
            verifier = str(form.get("code_verifier") or "")
            invalid = _x_oauth(400, "invalid_request", "Value passed for the authorization code was invalid.")
            if code is None or code.provider != "x" or code.used or state.now() >= code.expires_at:
                raise invalid
            if code.redirect_uri is not None and form.get("redirect_uri") != code.redirect_uri:
                raise invalid
            if not verifier:
                raise _x_oauth(400, "invalid_request", "Missing required parameter [code_verifier].")
            if code.code_challenge is not None:
                expected = verifier
                if code.code_challenge_method.upper() == "S256":
                    digest = hashlib.sha256(verifier.encode()).digest()
                    expected = base64.urlsafe_b64encode(digest).decode().rstrip("=")
                if not secrets.compare_digest(expected, code.code_challenge):
                    raise invalid
            code.used = True
            account = state.x_users[code.user_id]
            return Reply(self._x_tokens(account.id, account.scopes))
        if grant == "refresh_token":
            refresh = state.x_refresh_tokens.get(str(form.get("refresh_token") or ""))
            if refresh is None or refresh.used:
                raise _x_oauth(400, "invalid_request", "Value passed for the token was invalid.")
            refresh.used = True  # X rotates refresh tokens: each works once
            return Reply(self._x_tokens(refresh.user_id, refresh.scopes))
        raise _x_oauth(400, "unsupported_grant_type", "The grant type is not supported.")

    def _x_tokens(self, user_id: str, scopes: list[str]) -> dict[str, Any]:
        now = self.state.now()
        access = Token(
            value=secrets.token_urlsafe(60),
            provider="x",
            kind="x",
            user_id=user_id,
            issued_at=now,
            expires_at=now + X_ACCESS_S,
            scopes=list(scopes),
        )
        self.state.tokens[access.value] = access
        body: dict[str, Any] = {
            "token_type": "bearer",
            "expires_in": X_ACCESS_S,
            "access_token": access.value,
            "scope": " ".join(scopes),
        }
        if "offline.access" in scopes:
            refresh = XRefreshToken(secrets.token_urlsafe(60), user_id, list(scopes))
            self.state.x_refresh_tokens[refresh.value] = refresh
            body["refresh_token"] = refresh.value
        return body

    def x_account(self, call: Incoming, *scopes: str) -> XAccount:
        scheme, _, value = call.request.headers.get("authorization", "").partition(" ")
        token = self.state.tokens.get(value.strip()) if scheme.lower() == "bearer" else None
        if token is None or token.provider != "x" or token.revoked:
            raise _x_unauthorized()
        if token.expires_at is not None and self.state.now() >= token.expires_at:
            raise _x_unauthorized()
        account = self.state.x_users.get(token.user_id or "")
        if account is None:
            raise _x_unauthorized()
        for scope in scopes:
            if scope not in token.scopes:
                raise _x_problem(
                    403,
                    f"Missing required OAuth 2.0 scope: {scope}",
                    "https://api.twitter.com/2/problems/client-forbidden",
                    reason="missing-scope",
                )
        return account

    def x_me(self, call: Incoming) -> Reply:
        account = self.x_account(call, "users.read")
        return Reply({"data": {"id": account.id, "name": account.name, "username": account.username}})

    def x_subscribe(self, call: Incoming) -> Reply:
        account = self.x_account(call, "dm.read")
        webhook_id = call.path("webhook_id")
        subscribers = self.state.x_webhooks.get(webhook_id)
        if subscribers is None:
            raise _x_problem(
                404,
                f"Could not find webhook with id: [{webhook_id}]",
                "https://api.twitter.com/2/problems/resource-not-found",
            )
        if account.id not in subscribers:
            subscribers.append(account.id)
        return Reply({"data": {"subscribed": True}})

    def x_send_dm(self, call: Incoming) -> Reply:
        account = self.x_account(call, "dm.write")
        participant = call.path("participant_id")
        text = call.body.get("text")
        if not participant.isdigit() and participant not in self.state.x_users:
            raise _x_invalid("The `participant_id` query parameter value is not valid", "participant_id")
        if participant == account.id:
            raise _x_invalid("You cannot send a Direct Message to yourself", "participant_id")
        if not isinstance(text, str) or not text.strip():
            if not call.body.get("attachments"):
                raise _x_invalid("The `text` field is required when no attachments are present", "text")
        elif len(text) > X_DM_MAX:
            raise _x_invalid(f"The `text` field must be at most {X_DM_MAX} characters", "text")
        other = self.state.x_users.get(participant)
        if other is not None and not other.accepts_dms:
            raise _x_problem(403, "You are not permitted to send Direct Messages to this user.")
        event_id = self.state.next_id()
        first, second = sorted((account.id, participant))
        return Reply(
            {"data": {"dm_conversation_id": f"{first}-{second}", "dm_event_id": event_id}},
            status=201,
            result_id=event_id,
        )

    def x_post(self, call: Incoming) -> Reply:
        account = self.x_account(call, "tweet.write")
        text = call.body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _x_invalid("The `text` field is required", "text")
        if len(text) > X_POST_MAX:
            raise _x_invalid(f"The `text` field must be at most {X_POST_MAX} characters", "text")
        reply = call.body.get("reply")
        if reply is not None:
            target = reply.get("in_reply_to_tweet_id") if isinstance(reply, dict) else None
            if not isinstance(target, str) or not target.isdigit():
                raise _x_invalid(
                    "The `in_reply_to_tweet_id` field must be a post id", "reply.in_reply_to_tweet_id"
                )
        if any(p["user_id"] == account.id and p["text"] == text for p in self.state.x_posts):
            raise _x_problem(403, "You are not allowed to create a Tweet with duplicate content.")
        post_id = self.state.next_id()
        self.state.x_posts.append({"id": post_id, "user_id": account.id, "text": text})
        return Reply(
            {"data": {"id": post_id, "text": text, "edit_history_tweet_ids": [post_id]}},
            status=201,
            result_id=post_id,
        )


# --------------------------------------------------------------------------- responses


def _fault_response(fault: Fault, provider: Provider) -> Response:
    message = fault.message or f"Sandbox fault: HTTP {fault.status}"
    if fault.plain:
        return PlainTextResponse(HTTPStatus(fault.status).phrase, status_code=fault.status)
    if provider == "x":
        headers: dict[str, str] = {}
        if fault.status == 429:
            wait = fault.retry_after_s if fault.retry_after_s is not None else 900
            headers = {
                "x-rate-limit-limit": "100",
                "x-rate-limit-remaining": "0",
                "x-rate-limit-reset": str(math.ceil(time.time() + wait)),
            }
        failure = _x_problem(fault.status, message)
        if fault.code is not None:
            failure.body["errors"] = [{"code": fault.code, "message": message}]
        failure.headers = headers
        return failure.response()
    code = fault.code
    if code is None:
        code = 4 if fault.status == 429 else 2 if fault.status >= 500 else 100
    headers = {}
    if fault.retry_after_s is not None:
        usage = {
            "sandbox": [
                {
                    "type": "pages",
                    "call_count": 100,
                    "total_cputime": 100,
                    "total_time": 100,
                    "estimated_time_to_regain_access": math.ceil(fault.retry_after_s / 60),
                }
            ]
        }
        headers["x-business-use-case-usage"] = json.dumps(usage)
    return GraphFailure(fault.status, code, fault.subcode, message, headers=headers).response()


_HIDDEN_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


def _provider_route(
    state: SandboxState,
    path: str,
    handler: Handler,
    methods: list[str],
    provider: Provider,
    send: Literal["meta", "whatsapp", "x"] | None = None,
) -> Route:
    async def endpoint(request: Request) -> Response:
        query = dict(request.query_params)
        raw = await request.body()
        body = _parse_body(raw, request.headers.get("content-type", ""))
        result_id: str | None = None
        fault = state.take_fault(request.method, request.url.path)
        if fault is not None:
            response = _fault_response(fault, provider)
        else:
            try:
                if provider == "graph" and not _GRAPH_VERSION.match(str(request.path_params.get("version"))):
                    raise GraphFailure(400, 2500, None, f"Unknown path components: {request.url.path}")
                if body is None:
                    if provider == "graph":
                        raise GraphFailure(400, 100, None, "(#100) The request body could not be parsed")
                    raise _x_problem(
                        400,
                        "The request body is not valid JSON.",
                        "https://api.twitter.com/2/problems/invalid-request",
                    )
                reply = handler(Incoming(request, query, body))
                response = JSONResponse(reply.payload, status_code=reply.status)
                result_id = reply.result_id
            except (GraphFailure, XFailure) as failure:
                response = failure.response()
        now = state.now()
        state.calls.append(Call(request.method, request.url.path, response.status_code, now))
        if send is not None:
            kind: Literal["meta", "whatsapp", "x"] = send
            if send == "meta" and request.path_params.get("node") in state.whatsapp_numbers:
                kind = "whatsapp"
            state.sent.append(
                SentRequest(
                    provider=kind,
                    method=request.method,
                    path=request.url.path,
                    query={k: v for k, v in query.items() if k != "access_token"},
                    headers={k: v for k, v in request.headers.items() if k.lower() not in _HIDDEN_HEADERS},
                    body={k: v for k, v in (body or {}).items() if k != "access_token"},
                    status=response.status_code,
                    result_id=result_id,
                    at=now,
                )
            )
        return response

    return Route(path, endpoint, methods=methods)


# --------------------------------------------------------------------------- admin


async def _admin_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    body = _parse_body(raw, "application/json")
    if body is None:
        raise AdminError(400, "the body must be a JSON object")
    return body


def _opt_str(data: dict[str, Any], key: str, default: str | None = None) -> str | None:
    value = data.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise AdminError(400, f"{key} must be a string")
    return str(value)


def _req_str(data: dict[str, Any], key: str) -> str:
    value = _opt_str(data, key)
    if not value:
        raise AdminError(400, f"{key} is required")
    return value


def _str_list(data: dict[str, Any], key: str, default: Sequence[str]) -> list[str]:
    value = data.get(key)
    if value is None:
        return list(default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AdminError(400, f"{key} must be a list of strings")
    return list(value)


def _opt_int(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise AdminError(400, f"{key} must be an integer")
    return value


def _number(data: dict[str, Any], key: str, default: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AdminError(400, f"{key} must be a number")
    return float(value)


def _flag(data: dict[str, Any], key: str, default: bool = False) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise AdminError(400, f"{key} must be true or false")
    return value


class _Admin:
    """``/_sandbox/...``: set up accounts, read what was sent, flip fault switches."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def _code(self, provider: Literal["meta", "x"], user_id: str, data: dict[str, Any]) -> dict[str, Any]:
        code = AuthCode(
            code=("AQ" if provider == "meta" else "") + secrets.token_urlsafe(48),
            provider=provider,
            user_id=user_id,
            expires_at=self.state.now() + CODE_TTL_S,
            redirect_uri=_opt_str(data, "redirect_uri"),
            code_challenge=_opt_str(data, "code_challenge"),
            code_challenge_method=_opt_str(data, "code_challenge_method") or "S256",
        )
        self.state.codes[code.code] = code
        return {"user_id": user_id, "code": code.code, "expires_in": CODE_TTL_S}

    async def meta_users(self, request: Request) -> dict[str, Any]:
        data = await _admin_body(request)
        user_id = _opt_str(data, "user_id") or self.state.next_id()[:16]
        page_specs = data.get("pages") or []
        if not isinstance(page_specs, list) or not all(isinstance(p, dict) for p in page_specs):
            raise AdminError(400, "pages must be a list of objects")
        page_ids: list[str] = []
        for spec in page_specs:
            instagram = spec.get("instagram")
            if instagram is not None and not isinstance(instagram, dict):
                raise AdminError(400, "instagram must be an object or null")
            page = MetaPage(
                id=_req_str(spec, "id"),
                name=_opt_str(spec, "name") or "Sandbox Page",
                tasks=_str_list(spec, "tasks", DEFAULT_PAGE_TASKS),
                instagram_id=_opt_str(instagram, "id") if instagram else None,
                instagram_username=_opt_str(instagram, "username") if instagram else None,
                enforce_window=_flag(spec, "enforce_window"),
            )
            old = self.state.pages.get(page.id)
            if old is not None:
                page.subscribed_fields = old.subscribed_fields
            self.state.pages[page.id] = page
            page_ids.append(page.id)
        self.state.meta_users[user_id] = MetaUser(
            id=user_id,
            name=_opt_str(data, "name") or "Sandbox User",
            granted=_str_list(data, "granted", DEFAULT_META_PERMISSIONS),
            declined=_str_list(data, "declined", ()),
            page_ids=page_ids,
        )
        return self._code("meta", user_id, data)

    def _meta_user(self, user_id: str) -> MetaUser:
        user = self.state.meta_users.get(user_id)
        if user is None:
            raise AdminError(404, f"no Meta user {user_id}")
        return user

    async def meta_codes(self, request: Request) -> dict[str, Any]:
        data = await _admin_body(request)
        user = self._meta_user(_req_str(data, "user_id"))
        return self._code("meta", user.id, data)

    async def meta_permissions(self, request: Request) -> dict[str, Any]:
        user = self._meta_user(request.path_params["user_id"])
        data = await _admin_body(request)
        user.granted = _str_list(data, "granted", user.granted)
        user.declined = _str_list(data, "declined", user.declined)
        return {"granted": user.granted, "declined": user.declined}

    async def meta_revoke(self, request: Request) -> dict[str, Any]:
        token = self.state.tokens.get(request.path_params["token"])
        if token is None or token.provider != "meta":
            raise AdminError(404, "no such Meta token")
        data = await _admin_body(request)
        token.revoked_subcode = _opt_int(data, "subcode") or 460
        return {"revoked": True, "subcode": token.revoked_subcode}

    async def meta_deauthorize(self, request: Request) -> dict[str, Any]:
        user = self._meta_user(request.path_params["user_id"])
        count = 0
        for token in self.state.tokens.values():
            if token.provider == "meta" and token.user_id == user.id and token.revoked_subcode is None:
                token.revoked_subcode = 458
                count += 1
        return {"revoked": count, "subcode": 458}

    async def meta_remove_page(self, request: Request) -> dict[str, Any]:
        user = self._meta_user(request.path_params["user_id"])
        page_id = request.path_params["page_id"]
        if page_id not in user.page_ids:
            raise AdminError(404, f"user {user.id} has no access to page {page_id}")
        user.page_ids.remove(page_id)
        return {"user_id": user.id, "page_ids": user.page_ids}

    async def meta_page(self, request: Request) -> dict[str, Any]:
        page = self.state.pages.get(request.path_params["page_id"])
        if page is None:
            raise AdminError(404, "no such page")
        return asdict(page)

    async def clock(self, request: Request) -> dict[str, Any]:
        if request.method == "POST":
            data = await _admin_body(request)
            self.state.advance(_number(data, "advance_s", 0.0))
        return {"now": self.state.now(), "offset_s": self.state.clock_offset_s}

    async def windows(self, request: Request) -> dict[str, Any]:
        data = await _admin_body(request)
        account, customer = _req_str(data, "account_id"), _req_str(data, "customer_id")
        self.state.open_window(account, customer, _number(data, "ago_s", 0.0))
        return {
            "account_id": account,
            "customer_id": customer,
            "last_inbound_at": self.state.windows[(account, customer)],
        }

    async def whatsapp_numbers(self, request: Request) -> dict[str, Any]:
        data = await _admin_body(request)
        number = WhatsAppNumber(
            id=_req_str(data, "phone_number_id"),
            display_phone_number=_opt_str(data, "display_phone_number") or "+1 555 0100",
            waba_id=_req_str(data, "waba_id"),
            token=_req_str(data, "token"),
            verified_name=_opt_str(data, "verified_name") or "Parley sandbox business",
            verified=_flag(data, "verified"),
            registered=_flag(data, "registered"),
            pin=_opt_str(data, "pin"),
            enforce_window=_flag(data, "enforce_window"),
        )
        token = self.state.tokens.get(number.token)
        if token is None:
            token = Token(
                number.token,
                "meta",
                "system",
                None,
                self.state.now(),
                None,
                ["whatsapp_business_messaging", "whatsapp_business_management"],
            )
            self.state.tokens[number.token] = token
        elif token.kind != "system":
            raise AdminError(409, "that token already belongs to a user or page")
        if number.waba_id not in token.waba_ids:
            token.waba_ids.append(number.waba_id)
        self.state.whatsapp_numbers[number.id] = number
        return self._number_view(number)

    @staticmethod
    def _number_view(number: WhatsAppNumber) -> dict[str, Any]:
        view = asdict(number)
        view.pop("token")
        view["phone_number_id"] = view.pop("id")
        return view

    def _wa_number(self, number_id: str) -> WhatsAppNumber:
        number = self.state.whatsapp_numbers.get(number_id)
        if number is None:
            raise AdminError(404, f"no WhatsApp number {number_id}")
        return number

    async def whatsapp_number(self, request: Request) -> dict[str, Any]:
        return self._number_view(self._wa_number(request.path_params["number_id"]))

    async def whatsapp_last_code(self, request: Request) -> dict[str, Any]:
        number = self._wa_number(request.path_params["number_id"])
        if number.last_code is None:
            raise AdminError(404, "no code was requested for this number")
        return {"code": number.last_code}

    async def x_users(self, request: Request) -> dict[str, Any]:
        data = await _admin_body(request)
        account = XAccount(
            id=_req_str(data, "id"),
            username=_req_str(data, "username"),
            name=_opt_str(data, "name") or _req_str(data, "username"),
            scopes=_str_list(data, "scopes", DEFAULT_X_SCOPES),
            accepts_dms=_flag(data, "accepts_dms", True),
        )
        if not account.id.isdigit():
            raise AdminError(400, "X user ids are numeric strings")
        self.state.x_users[account.id] = account
        return self._code("x", account.id, data)

    async def x_codes(self, request: Request) -> dict[str, Any]:
        data = await _admin_body(request)
        user_id = _req_str(data, "user_id")
        if user_id not in self.state.x_users:
            raise AdminError(404, f"no X user {user_id}")
        return self._code("x", user_id, data)

    async def x_webhooks(self, request: Request) -> dict[str, Any]:
        data = await _admin_body(request)
        webhook_id = _opt_str(data, "webhook_id") or self.state.next_id()
        self.state.x_webhooks.setdefault(webhook_id, [])
        return {"webhook_id": webhook_id, "subscriptions": self.state.x_webhooks[webhook_id]}

    async def x_webhook(self, request: Request) -> dict[str, Any]:
        webhook_id = request.path_params["webhook_id"]
        if webhook_id not in self.state.x_webhooks:
            raise AdminError(404, "no such webhook")
        return {"webhook_id": webhook_id, "subscriptions": self.state.x_webhooks[webhook_id]}

    async def x_revoke(self, request: Request) -> dict[str, Any]:
        value = request.path_params["token"]
        token = self.state.tokens.get(value)
        refresh = self.state.x_refresh_tokens.get(value)
        if token is not None and token.provider == "x":
            token.revoked = True
        elif refresh is not None:
            refresh.used = True
        else:
            raise AdminError(404, "no such X token")
        return {"revoked": True}

    async def sent(self, request: Request) -> dict[str, Any]:
        if request.method == "DELETE":
            count = len(self.state.sent)
            self.state.sent.clear()
            return {"deleted": count}
        contains = request.query_params.get("path_contains", "")
        return {"data": [asdict(s) for s in self.state.sent if contains in s.path]}

    async def tokens(self, _: Request) -> dict[str, Any]:
        """Every token issued (Meta, X access, X refresh): tests that run the sandbox as a process
        look for them where they must never appear."""
        issued = [asdict(t) for t in self.state.tokens.values()]
        issued += [
            {"value": r.value, "provider": "x", "kind": "x_refresh"}
            for r in self.state.x_refresh_tokens.values()
        ]
        return {"data": issued}

    async def calls(self, request: Request) -> dict[str, Any]:
        if request.method == "DELETE":
            self.state.calls.clear()
        return {"data": [asdict(c) for c in self.state.calls]}

    async def faults(self, request: Request) -> dict[str, Any]:
        if request.method == "DELETE":
            count = len(self.state.faults)
            self.state.faults.clear()
            return {"deleted": count}
        if request.method == "POST":
            data = await _admin_body(request)
            status = _opt_int(data, "status") or 500
            if not 400 <= status <= 599:
                raise AdminError(400, "status must be 4xx or 5xx")
            times = _opt_int(data, "times")
            fault = Fault(
                id=secrets.token_hex(6),
                path_contains=_opt_str(data, "path_contains") or "",
                status=status,
                code=_opt_int(data, "code"),
                subcode=_opt_int(data, "subcode"),
                message=_opt_str(data, "message"),
                times=1 if times is None else times,
                method=_opt_str(data, "method"),
                retry_after_s=_number(data, "retry_after_s", -1.0) if "retry_after_s" in data else None,
                plain=_flag(data, "plain"),
            )
            if fault.times < 1:
                raise AdminError(400, "times must be at least 1")
            self.state.faults.append(fault)
            return asdict(fault)
        return {"data": [asdict(f) for f in self.state.faults]}

    async def reset(self, _: Request) -> dict[str, Any]:
        self.state.reset()
        return {"reset": True}

    async def health(self, _: Request) -> dict[str, Any]:
        return {"status": "ok", "now": self.state.now()}


def _admin_route(path: str, handler: Callable[[Request], Any], methods: list[str]) -> Route:
    async def endpoint(request: Request) -> Response:
        try:
            result = await handler(request)
        except AdminError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return JSONResponse(result)

    return Route(path, endpoint, methods=methods)


async def _not_found(request: Request) -> Response:
    if request.url.path.startswith("/2/"):
        return _x_problem(
            404,
            "The requested resource was not found.",
            "https://api.twitter.com/2/problems/resource-not-found",
        ).response()
    return GraphFailure(400, 2500, None, f"Unknown path components: {request.url.path}").response()


# --------------------------------------------------------------------------- the app


def create_sandbox_app(state: SandboxState | None = None) -> Starlette:
    """The sandbox as an ASGI app; ``app.state.sandbox`` is its :class:`SandboxState`."""
    state = state if state is not None else SandboxState()
    api = _Providers(state)
    admin = _Admin(state)
    get, post, get_post, get_post_delete = ["GET"], ["POST"], ["GET", "POST"], ["GET", "POST", "DELETE"]

    def graph(path: str, handler: Handler, methods: list[str], send: bool = False) -> Route:
        return _provider_route(
            state, "/{version}" + path, handler, methods, "graph", "meta" if send else None
        )

    def x(path: str, handler: Handler, methods: list[str], send: bool = False) -> Route:
        return _provider_route(state, "/2" + path, handler, methods, "x", "x" if send else None)

    routes: list[BaseRoute] = [
        _admin_route("/_sandbox/health", admin.health, get),
        _admin_route("/_sandbox/reset", admin.reset, post),
        _admin_route("/_sandbox/clock", admin.clock, get_post),
        _admin_route("/_sandbox/sent", admin.sent, ["GET", "DELETE"]),
        _admin_route("/_sandbox/calls", admin.calls, ["GET", "DELETE"]),
        _admin_route("/_sandbox/tokens", admin.tokens, get),
        _admin_route("/_sandbox/faults", admin.faults, get_post_delete),
        _admin_route("/_sandbox/windows", admin.windows, post),
        _admin_route("/_sandbox/meta/users", admin.meta_users, post),
        _admin_route("/_sandbox/meta/codes", admin.meta_codes, post),
        _admin_route("/_sandbox/meta/tokens/{token}/revoke", admin.meta_revoke, post),
        _admin_route("/_sandbox/meta/users/{user_id}/permissions", admin.meta_permissions, post),
        _admin_route("/_sandbox/meta/users/{user_id}/deauthorize", admin.meta_deauthorize, post),
        _admin_route(
            "/_sandbox/meta/users/{user_id}/remove-page-access/{page_id}", admin.meta_remove_page, post
        ),
        _admin_route("/_sandbox/meta/pages/{page_id}", admin.meta_page, get),
        _admin_route("/_sandbox/whatsapp/numbers", admin.whatsapp_numbers, post),
        _admin_route("/_sandbox/whatsapp/numbers/{number_id}", admin.whatsapp_number, get),
        _admin_route("/_sandbox/whatsapp/numbers/{number_id}/last-code", admin.whatsapp_last_code, get),
        _admin_route("/_sandbox/x/users", admin.x_users, post),
        _admin_route("/_sandbox/x/codes", admin.x_codes, post),
        _admin_route("/_sandbox/x/webhooks", admin.x_webhooks, post),
        _admin_route("/_sandbox/x/webhooks/{webhook_id}", admin.x_webhook, get),
        _admin_route("/_sandbox/x/tokens/{token}/revoke", admin.x_revoke, post),
        # X API v2
        x("/oauth2/token", api.x_token_endpoint, post),
        x("/users/me", api.x_me, get),
        x("/account_activity/webhooks/{webhook_id}/subscriptions/all", api.x_subscribe, post),
        x("/dm_conversations/with/{participant_id}/messages", api.x_send_dm, post, send=True),
        x("/tweets", api.x_post, post, send=True),
        # Graph API
        graph("/oauth/access_token", api.oauth_access_token, get_post),
        graph("/debug_token", api.debug_token, get),
        graph("/me/permissions", api.me_permissions, get),
        graph("/me/accounts", api.me_accounts, get),
        graph("/{node}/subscribed_apps", api.subscribed_apps, get_post_delete),
        graph("/{node}/messages", api.messages, post, send=True),
        graph("/{node}/comments", api.comments, post, send=True),
        graph("/{node}/replies", api.replies, post, send=True),
        graph("/{node}/phone_numbers", api.waba_phone_numbers, get),
        graph("/{node}/request_code", api.request_code, post),
        graph("/{node}/verify_code", api.verify_code, post),
        graph("/{node}/register", api.register, post),
        Route("/{path:path}", _not_found, methods=["GET", "POST", "DELETE", "PUT", "PATCH"]),
    ]
    app = Starlette(routes=routes)
    app.state.sandbox = state
    return app


@contextlib.asynccontextmanager
async def serve_sandbox(
    state: SandboxState | None = None, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve the sandbox with uvicorn in this event loop; yields its base URL.

    ``port=0`` picks a free port. For tests and local tools; ``main`` is the long-running form.
    """
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets whose proto says TCP, and
    # without it every keep-alive request waits out a 40 ms delayed ACK
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    config = uvicorn.Config(create_sandbox_app(state), log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # surfaces the start-up error
                raise RuntimeError("the sandbox server stopped during start-up")
            await asyncio.sleep(0.01)
        bound_host, bound_port = sock.getsockname()[:2]
        yield (
            f"http://[{bound_host}]:{bound_port}"
            if ":" in bound_host
            else f"http://{bound_host}:{bound_port}"
        )
    finally:
        server.should_exit = True
        await task
        sock.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parley-sandbox",
        description="A local imitation of Meta's Graph API and the X API, with state and fault switches.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--meta-app-id", default=SandboxState.meta_app_id)
    parser.add_argument("--meta-app-secret", default=SandboxState.meta_app_secret)
    parser.add_argument("--x-client-id", default=SandboxState.x_client_id)
    parser.add_argument("--x-client-secret", default=SandboxState.x_client_secret)
    parser.add_argument(
        "--x-webhook-id",
        action="append",
        help="an Account Activity webhook id to register (repeatable; default: dev-x-webhook)",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--access-log", action="store_true", help="log each request line (may show query-string tokens)"
    )
    return parser


def state_from_args(args: argparse.Namespace) -> SandboxState:
    state = SandboxState(
        meta_app_id=args.meta_app_id,
        meta_app_secret=args.meta_app_secret,
        x_client_id=args.x_client_id,
        x_client_secret=args.x_client_secret,
    )
    for webhook_id in args.x_webhook_id or ["dev-x-webhook"]:
        state.x_webhooks.setdefault(webhook_id, [])
    return state


def main(argv: Sequence[str] | None = None) -> None:
    """``parley-sandbox``: serve the sandbox until SIGINT/SIGTERM."""
    args = build_parser().parse_args(argv)
    uvicorn.run(
        create_sandbox_app(state_from_args(args)),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.access_log,
        lifespan="off",
    )
